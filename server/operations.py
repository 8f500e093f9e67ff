"""The server's operations: each service call the CLI makes, with the role it needs where.

One table serves both ends. The server builds a route from each entry
(`POST /api/v1/<service>/<method>`, the arguments as a JSON object, the result as JSON) and
checks the principal's roles before it opens a unit of work; the CLI in remote mode sends
the very call it makes embedded (`w.variables.set_variable(...)`) to that route. So a command
behaves the same either way, and a service method the CLI uses without an entry here fails
its remote test rather than slipping past the checks.

The acting person (`actor=`) is never an argument on the wire: the server passes the
authenticated principal's name.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from models.identity import Action
from services.unit import Work
from vault.secret_value import SecretValue

# Where an operation's role is needed: in the environment an argument names, in every
# environment (workspace-wide configuration), or in at least one (workspace-wide reads).
EVERY = "*"
ANY = "any"


@dataclass(frozen=True)
class Check:
    action: Action
    # An argument's name (its value is the environment), EVERY or ANY. An argument that is
    # None (`status` without --env) means ANY, and the server narrows the answer.
    environment: str


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    checks: tuple[Check, ...]
    write: bool
    # The argument naming the app, for tokens scoped to apps.
    app: str | None = None

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.replace('_', '-')}"

    def function(self) -> Callable[..., Any]:
        service_type = typing.get_type_hints(getattr(Work, self.service).func)["return"]
        found: Callable[..., Any] = getattr(service_type, self.method)
        return found

    def parameters(self) -> dict[str, tuple[Any, Any]]:
        """Each argument on the wire: its type (a secret travels as text) and default."""
        return _parameters(self)

    def request_model(self) -> type[BaseModel]:
        return _request_model(self)

    def result_type(self) -> Any:
        return typing.get_type_hints(self.function())["return"]

    def result_adapter(self) -> TypeAdapter[Any]:
        return _result_adapter(self)

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """A call's arguments by name, as JSON (the CLI side); `actor` is dropped."""
        signature = inspect.signature(self.function())
        bound = signature.bind(None, *args, **kwargs)  # None stands for self
        named = {k: v for k, v in list(bound.arguments.items())[1:] if k != "actor"}
        plain = {k: v.reveal() if isinstance(v, SecretValue) else v for k, v in named.items()}
        encoded: dict[str, Any] = TypeAdapter(dict[str, Any]).dump_python(plain, mode="json")
        return encoded

    def secret_parameters(self) -> frozenset[str]:
        """Arguments the service takes as SecretValue (text on the wire, write-only)."""
        return _secret_parameters(self)

    @property
    def takes_actor(self) -> bool:
        return _takes_actor(self)


def _wire_type(annotation: Any) -> Any:
    return str if annotation is SecretValue else annotation


@cache
def _parameters(op: Operation) -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(op.function())
    found: dict[str, tuple[Any, Any]] = {}
    for name, param in inspect.signature(op.function()).parameters.items():
        if name in ("self", "actor"):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        found[name] = (_wire_type(hints[name]), default)
    return found


# Read once per operation, not on every request: type hints and signatures are slow to build.
@cache
def _secret_parameters(op: Operation) -> frozenset[str]:
    hints = typing.get_type_hints(op.function())
    return frozenset(n for n, t in hints.items() if t is SecretValue)


@cache
def _takes_actor(op: Operation) -> bool:
    return "actor" in inspect.signature(op.function()).parameters


@cache
def _request_model(op: Operation) -> type[BaseModel]:
    title = "".join(p.capitalize() for p in (*op.service.split("_"), *op.method.split("_")))
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        title,
        __config__=ConfigDict(extra="forbid"),
        **op.parameters(),
    )
    return model


@cache
def _result_adapter(op: Operation) -> TypeAdapter[Any]:
    return TypeAdapter(op.result_type())


