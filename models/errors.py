"""Errors a user can cause or meet, each carrying the exit code of the contract.

Every message is one sentence that says what was wrong and how to fix it; the CLI prints it
on stderr and exits with `exit_code`. None of them ever contains a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    REFUSED = 2
    BAD_INPUT = 3
    TIMED_OUT = 4
    UNAVAILABLE = 5


class StagelineError(Exception):
    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(StagelineError):
    """Unknown names, malformed files, values of the wrong shape (exit 3)."""

    exit_code = ExitCode.BAD_INPUT


class NotFound(BadInput):
    """A named environment, app, release, tool or key does not exist (exit 3)."""


class Conflict(BadInput):
    """The request contradicts what is stored: a duplicate, or a change to an immutable thing."""


@dataclass(frozen=True)
class AuditNote:
    """What to write to the audit log about a refusal, once the refused unit of work has
    rolled back (`services.unit.Units` writes it in a transaction of its own)."""

    action: str
    subject: str
    actor: str
    environment: str | None = None
    app: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Refused(StagelineError):
    """A rule said no: a gate, a reviewer policy, a reference that must not be removed (exit 2)."""

    exit_code = ExitCode.REFUSED
    # Set by `services.base.Service.refusals_audited`: this refusal is to be audited.
    audit_note: AuditNote | None = None


class AlreadyEnded(Refused):
    """A promotion run asked to deploy after it ended (an earlier attempt of its workflow task
    ran the local activities that ended it, then failed): the run must end as recorded."""

    def __init__(self, message: str, status: str, reason: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Unavailable(StagelineError):
    """Temporal or the database cannot be reached (exit 5)."""

    exit_code = ExitCode.UNAVAILABLE


class ConfigurationError(StagelineError):
    """stageline itself is not configured well enough to start (no master key, bad URL)."""

    exit_code = ExitCode.BAD_INPUT


class MissingConfiguration(Refused):
    """References that the target environment cannot satisfy, all named at once."""

    def __init__(self, environment: str, missing: list[str]) -> None:
        self.environment = environment
        self.missing = sorted(set(missing))
        super().__init__(
            f"environment {environment!r} is missing {', '.join(self.missing)}; "
            "set them with 'stageline var set', 'stageline secret set' or "
            "'stageline tool profile' before promoting"
        )


def error_text(error: ErrorDetails) -> str:
    """One pydantic error's message, without pydantic's "Value error, " prefix (our own
    validators' messages are full sentences)."""
    return str(error["msg"]).removeprefix("Value error, ")


def describe(exc: ValidationError, *, whole: str | None = None) -> str:
    """Every error of `exc` as `field.path: message`, joined by "; ". An error about the whole
    value (no location) is `whole: message`, or the bare message when `whole` is None."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or whole
        parts.append(f"{where}: {error_text(error)}" if where else error_text(error))
    return "; ".join(parts)
