"""The floors of ARCHITECTURE.md hold: each package imports only what its floor may.

A workflow that imported a service would reach the database from replayed code; a service
that imported Temporal could not serve the HTTP server; the CLI that queried tables itself
would bypass the rules. This scan of every import keeps those mistakes out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "models",
    "vault",
    "store",
    "services",
    "workflows",
    "activities",
    "worker",
    "server",
    "cli",
}

# Package -> what it may import of ours: a package name allows all of it, a dotted name only
# that module.
ALLOWED: dict[str, set[str]] = {
    "models": {"models", "vault.secret_value"},
    "vault": {"vault", "models"},
    "store": {"store", "models"},
    "services": {"services", "store", "vault", "models"},
    "workflows": {"workflows", "models"},
    "activities": {
        "activities",
        "services",
        "vault",
        "models",
        "store.database",
        "store.tables",
        "workflows.contract",
    },
    "worker": OURS - {"cli", "server"},
    # The server stands where the CLI does, beside the worker: it never imports the CLI.
    "server": OURS - {"cli", "store"} | {"store.database"},
    "cli": OURS - {"store"} | {"store.database"},
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from store import audit` imports the module store.audit.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def allowed(package: str, name: str) -> bool:
    rules = ALLOWED[package]
    parts = name.split(".")
    if parts[0] in rules:
        return True
    # `from store import database` yields "store" and "store.database": the bare package
    # name is allowed when some module of it is.
    if len(parts) == 1:
        return any(rule.startswith(f"{name}.") for rule in rules)
    return any(name == rule or name.startswith(f"{rule}.") for rule in rules) or (
        ".".join(parts[:2]) in rules
    )


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_its_floor_and_below(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        for name in imports_of(path)
        if not allowed(package, name)
    }
    assert not wrong, "imports across floors (see ARCHITECTURE.md):\n" + "\n".join(sorted(wrong))
