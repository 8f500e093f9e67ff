"""What the workspace holds, as the CLI prints it and the workflows read it.

These views never carry a secret value: secrets appear by name, kind and version only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

SecretKind = Literal["api-key", "credential", "certificate"]
SECRET_KINDS: tuple[SecretKind, ...] = ("api-key", "credential", "certificate")
ToolKind = Literal["webhook"]
AuthScheme = Literal["bearer", "basic", "header"]
AUTH_SCHEMES: tuple[AuthScheme, ...] = ("bearer", "basic", "header")


class Protection(BaseModel):
    """Who must approve a promotion into an environment, and when it may happen."""

    required_approvals: int = Field(default=0, ge=0, le=20)
    reviewers: list[str] = Field(default_factory=list)
    allow_self_review: bool = False
    wait_minutes: int = Field(default=0, ge=0)
    approval_timeout_minutes: int = Field(default=7 * 24 * 60, ge=0)  # 0: wait forever
    # Every decision (approve, reject, override) must carry an Ed25519 signature by a key
    # registered for its reviewer; see `stageline reviewer key`.
    require_signed_approvals: bool = False
    # Only promotions and rollbacks whose request the stageline server signed for a requester
    # who signed in to it (`requester_verified`) pass the gates; a start from the Temporal UI
    # or the embedded CLI, whose requester is a claim, is refused.
    require_verified_requester: bool = False

    @property
    def protected(self) -> bool:
        return self.required_approvals > 0


class EnvironmentView(BaseModel):
    name: str
    position: int
    protection: Protection
    apps: list[str] = Field(default_factory=list)
    created_at: datetime


class AppView(BaseModel):
    name: str
    environments: list[str]
    created_at: datetime


class VariableView(BaseModel):
    environment: str
    app: str | None
    key: str
    value: str
    version: int
    created_by: str
    created_at: datetime


class SecretView(BaseModel):
    """A secret as anyone may see it: never its value."""

    environment: str
    app: str | None
    key: str
    kind: SecretKind
    version: int
    created_by: str
    created_at: datetime
    # A certificate's expiry (the soonest of the certificates in it); not secret.
    expires_at: datetime | None = None


class ToolView(BaseModel):
    name: str
    kind: ToolKind
    environments: list[str] = Field(default_factory=list)


class ToolProfileView(BaseModel):
    tool: str
    environment: str
    app: str | None
    url: str
    auth_secret: str | None
    auth_scheme: AuthScheme = "bearer"
    auth_header: str | None = None
    headers: dict[str, str]
    params: dict[str, str]
    body: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float
    retries: int
    version: int


class ReleaseView(BaseModel):
    app: str
    version: str
    artifact: str | None
    pipeline_digest: str
    references: list[str]
    created_by: str
    created_at: datetime


class ReviewerGroupView(BaseModel):
    name: str
    members: list[str]


class FreezeWindowView(BaseModel):
    id: int
    environment: str
    starts_at: datetime
    ends_at: datetime | None
    reason: str
    created_by: str
    lifted_at: datetime | None = None
    lifted_by: str | None = None
