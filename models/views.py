"""What `stageline status` and `stageline history` show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from models.review import FreezeState
from models.workspace import (
    EnvironmentView,
    FreezeWindowView,
    SecretView,
    ToolProfileView,
    VariableView,
)


class StatusCell(BaseModel):
    app: str
    environment: str
    version: str | None = None
    since: datetime | None = None
    deployed_by: str | None = None
    kind: str | None = None  # how the release got there: promotion, rollback, compensation
    deployment_id: int | None = None
    endpoints: list[dict[str, str]] = Field(default_factory=list)
    augmentations: list[dict[str, str]] = Field(default_factory=list)


class InProgress(BaseModel):
    promotion_id: str
    app: str
    version: str
    environment: str
    requested_by: str
    # Proven by the stageline server's signature (see README "A stageline server for a team").
    requester_verified: bool = False
    since: datetime
    # From the workflow itself, when Temporal answers.
    phase: str | None = None
    approvals: list[str] = Field(default_factory=list)
    approvals_required: int = 0
    may_approve: list[str] = Field(default_factory=list)


class StatusView(BaseModel):
    environments: list[str]
    cells: list[StatusCell] = Field(default_factory=list)
    in_progress: list[InProgress] = Field(default_factory=list)
    # With --env only: that environment's configuration (secrets by name and version).
    variables: list[VariableView] = Field(default_factory=list)
    secrets: list[SecretView] = Field(default_factory=list)
    # What people should act on soon, one sentence each: certificates about to expire.
    warnings: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    id: int
    kind: str
    version: str
    previous_version: str | None
    status: str
    requested_by: str
    requester_verified: bool = False
    source: str
    workflow_id: str
    started_at: datetime
    finished_at: datetime | None
    verified_at: datetime | None
    reason: str | None
    config: dict[str, Any]


class HistoryEvent(BaseModel):
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


class AuditEntry(BaseModel):
    """One line of `stageline audit`."""

    at: datetime
    actor: str
    action: str
    environment: str | None
    app: str | None
    subject: str
    detail: dict[str, Any]


class HistoryView(BaseModel):
    app: str
    environment: str
    deployments: list[HistoryEntry]
    events: list[HistoryEvent]


class ValueDiff(BaseModel):
    key: str
    source: str | None  # None: not set there
    target: str | None


class SecretDiff(BaseModel):
    key: str
    source_version: int | None
    target_version: int | None


class ToolDiff(BaseModel):
    tool: str
    source: dict[str, Any] | None
    target: dict[str, Any] | None


class EnvironmentDiff(BaseModel):
    """What differs for one app between two environments; never a secret value."""

    app: str
    source: str
    target: str
    release: ValueDiff
    vars: list[ValueDiff]
    secrets: list[SecretDiff]
    tools: list[ToolDiff]


class EnvironmentDetail(BaseModel):
    """Everything one environment holds, for the console's environment page: never a secret
    value nor a credential (secrets by name, kind and version; tool profiles by secret name)."""

    environment: EnvironmentView
    eligible_reviewers: list[str]
    frozen: FreezeState
    freezes: list[FreezeWindowView]
    status: StatusView
    tool_profiles: list[ToolProfileView]
    # app -> data kind -> namespace
    namespaces: dict[str, dict[str, str]]
