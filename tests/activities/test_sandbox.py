"""The step sandbox (activities/sandbox.py): the settings that declare what steps may see,
the bwrap command line built from them, and real steps run through it by `run_step`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities import sandbox
from activities.sandbox import StepSandbox, build
from activities.step_run import run_step
from models.errors import ConfigurationError
from models.pipeline import Step
from models.resolution import ResolvedConfiguration, StepContext
from models.settings import Settings, StepPath, parse_step_paths

BWRAP = "/usr/bin/bwrap"


def settings(tmp_path: Path, **extra: object) -> Settings:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "home": home,
        "database_url": f"sqlite+aiosqlite:///{home / 'stageline.db'}",
        "master_key": "x",
    }
    values.update(extra)
    return Settings.model_validate(values)


def options(argv: list[str], flag: str) -> list[tuple[str, str]]:
    """Each (source, dest) pair that follows `flag` in a bwrap command line."""
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


# -- the declared paths setting -------------------------------------------------------------


def test_step_paths_parse_with_read_only_as_the_default() -> None:
    assert parse_step_paths("/opt/tools:ro, /srv/deploy:rw,/opt/more") == (
        StepPath(path=Path("/opt/tools")),
        StepPath(path=Path("/srv/deploy"), writable=True),
        StepPath(path=Path("/opt/more")),
    )
    assert parse_step_paths("") == ()
    # Inside /tmp is fine: it is mounted over the sandbox's own /tmp.
    assert parse_step_paths("/tmp/build:rw") == (StepPath(path=Path("/tmp/build"), writable=True),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("opt/tools", "must be absolute"),
        ("/opt/../etc", "without '..'"),
        ("/opt/tools:rx", "must be PATH, PATH:ro or PATH:rw"),
        ("/opt/tools:rw:ro", "must be PATH, PATH:ro or PATH:rw"),
        ("/", "whole machine"),
        ("/proc/1", "overlaps /proc"),
        ("/dev", "overlaps /dev"),
        ("/tmp", "overlaps /tmp"),
        ("/step/x", "overlaps /step"),
    ],
)
def test_malformed_step_paths_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_step_paths(text)
    assert "STAGELINE_STEP_PATHS" in caught.value.message and says in caught.value.message


def test_settings_read_the_sandbox_options_from_the_environment(tmp_path: Path) -> None:
    env = {
        "STAGELINE_HOME": str(tmp_path),
        "STAGELINE_STEP_PATHS": "/opt/tools,/srv/deploy:rw",
        "STAGELINE_ALLOW_UNSANDBOXED_STEPS": "1",
    }
    read = Settings.from_env(env)
    assert read.step_paths == parse_step_paths("/opt/tools:ro,/srv/deploy:rw")
    assert read.allow_unsandboxed_steps
    assert not Settings.from_env({"STAGELINE_HOME": str(tmp_path)}).allow_unsandboxed_steps
    with pytest.raises(ConfigurationError, match="STAGELINE_ALLOW_UNSANDBOXED_STEPS"):
        Settings.from_env({**env, "STAGELINE_ALLOW_UNSANDBOXED_STEPS": "maybe"})


# -- the command line -----------------------------------------------------------------------


def test_the_command_isolates_processes_and_shows_only_what_it_should(tmp_path: Path) -> None:
    box = StepSandbox.from_settings(settings(tmp_path), bwrap=BWRAP, cwd=Path.cwd())
    argv = box.command([sys.executable, "-c", "pass"], tmp_path / "work")
    assert argv[0] == BWRAP
    for flag in ("--unshare-pid", "--die-with-parent", "--unshare-ipc"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--unshare-net" not in argv and "--unshare-all" not in argv  # deploys need it
    assert argv[argv.index("--proc") + 1] == "/proc"
    assert argv[argv.index("--dev") + 1] == "/dev"
    assert "/tmp" in [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert ("--bind", str(tmp_path / "work"), "/step") in zip(
        argv, argv[1:], argv[2:], strict=False
    )
    assert argv[argv.index("--chdir") + 1] == "/step"
    assert argv[argv.index("--") + 1 :] == [sys.executable, "-c", "pass"]
    # Writable: the work dir only. Read-only: system directories and the Python.
    assert options(argv, "--bind") == [(str(tmp_path / "work"), "/step")]
    shown = [Path(dest) for _, dest in options(argv, "--ro-bind")]
    assert Path("/usr") in shown and Path("/etc") in shown
    assert Path(sys.prefix) in shown
    assert Path(sys.base_prefix) in shown or Path(sys.base_prefix).is_relative_to("/usr")
    # Not the directory around the venv (the checkout, the worker's cwd), nor the home.
    assert not any(Path.cwd().is_relative_to(p) for p in shown)
    assert not any((tmp_path / "home").is_relative_to(p) for p in shown)
    # Nothing of the worker's environment is on the command line (it is given as the env).
    assert "--setenv" not in argv and "--clearenv" not in argv


def test_declared_paths_are_bound_and_stagelines_state_inside_them_hidden(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    key_file = tmp_path / "master.key"
    key_file.write_text("k")
    cwd = tmp_path / "worker"
    cwd.mkdir()
    box = StepSandbox.from_settings(
        settings(
            tmp_path,
            master_key_file=key_file,
            step_paths=(
                StepPath(path=tools),
                StepPath(path=tmp_path, writable=True),
            ),
        ),
        bwrap=BWRAP,
        cwd=cwd,
    )
    argv = box.command(["true"], tmp_path / "work")
    assert (str(tools), str(tools)) in options(argv, "--ro-bind")
    assert (str(tmp_path), str(tmp_path)) in options(argv, "--bind")
    hidden = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    # STAGELINE_HOME (with the database) and the worker's cwd: an empty read-only tmpfs.
    assert str(tmp_path / "home") in hidden and str(cwd) in hidden
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--remount-ro"] == [
        str(tmp_path / "home"),
        str(cwd),
    ]
    assert ("/dev/null", str(key_file)) in options(argv, "--ro-bind")
    # ...each after the mount it covers.
    assert argv.index(str(tmp_path / "home")) > argv.index(str(tmp_path))


def test_a_key_file_under_etc_is_hidden(tmp_path: Path) -> None:
    # /etc/hostname stands in for /etc/stageline/master.key: a file under a system directory.
    box = StepSandbox.from_settings(
        settings(tmp_path, master_key_file=Path("/etc/hostname")), bwrap=BWRAP, cwd=Path("/")
    )
    argv = box.command(["true"], tmp_path)
    assert ("/dev/null", "/etc/hostname") in options(argv, "--ro-bind")
    # A worker running in / hides nothing more: / is not shown, only what is bound in it.
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"] == ["/tmp"]


@pytest.mark.parametrize("declared", ["home", "home/deploys"])
def test_declaring_stagelines_home_or_inside_it_is_refused(tmp_path: Path, declared: str) -> None:
    (tmp_path / "home" / "deploys").mkdir(parents=True)
    step_path = StepPath(path=tmp_path / declared, writable=True)
    with pytest.raises(ConfigurationError, match="holds stageline's own state"):
        StepSandbox.from_settings(settings(tmp_path, step_paths=(step_path,)), bwrap=BWRAP)


def test_a_declared_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{tmp_path / 'nope'} does not exist"):
        StepSandbox.from_settings(
            settings(tmp_path, step_paths=(StepPath(path=tmp_path / "nope"),)), bwrap=BWRAP
        )


def test_without_bwrap_the_message_says_how_to_install_it_or_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError) as caught:
        sandbox.prepare(settings(tmp_path))
    message = caught.value.message
    assert "apt-get install bubblewrap" in message and "--allow-unsandboxed-steps" in message
    assert "STAGELINE_ALLOW_UNSANDBOXED_STEPS=1" in message


def test_a_bwrap_that_cannot_sandbox_here_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    box = StepSandbox.from_settings(settings(tmp_path), bwrap=str(broken))
    with pytest.raises(ConfigurationError) as caught:
        box.check()
    assert "No permissions to create new namespace" in caught.value.message
    assert "--allow-unsandboxed-steps" in caught.value.message


def test_the_opt_out_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stageline.sandbox"):
        assert sandbox.prepare(settings(tmp_path, allow_unsandboxed_steps=True)) is None
    assert "STEPS RUN UNSANDBOXED" in caplog.text


def test_the_real_bwrap_works_here(tmp_path: Path) -> None:
    box = sandbox.prepare(settings(tmp_path))
    assert box is not None


# -- real steps through run_step -----------------------------------------------------------


def context(run: list[str], env: dict[str, str] | None = None, timeout: int = 60) -> StepContext:
    return StepContext(
        app="web",
        environment="dev",
        version="1.0.0",
        artifact=None,
        step=Step.model_validate(
            {"name": "probe", "run": run, "env": env or {}, "timeout_seconds": timeout}
        ),
        config=ResolvedConfiguration(environment="dev", app="web"),
        workflow_id="promote-web-1.0.0-dev",
        data_namespaces={},
    )


@pytest.fixture
def worker_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A value in this (worker) process's environment that no step names."""
    value = f"worker-only-{uuid.uuid4().hex}"
    monkeypatch.setenv("STAGELINE_MASTER_KEY", value)
    yield value


