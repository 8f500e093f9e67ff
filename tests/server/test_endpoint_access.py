"""Every endpoint of a real server, table-driven: no token 401, a bad, expired or revoked token
401, a missing role 403 naming the role (and audited with the principal), a token scoped to
dev refused in production; and the role each endpoint needs is enough."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.operations import ANY, OPERATIONS
from tests.server.conftest import Served

PIPELINE = 'steps:\n  - name: deploy\n    run: ["true"]\n'
KEY = "ed25519:" + "A" * 43 + "="

# One valid call of each operation, all about production where an environment is named.
SAMPLES: dict[str, dict[str, Any]] = {
    "environments.list_environments": {},
    "environments.show_environment": {"name": "production"},
    "environments.create_environment": {"name": "qa"},
    "environments.rename_environment": {"old": "qa", "new": "qa2"},
    "environments.delete_environment": {"name": "qa2"},
    "environments.protect_environment": {"name": "production", "required_approvals": 1},
    "environments.freeze": {"name": "production", "reason": "holiday"},
    "environments.unfreeze": {"name": "production"},
    "environments.list_apps": {},
    "environments.create_app": {"name": "api", "environments": ["dev"]},
    "environments.delete_app": {"name": "api"},
    "environments.set_app_environments": {"name": "web", "environments": ["dev", "production"]},
    "environments.list_groups": {},
    "environments.create_group": {"name": "leads", "members": ["alice"]},
    "environments.rename_group": {"old": "leads", "new": "heads"},
    "environments.delete_group": {"name": "heads"},
    "variables.set_variable": {"environment": "production", "key": "K", "value": "v"},
    "variables.list_variables": {"environment": "production"},
    "variables.delete_variable": {"environment": "production", "key": "K"},
    "secrets.set_secret": {"environment": "production", "key": "S", "value": "s3cret-value-1"},
    "secrets.list_secrets": {"environment": "production"},
    "secrets.delete_secret": {"environment": "production", "key": "S"},
    "tools.list_tools": {},
    "tools.create_tool": {"name": "hook", "kind": "webhook"},
    "tools.delete_tool": {"name": "hook"},
    "tools.set_tool_profile": {
        "tool": "hook",
        "environment": "production",
        "url": "https://api.example.com",
    },
    "releases.create_release": {"app": "web", "version": "1.0.0", "pipeline_text": PIPELINE},
    "releases.list_releases": {"app": "web"},
    "principals.add_user": {"name": "zed", "password": "correct horse battery", "roles": []},
    "principals.disable_user": {"name": "zed"},
    "principals.create_ci_token": {
        "name": "bot",
        "apps": [],
        "environments": [],
        "role": "viewer",
        "lifetime": "P1D",
    },
    "principals.revoke_token": {"name": "bot"},
    "principals.list_principals": {},
    "reviewers.add_key": {"reviewer": "alice", "public_key": KEY},
    "reviewers.revoke_key": {"reviewer": "alice", "fingerprint": "0123456789abcdef"},
    "reviewers.list_keys": {},
    "data.put": {
        "environment": "production",
        "app": "web",
        "kind": "memory",
        "key": "k",
        "value": "v",
    },
    "data.get": {"environment": "production", "app": "web", "kind": "memory", "key": "k"},
    "data.entries": {"environment": "production", "app": "web", "kind": "memory"},
    "data.copy": {"app": "web", "kind": "memory", "source": "dev", "target": "production"},
    "data.share": {"app": "web", "kind": "memory", "shared": True},
    "notifications.add_target": {
        "environment": "production",
        "name": "ops",
        "url": "https://hooks.example.com/services/T0/B0/token",
        "events": ["deployed"],
    },
    "notifications.list_targets": {"environment": "production"},
    "notifications.remove_target": {"environment": "production", "name": "ops"},
    # After the removal: an unknown target (400), so no test message leaves the machine.
    "notifications.test_target": {"environment": "production", "name": "ops"},
    "views.status": {"environment": "production"},
    "views.audit_log": {"environment": "production"},
    "views.history_view": {"app": "web", "environment": "production"},
    "views.environment_detail": {"environment": "production"},
    "deployments.preview_rollback": {"app": "web", "environment": "production"},
    "views.diff": {"app": "web", "source": "dev", "target": "production"},
}
# The run routes: (method, path, body).
RUNS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v1/promotions", {"app": "web", "version": "1.0.0", "target": "production"}),
    ("POST", "/api/v1/trains", {"app": "web", "version": "1.0.0", "through": "production"}),
    ("POST", "/api/v1/rollbacks", {"app": "web", "environment": "production"}),
]
FOLLOW: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/runs/promote-web-1.0.0-production", None),
    ("GET", "/api/v1/runs/promote-web-1.0.0-production/result?wait=0", None),
    ("POST", "/api/v1/runs/promote-web-1.0.0-production/decisions", {"kind": "approve"}),
    ("GET", "/api/v1/whoami", None),
    ("POST", "/api/v1/logout", None),
]
# What any valid principal may call about itself.
SELF = ("/api/v1/whoami", "/api/v1/logout")
DEPLOYS = {"releases.create_release", *(path for _, path, _ in RUNS)}
# Operations a role in any one environment is enough for (workspace-wide reads, releases).
ANYWHERE = {op.name for op in OPERATIONS if all(c.environment == ANY for c in op.checks)}
# What a reader may do: the operations that need only the viewer role somewhere.
READS = {op.name for op in OPERATIONS if not op.write}


def calls() -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(name, method, path, body) of every endpoint."""
    ops = [(op.name, "POST", f"/api/v1{op.path}", SAMPLES[op.name]) for op in OPERATIONS]
    runs = [(path, method, path, body) for method, path, body in RUNS + FOLLOW]
    return ops + runs