def _op(
    service: str, method: str, action: Action, environment: str, *, app: str | None = None
) -> Operation:
    write = action != Action.VIEW
    return Operation(service, method, (Check(action, environment),), write, app)


V, C, D = Action.VIEW, Action.CONFIGURE, Action.DEPLOY

OPERATIONS: tuple[Operation, ...] = (
    # Environments, apps, groups and freezes.
    _op("environments", "list_environments", V, ANY),
    _op("environments", "show_environment", V, "name"),
    _op("environments", "create_environment", C, EVERY),
    _op("environments", "rename_environment", C, EVERY),
    _op("environments", "delete_environment", C, EVERY),
    _op("environments", "protect_environment", C, "name"),
    _op("environments", "freeze", C, "name"),
    _op("environments", "unfreeze", C, "name"),
    _op("environments", "list_apps", V, ANY),
    _op("environments", "create_app", C, EVERY, app="name"),
    _op("environments", "delete_app", C, EVERY, app="name"),
    _op("environments", "set_app_environments", C, EVERY, app="name"),
    _op("environments", "list_groups", V, ANY),
    _op("environments", "create_group", C, EVERY),
    _op("environments", "rename_group", C, EVERY),
    _op("environments", "delete_group", C, EVERY),
    # Configuration per environment.
    _op("variables", "set_variable", C, "environment", app="app"),
    _op("variables", "list_variables", V, "environment", app="app"),
    _op("variables", "delete_variable", C, "environment", app="app"),
    _op("secrets", "set_secret", C, "environment", app="app"),
    _op("secrets", "list_secrets", V, "environment", app="app"),
    _op("secrets", "delete_secret", C, "environment", app="app"),
    _op("tools", "list_tools", V, ANY),
    _op("tools", "create_tool", C, EVERY),
    _op("tools", "delete_tool", C, EVERY),
    _op("tools", "set_tool_profile", C, "environment", app="app"),
    # Releases: a CI job that deploys somewhere may register the builds it deploys.
    _op("releases", "create_release", D, ANY, app="app"),
    _op("releases", "list_releases", V, ANY, app="app"),
    # People, CI tokens and reviewer keys: workspace-wide administration.
    _op("principals", "add_user", C, EVERY),
    _op("principals", "disable_user", C, EVERY),
    _op("principals", "create_ci_token", C, EVERY),
    _op("principals", "revoke_token", C, EVERY),
    _op("principals", "list_principals", C, EVERY),
    _op("reviewers", "add_key", C, EVERY),
    _op("reviewers", "revoke_key", C, EVERY),
    _op("reviewers", "list_keys", V, ANY),
    # Data namespaces.
    _op("data", "put", C, "environment", app="app"),
    _op("data", "get", V, "environment", app="app"),
    _op("data", "entries", V, "environment", app="app"),
    Operation(
        "data",
        "copy",
        (Check(V, "source"), Check(C, "target")),
        write=True,
        app="app",
    ),
    _op("data", "share", C, EVERY, app="app"),
    # Notification targets: their URLs are credentials, so only admins add and test them.
    _op("notifications", "add_target", C, "environment"),
    _op("notifications", "list_targets", V, "environment"),
    _op("notifications", "remove_target", C, "environment"),
    # Sends a message and stores nothing: a reading unit of work, so no write lock is held
    # while the receiver answers (up to 10 s).
    Operation("notifications", "test_target", (Check(C, "environment"),), write=False),
    # What runs where, and what happened.
    _op("views", "status", V, "environment", app="app"),
    _op("views", "audit_log", V, "environment", app="app"),
    _op("views", "history_view", V, "environment", app="app"),
    _op("views", "environment_detail", V, "environment"),
    _op("deployments", "preview_rollback", V, "environment", app="app"),
    Operation("views", "diff", (Check(V, "source"), Check(V, "target")), write=False, app="app"),
)

BY_CALL: dict[tuple[str, str], Operation] = {(o.service, o.method): o for o in OPERATIONS}
