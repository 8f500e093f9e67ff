"""The step sandbox: every `run:` step runs inside bubblewrap (`bwrap`).

A step runs as the worker's Unix user. Unsandboxed it could read the worker's environment
through /proc/$PPID/environ (the master key), the master key file, STAGELINE_HOME and the
database, decrypt every environment's secrets with stageline's own code and Python, and write
the database; and a grandchild that left the process group outlived a killed worker. Inside
the sandbox a step has:

- its own PID namespace and a fresh /proc, so the worker and every other process are out of
  sight; when the sandbox's first process dies (with the worker, `--die-with-parent`), the
  kernel kills every process left in the namespace, however it detached itself;
- a filesystem holding only the system directories and the Python installation (read-only),
  the paths the operator declares (STAGELINE_STEP_PATHS), a private work dir (`/step`, its
  cwd and HOME) and a private /tmp. STAGELINE_HOME, the key files, the SQLite database's
  directory and the worker's working directory are hidden even inside one of those;
- no capabilities, even when the worker runs as root;
- exactly the environment stageline built for it;
- the host's network: deploy scripts need it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from models.errors import ConfigurationError
from models.settings import Settings, StepPath

log = logging.getLogger("stageline.sandbox")

WORKDIR = "/step"
WORKDIR_PREFIX = "stageline-step-"  # then the worker's pid: see sweep_workdirs
# Read-only, at the same paths, where the host has them (merged-/usr hosts have symlinks).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
CHECK_TIMEOUT = 20.0
OPT_OUT = "--allow-unsandboxed-steps (or STAGELINE_ALLOW_UNSANDBOXED_STEPS=1)"
MISSING = (
    "bubblewrap ('bwrap') was not found on PATH; stageline runs every run: step inside it so "
    "that a step cannot read the worker's master key, STAGELINE_HOME or database: install it "
    "(Debian/Ubuntu: 'apt-get install bubblewrap'; Fedora: 'dnf install bubblewrap'), or run "
    f"steps unsandboxed, at the risk of any pipeline reading every secret, with {OPT_OUT}"
)
UNSANDBOXED_WARNING = (
    "STEPS RUN UNSANDBOXED ({how}): every run: step runs as this worker's user, in its working "
    "directory, able to read its environment, the master key, STAGELINE_HOME and the "
    "database, so any pipeline can read every environment's secrets and write the database; "
    "install bubblewrap ('apt-get install bubblewrap') and drop the opt-out"
)


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host, resolved
    dest: Path  # where the step sees it
    writable: bool = False


@dataclass(frozen=True)
class StepSandbox:
    """How to run a step inside bwrap; built once per worker from its settings."""

    bwrap: str
    mounts: tuple[Mount, ...]
    symlinks: tuple[tuple[str, str], ...] = ()  # (target, path in the sandbox)
    # (host path, where a step would see it): covered with an empty read-only tmpfs, or
    # /dev/null for a file. Only those that exist when the step starts (one can only mount
    # over what is there, and nothing else is there to see).
    hidden_dirs: tuple[tuple[Path, Path], ...] = ()
    hidden_files: tuple[tuple[Path, Path], ...] = ()

    @classmethod
    def from_settings(
        cls, settings: Settings, bwrap: str | None = None, cwd: Path | None = None
    ) -> StepSandbox:
        """Refuses (ConfigurationError) when bwrap is missing, a declared path does not
        exist, or what steps would see contains stageline's own state."""
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise ConfigurationError(MISSING)
        return build(
            found,
            settings.step_paths,
            protected_dirs=_protected_dirs(settings),
            protected_files=_protected_files(settings),
            cwd=Path.cwd() if cwd is None else cwd,
        )

    def command(self, argv: Sequence[str], workdir: Path) -> list[str]:
        """The bwrap command line that runs `argv` in the sandbox, in `workdir` (seen as
        /step). Its environment is the process's own: pass the step's to the bwrap process."""
        args = [
            self.bwrap,
            "--unshare-pid",
            "--unshare-ipc",
            "--die-with-parent",
            # Only honoured for a privileged (root) worker; an unprivileged one has none.
            "--cap-drop",
            "ALL",
        ]
        for target, link in self.symlinks:
            args += ["--symlink", target, link]
        # Parents before children: bwrap mounts in order, and a later mount covers an
        # earlier one's subtree (a hidden directory inside /etc, a declared path in /tmp).
        ops: list[tuple[Path, list[str]]] = [
            (Path("/proc"), ["--proc", "/proc"]),
            (Path("/dev"), ["--dev", "/dev"]),
            (Path("/tmp"), ["--tmpfs", "/tmp"]),
            (Path(WORKDIR), ["--bind", str(workdir), WORKDIR]),
        ]
        for m in self.mounts:
            ops.append(
                (m.dest, ["--bind" if m.writable else "--ro-bind", str(m.source), str(m.dest)])
            )
        dirs = [seen for host, seen in self.hidden_dirs if host.is_dir()]
        files = [seen for host, seen in self.hidden_files if host.exists()]
        ops += [(d, ["--tmpfs", str(d)]) for d in dirs]
        ops += [(f, ["--ro-bind", "/dev/null", str(f)]) for f in files]
        for _, op in sorted(ops, key=lambda o: len(o[0].parts)):
            args += op
        for d in dirs:
            args += ["--remount-ro", str(d)]
        return [*args, "--chdir", WORKDIR, "--", *argv]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The step's environment, its HOME and TMPDIR pointing where it can write."""
        inside = dict(env)
        if "HOME" in inside:
            inside["HOME"] = WORKDIR
        if "TMPDIR" in inside:
            inside["TMPDIR"] = "/tmp"
        return inside

    @asynccontextmanager
    async def workdir(self) -> AsyncIterator[Path]:
        """A fresh private directory for one step run, removed afterwards (or, if the worker
        was killed first, by the next worker's start: see `sweep_workdirs`)."""
        path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        try:
            yield path
        finally:
            # Off the event loop: a step may leave a large tree (an unpacked artifact).
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, path, True))

    def check(self) -> None:
        """Run `true` in the sandbox: bwrap may be installed where it cannot work (user
        namespaces disabled, a container without the privilege)."""
        with tempfile.TemporaryDirectory(prefix="stageline-step-check-") as workdir:
            try:
                done = subprocess.run(
                    self.command(["true"], Path(workdir)),
                    env={"PATH": "/usr/bin:/bin"},
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=CHECK_TIMEOUT,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ConfigurationError(self._broken(str(exc))) from None
        if done.returncode != 0:
            raise ConfigurationError(self._broken(done.stderr.decode(errors="replace").strip()))

    def _broken(self, why: str) -> str:
        return (
            f"bubblewrap ({self.bwrap}) cannot create the step sandbox here ({why}); allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
            "user.max_user_namespaces > 0), or run steps unsandboxed, at the risk of any "
            f"pipeline reading every secret, with {OPT_OUT}"
        )


def build(
    bwrap: str,
    declared: Sequence[StepPath] = (),
    *,
    protected_dirs: Sequence[Path] = (),
    protected_files: Sequence[Path] = (),
    cwd: Path | None = None,
) -> StepSandbox:
    symlinks, system = _system_mounts()
    mounts = [*system, *_runtime_mounts(system)]
    protected = [*protected_dirs, *protected_files]
    mounts += [_declared_mount(step_path, protected) for step_path in declared]
    hidden_dirs = _hidden_dirs(protected_dirs, mounts)
    hidden_files = _hidden_files(protected_files, mounts)
    if cwd is not None:
        hidden_dirs += _hidden_cwd(cwd, mounts)
    return StepSandbox(
        bwrap=bwrap,
        mounts=tuple(mounts),
        symlinks=tuple(symlinks),
        hidden_dirs=tuple(dict.fromkeys(hidden_dirs)),
        hidden_files=tuple(dict.fromkeys(hidden_files)),
    )


def _system_mounts() -> tuple[list[tuple[str, str]], list[Mount]]:
    """The system directories the host has, read-only: (symlinks, mounts)."""
    symlinks: list[tuple[str, str]] = []
    mounts: list[Mount] = []
    for name in SYSTEM_PATHS:
        path = Path(name)
        if path.is_symlink():
            symlinks.append((os.readlink(path), name))
        elif path.is_dir():
            mounts.append(Mount(path.resolve(), path))
    return symlinks, mounts


def _runtime_mounts(system: Sequence[Mount]) -> list[Mount]:
    """What steps need from outside the system directories: DNS and the Python installation."""
    mounts: list[Mount] = []
    # /etc/resolv.conf may point into /run (systemd-resolved): DNS must keep working.
    resolv = Path("/etc/resolv.conf").resolve()
    if resolv.exists() and not _under(resolv, system):
        mounts.append(Mount(resolv, resolv))
    for prefix in python_prefixes():
        if not _under(prefix.resolve(), system):
            mounts.append(Mount(prefix.resolve(), prefix))
            if prefix.resolve() != prefix:
                mounts.append(Mount(prefix.resolve(), prefix.resolve()))
    return mounts


def _declared_mount(step_path: StepPath, protected: Sequence[Path]) -> Mount:
    """A path the operator declared, refused if missing or holding stageline's own state."""
    if not step_path.path.exists():
        raise ConfigurationError(
            f"STAGELINE_STEP_PATHS: {step_path.path} does not exist; create it or remove "
            "it from the declared step paths"
        )
    source = step_path.path.resolve()
    for secret in protected:
        if source.is_relative_to(secret) or secret == source:
            raise ConfigurationError(
                f"STAGELINE_STEP_PATHS: {step_path.path} is or lies inside {secret}, which "
                "holds stageline's own state (STAGELINE_HOME, the database or a key); "
                "declare a path outside it"
            )
    return Mount(source, step_path.path, step_path.writable)


def _hidden_dirs(
    protected_dirs: Sequence[Path], mounts: Sequence[Mount]
) -> list[tuple[Path, Path]]:
    """(host path, where steps see it) of each protected directory steps would see; refused
    when one is itself mounted (hiding it would hide the whole mount)."""
    hidden: list[tuple[Path, Path]] = []
    for secret in protected_dirs:
        seen = _seen_at(secret, mounts)
        if seen is not None and any(secret == m.source for m in mounts):
            raise ConfigurationError(
                f"{secret} holds stageline's own state (STAGELINE_HOME or the database) and "
                "is a directory steps would see; keep it outside the system directories and "
                "the declared step paths"
            )
        if seen is not None:
            hidden.append((secret, seen))
    return hidden


def _hidden_files(
    protected_files: Sequence[Path], mounts: Sequence[Mount]
) -> list[tuple[Path, Path]]:
    hidden: list[tuple[Path, Path]] = []
    for secret in protected_files:
        seen = _seen_at(secret, mounts)
        if seen is not None:
            hidden.append((secret, seen))
    return hidden


def _hidden_cwd(cwd: Path, mounts: Sequence[Mount]) -> list[tuple[Path, Path]]:
    """The worker's working directory: the default STAGELINE_HOME lives there, and often
    other files (an .env). Hidden where it lies inside something steps see; shown only if
    it is itself one of those (the venv, a declared path)."""
    here = cwd.resolve()
    seen = _seen_at(here, mounts)
    if seen is not None and not any(here == m.source for m in mounts):
        return [(here, seen)]
    return []


def python_prefixes() -> list[Path]:
    """The venv and the Python installation it came from: steps commonly run
    `sys.executable`. Not the directory around the venv (often the repository)."""
    found: list[Path] = []
    for text in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        path = Path(text)
        if path not in found and not any(path.is_relative_to(p) for p in found):
            found = [p for p in found if not p.is_relative_to(path)] + [path]
    return found


def _protected_dirs(settings: Settings) -> list[Path]:
    dirs = [settings.home.resolve()]
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # The whole directory: SQLite reads -wal and -journal files beside the database.
        dirs.append(Path(url.database).expanduser().resolve().parent)
    return list(dict.fromkeys(dirs))


def _protected_files(settings: Settings) -> list[Path]:
    files = [settings.master_key_file, settings.codec_token_file]
    files += list(settings.previous_master_key_files)
    return [f.expanduser().resolve() for f in files if f is not None]


def _under(path: Path, mounts: Sequence[Mount]) -> bool:
    return any(path.is_relative_to(m.source) for m in mounts)


def _seen_at(path: Path, mounts: Sequence[Mount]) -> Path | None:
    """Where a step would see host `path`, if anywhere (the innermost mount wins)."""
    best: Mount | None = None
    for m in mounts:
        if path.is_relative_to(m.source) and (
            best is None or len(m.source.parts) > len(best.source.parts)
        ):
            best = m
    return None if best is None else best.dest / path.relative_to(best.source)


def sweep_workdirs() -> None:
    """Remove the work dirs of workers that died before removing them (SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = path.name.removeprefix(WORKDIR_PREFIX).split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


def prepare(settings: Settings, how: str = OPT_OUT) -> StepSandbox | None:
    """The sandbox this worker's steps run in, checked to work here; None only when the
    operator opted out, which is logged as loudly as we can."""
    if settings.allow_unsandboxed_steps:
        log.warning(UNSANDBOXED_WARNING.format(how=how))
        return None
    sandbox = StepSandbox.from_settings(settings)
    sandbox.check()
    sweep_workdirs()
    log.info(
        "run: steps are sandboxed with %s; declared paths: %s",
        sandbox.bwrap,
        ", ".join(str(p) for p in settings.step_paths) or "none",
    )
    return sandbox
