"""An environment's configuration resolved for one app: what a pipeline run may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from models.pipeline import Step
from models.promotion import ConfigRef, ConfigVersions
from models.workspace import AuthScheme, SecretKind
from vault.secret_value import SecretValue

Scope = Literal["env", "app"]


@dataclass(frozen=True)
class ResolvedVariable:
    value: str
    version: int
    scope: Scope


@dataclass(frozen=True)
class ResolvedSecret:
    kind: SecretKind
    version: int
    scope: Scope
    # None when resolved without decryption (preflight and views need no plaintext).
    value: SecretValue | None = None


@dataclass(frozen=True)
class ResolvedTool:
    url: str
    version: int
    scope: Scope
    auth_secret: str | None
    auth_scheme: AuthScheme
    auth_header: str | None
    headers: dict[str, str]
    params: dict[str, str]
    body: dict[str, str]
    timeout_seconds: float
    retries: int


@dataclass(frozen=True)
class ResolvedConfiguration:
    """Kept in memory inside one activity only; it is never a workflow payload."""

    environment: str
    app: str | None
    vars: dict[str, ResolvedVariable] = field(default_factory=dict)
    secrets: dict[str, ResolvedSecret] = field(default_factory=dict)
    tools: dict[str, ResolvedTool] = field(default_factory=dict)

    def versions(self) -> ConfigVersions:
        def ref(item: ResolvedVariable | ResolvedSecret | ResolvedTool) -> ConfigRef:
            return ConfigRef(version=item.version, scope=item.scope)

        return ConfigVersions(
            vars={k: ref(v) for k, v in self.vars.items()},
            secrets={k: ref(s) for k, s in self.secrets.items()},
            tools={k: ref(t) for k, t in self.tools.items()},
        )

    def secret_values(self) -> list[str]:
        """Plaintexts to mask in captured output."""
        return [s.value.reveal() for s in self.secrets.values() if s.value is not None]


@dataclass(frozen=True)
class StepContext:
    """Everything a step executor needs, with the step's own configuration decrypted."""

    app: str
    environment: str
    version: str
    artifact: str | None
    step: Step
    config: ResolvedConfiguration
    workflow_id: str
    # Where this app's data lives in this environment, per kind (threads, sources, ...).
    data_namespaces: dict[str, str]