LOOK_AROUND = r"""
import glob, json, os, sys
def attempt(what, fn):
    try:
        return fn()
    except OSError as exc:
        return f"denied: {exc.strerror}"
def write(path):
    with open(path, "w") as f:
        f.write("x")
    return "written"
out = {
    "cwd": os.getcwd(),
    "home": os.environ.get("HOME"),
    "pids": sorted(p.split("/")[2] for p in glob.glob("/proc/[0-9]*")),
    "environs": [
        attempt(p, lambda p=p: open(p, "rb").read().decode())
        for p in glob.glob("/proc/*/environ")
    ],
    "env": dict(os.environ),
    "step": attempt("step", lambda: write("/step/own")),
    "tmp": attempt("tmp", lambda: write("/tmp/own-" + sys.argv[1])),
    "etc": attempt("etc", lambda: write("/etc/pwned-" + sys.argv[1])),
    "venv": attempt("venv", lambda: write(os.path.join(sys.prefix, "pwned-" + sys.argv[1]))),
    "checkout": attempt("checkout", lambda: os.listdir(sys.argv[2])),
}
print(json.dumps(out))
"""


async def test_a_step_sees_its_own_processes_environment_and_space_only(
    tmp_path: Path, worker_secret: str
) -> None:
    tag = uuid.uuid4().hex
    checkout = str(Path.cwd())
    done = await run_step(
        context([sys.executable, "-c", LOOK_AROUND, tag, checkout], {"MINE": "yes"}),
        "run-1",
        lambda: None,
        sandbox=build(BWRAP),
    )
    assert done.exit_code == 0, done.output
    seen = json.loads(done.output)
    assert worker_secret not in done.output
    assert seen["cwd"] == "/step" and seen["home"] in ("/step", None)
    # Its own PID namespace: bwrap's init, the step, and whatever it started, nothing else.
    assert len(seen["pids"]) <= 3 and "1" in seen["pids"]
    assert seen["env"]["MINE"] == "yes" and seen["env"]["STAGELINE_RUN_ID"] == "run-1"
    assert "STAGELINE_MASTER_KEY" not in seen["env"]
    assert seen["step"] == "written" and seen["tmp"] == "written"
    assert seen["etc"].startswith("denied") and seen["venv"].startswith("denied")
    # The checkout around the venv: nothing of it, at most the way to the venv.
    venv = Path(sys.prefix)
    way = {venv.relative_to(checkout).parts[0]} if venv.is_relative_to(checkout) else set()
    assert seen["checkout"] == sorted(way) if way else seen["checkout"].startswith("denied")
    assert not Path(f"/etc/pwned-{tag}").exists()
    assert not (Path(sys.prefix) / f"pwned-{tag}").exists()
    assert not Path(f"/tmp/own-{tag}").exists()  # its /tmp was its own