# One kept-alive client per server and token: hundreds of calls, one connection each.
_CLIENTS: dict[tuple[str, str | None], httpx.Client] = {}


def send(
    served: Served, token: str | None, method: str, path: str, body: dict[str, Any] | None
) -> httpx.Response:
    key = (served.url, token)
    if key not in _CLIENTS:
        _CLIENTS[key] = served.http(token)
    return _CLIENTS[key].request(method, path, json=body)


def test_the_table_covers_every_route(served_alone: Served) -> None:
    assert set(SAMPLES) == {op.name for op in OPERATIONS}
    document = httpx.get(f"{served_alone.url}/api/v1/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if path != "/api/v1/login"
    }
    covered = {(m, p.split("?")[0]) for _, m, p, _ in calls()}
    covered = {(m, p.replace("promote-web-1.0.0-production", "{run_id}")) for m, p in covered}
    assert routes == covered
    # Every route but login declares the bearer scheme.
    for path, item in document["paths"].items():
        for operation in item.values():
            assert path == "/api/v1/login" or operation.get("security"), path


def test_without_valid_credentials_every_endpoint_answers_401(served_alone: Served) -> None:
    served = served_alone
    revoked = served.ci_token("revoked-bot", "--role", "admin")
    served.machine.ok("token", "revoke", "revoked-bot")
    expired = served.ci_token("expired-bot", "--role", "admin")
    database = Path(served.machine.env["STAGELINE_HOME"]) / "stageline.db"
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE access_token SET expires_at = '2020-01-01 00:00:00.000000' WHERE "
            "principal_id = (SELECT id FROM principal WHERE name = 'expired-bot')"
        )
    disabled = served.add_user("gone", "*:admin")
    served.machine.ok("user", "disable", "gone")
    bad = [None, "stl_ci_" + "x" * 43, "not-a-token", revoked, expired, disabled]
    for name, method, path, body in calls():
        for token in bad:
            answer = send(served, token, method, path, body)
            assert answer.status_code == 401, (name, token, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            error = answer.json()["error"]
            assert error["exit_code"] == 2
            if token is not None:
                assert token not in answer.text
    # A malformed Authorization header is refused the same way.
    with httpx.Client(base_url=served.url) as http:
        answer = http.post(
            "/api/v1/environments/list-environments", headers={"Authorization": "Basic x"}
        )
    assert answer.status_code == 401


def test_missing_roles_are_403_naming_the_role_and_audited(served_alone: Served) -> None:
    served = served_alone
    nobody = served.add_user("nobody")  # a person with no role at all
    viewer = served.ci_token("viewer-bot", "--role", "viewer")
    for name, method, path, body in calls():
        if path.endswith(SELF):
            continue
        if not path.startswith("/api/v1/runs"):
            refused = send(served, nobody, method, path, body)
            assert refused.status_code == 403, (name, refused.text)
            assert "role" in refused.json()["error"]["message"]
        if name in READS or path.startswith("/api/v1/runs"):
            continue
        answer = send(served, viewer, method, path, body)
        assert answer.status_code == 403, (name, answer.text)
        message = answer.json()["error"]["message"]
        needed = "deployer" if name in DEPLOYS else "admin"
        assert f"needs the {needed} role" in message, (name, message)
        assert answer.json()["error"]["exit_code"] == 2
    audit = served.machine.ok("audit", "--json", "--limit", "1000").out
    assert '"actor": "viewer-bot"' in audit and '"action": "access.refused"' in audit
    assert '"actor": "nobody"' in audit


def test_a_dev_token_cannot_read_or_change_production(served_alone: Served) -> None:
    served = served_alone
    dev_admin = served.ci_token("dev-admin", "--env", "dev", "--role", "admin")
    for name, method, path, body in calls():
        if path.startswith("/api/v1/runs") or path.endswith(SELF):
            continue
        answer = send(served, dev_admin, method, path, body)
        names_production = body is not None and "production" in str(body.values())
        workspace_wide = name in ANYWHERE and not names_production
        if workspace_wide:
            assert answer.status_code not in (401, 403), (name, answer.text)
        else:
            assert answer.status_code == 403, (name, answer.text)
            assert "scoped to dev" in answer.json()["error"]["message"]
    # A workspace-wide answer keeps only dev.
    status = send(served, dev_admin, "POST", "/api/v1/views/status", {}).json()
    assert status["environments"] == ["dev"]
    assert {c["environment"] for c in status["cells"]} == {"dev"}
    audit = send(served, dev_admin, "POST", "/api/v1/views/audit-log", {}).json()
    assert audit and {e["environment"] for e in audit} == {"dev"}


def test_the_role_each_endpoint_needs_is_enough(served_alone: Served) -> None:
    """An admin of every environment reaches every operation (each answers what its
    arguments deserve: never 401 or 403)."""
    served = served_alone
    admin = served.add_user("root-admin", "*:admin")
    for name, method, path, body in calls():
        if path.startswith(("/api/v1/runs", "/api/v1/promotions", "/api/v1/trains")):
            continue  # these need Temporal: see test_remote_mode
        if path.endswith(SELF):
            continue
        if path.startswith("/api/v1/rollbacks"):
            continue
        answer = send(served, admin, method, path, body)
        assert answer.status_code not in (401, 403, 500), (name, answer.text)


@pytest.mark.parametrize("path", ["/api/v1/environments/list-environments", "/api/v1/whoami"])
def test_a_token_in_the_query_string_is_not_taken(served_alone: Served, path: str) -> None:
    token = served_alone.ci_token("q-bot", "--role", "viewer")
    with httpx.Client(base_url=served_alone.url) as http:
        answer = http.request("POST" if "environments" in path else "GET", f"{path}?token={token}")
    assert answer.status_code == 401


# Service calls the CLI makes only embedded, each behind a check of `units.remote`: the
# server does these itself (checks before a start, the missing-key note, key rotation).
EMBEDDED_ONLY = {
    ("deployments", "current_deployment_id"),
    ("environments", "environment"),
    ("environments", "eligible_reviewers"),
    ("reviewers", "without_keys"),
    ("secrets", "rotate_master_key"),
}


def test_every_service_call_of_the_cli_has_a_route_or_is_embedded_only() -> None:
    import re

    from server.operations import BY_CALL

    root = Path(__file__).resolve().parents[2] / "cli"
    calls = {
        (m.group(1), m.group(2))
        for path in root.glob("*.py")
        for m in re.finditer(r"\bw\.(\w+)\.(\w+)\(", path.read_text())
    }
    assert calls - EMBEDDED_ONLY <= set(BY_CALL), calls - EMBEDDED_ONLY - set(BY_CALL)
    assert calls >= EMBEDDED_ONLY  # no stale entry
