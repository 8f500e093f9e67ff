"""An environment's configuration resolved for one app: what a pipeline run may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.workspace import ConfigVersions, SecretKind
from vault.secret_value import SecretValue


@dataclass(frozen=True)
class ResolvedVariable:
    value: str
    version: int
    scope: str  # "env" or "app"


@dataclass(frozen=True)
class ResolvedSecret:
    kind: SecretKind
    version: int
    scope: str
    # None when resolved without decryption (preflight and views need no plaintext).
    value: SecretValue | None = None


@dataclass(frozen=True)
class ResolvedTool:
    url: str
    version: int
    scope: str
    auth_secret: str | None
    headers: dict[str, str]
    params: dict[str, str]
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
        return ConfigVersions(
            vars={k: v.version for k, v in self.vars.items()},
            secrets={k: s.version for k, s in self.secrets.items()},
            tools={k: t.version for k, t in self.tools.items()},
        )

    def secret_values(self) -> list[str]:
        """Plaintexts to mask in captured output."""
        return [s.value.reveal() for s in self.secrets.values() if s.value is not None]