async def test_a_missing_program_fails_as_before(tmp_path: Path) -> None:
    done = await run_step(
        context(["no-such-program-here"]), "run-1", lambda: None, sandbox=build(BWRAP)
    )
    assert done.exit_code == 127
    assert done.output == "cannot start 'no-such-program-here': No such file or directory"


def alive(tag: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if tag.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


async def test_detached_grandchildren_die_with_a_timed_out_step() -> None:
    """Killing the process group used to miss a grandchild in a session of its own."""
    tag = f"grandchild-{uuid.uuid4().hex}"
    script = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {tag!r}], "
        "start_new_session=True); print('spawned', flush=True); time.sleep(300)"
    )
    try:
        done = await run_step(
            context([sys.executable, "-c", script], timeout=2),
            "r",
            lambda: None,
            sandbox=build(BWRAP),
        )
        assert done.timed_out and "spawned" in done.output
        for _ in range(50):
            if not alive(tag):
                break
            await asyncio.sleep(0.1)
        assert alive(tag) == []
    finally:
        for pid in alive(tag):
            os.kill(pid, 9)


def test_build_needs_no_settings() -> None:
    box = build(BWRAP)
    assert "--unshare-pid" in box.command(["true"], Path("/nonexistent"))


def test_work_dirs_of_dead_workers_are_swept_at_start(tmp_path: Path) -> None:
    """A SIGKILLed worker cannot remove its steps' work dirs; the next worker does."""
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    base = Path(tempfile.gettempdir())
    dead = base / f"{sandbox.WORKDIR_PREFIX}{dead_pid.pid}-{uuid.uuid4().hex}"
    mine = base / f"{sandbox.WORKDIR_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    for path in (dead, mine):
        (path / "left").mkdir(parents=True)
    try:
        sandbox.sweep_workdirs()
        assert not dead.exists() and mine.exists()
    finally:
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)
