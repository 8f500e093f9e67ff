"""One settings object, read from the environment once, at the edge (CLI or worker start).

Workflow code never reads it: workflows get what they need through their inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.errors import ConfigurationError, error_text

TASK_QUEUE = "stageline"
# The stageline server's default address; the console is served at its root.
CONSOLE_URL = "http://127.0.0.1:8480"
DEV_KEY_FILE = "dev-master.key"
# What the sandbox provides itself: a declared path may not be or cover one, nor sit inside
# one, except inside /tmp (mounted over the sandbox's private /tmp).
SANDBOX_RESERVED = ("/proc", "/dev", "/step", "/tmp")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class StepPath(BaseModel):
    """A host path the operator lets `run:` steps see, at the same path, read-only unless
    `writable` (STAGELINE_STEP_PATHS)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    writable: bool = False

    @field_validator("path")
    @classmethod
    def _plain_absolute(cls, path: Path) -> Path:
        text = str(path)
        if not path.is_absolute() or ".." in path.parts or "," in text or ":" in text:
            raise ValueError(f"{text!r}: a step path must be absolute, without '..', ',' or ':'")
        if path == Path("/"):
            raise ValueError("'/' would show steps the whole machine; declare what they need")
        for reserved in SANDBOX_RESERVED:
            inside = path.is_relative_to(reserved) and reserved != "/tmp"
            if inside or Path(reserved).is_relative_to(path):
                raise ValueError(f"{text!r} overlaps {reserved}, which the sandbox provides")
        return path

    def __str__(self) -> str:
        return f"{self.path}:{'rw' if self.writable else 'ro'}"


def parse_step_paths(text: str) -> tuple[StepPath, ...]:
    """`/opt/tools:ro,/srv/deploy:rw`: comma-separated paths, each `:ro` (the default when
    omitted) or `:rw`."""
    paths = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        path, _, mode = entry.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ConfigurationError(
                f"STAGELINE_STEP_PATHS: {entry!r} must be PATH, PATH:ro or PATH:rw "
                "(entries separated by ',', e.g. /opt/tools:ro,/srv/deploy:rw)"
            )
        try:
            paths.append(StepPath(path=Path(path), writable=mode == "rw"))
        except ValidationError as exc:
            reason = error_text(exc.errors()[0])
            raise ConfigurationError(f"STAGELINE_STEP_PATHS: {reason}") from None
    return tuple(paths)


def parse_flag(name: str, text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (true/false), not {text!r}")


def console_url(text: str | None) -> str:
    """STAGELINE_CONSOLE_URL (none: the server's default address), without a trailing '/'."""
    url = (text or "").strip().rstrip("/") or CONSOLE_URL
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise ConfigurationError(
            f"STAGELINE_CONSOLE_URL {url!r} is not an http:// or https:// address; set it to "
            "the address people open the stageline server at, e.g. "
            "https://stageline.example.com"
        )
    return url


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    database_url: str
    workspace: str = "default"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    # The key itself is kept out of repr so it never reaches a log or a traceback.
    master_key: str | None = Field(default=None, repr=False)
    master_key_file: Path | None = None
    # Master keys retired by `stageline vault rotate`, still needed to read Temporal payloads
    # written before the rotation (decoding only; see vault.codec).
    previous_master_key_files: tuple[Path, ...] = ()
    # The bearer token `stageline codec-server` requires (a file, so it stays out of `env`).
    codec_token_file: Path | None = None
    # Host paths `run:` steps may see besides the system directories (see activities.sandbox).
    step_paths: tuple[StepPath, ...] = ()
    # The operator's explicit choice to run steps without the sandbox, e.g. where bubblewrap
    # cannot work; the worker warns loudly and records it in the audit log.
    allow_unsandboxed_steps: bool = False
    # Where people open the web console: the links in notifications point there.
    console_url: str = CONSOLE_URL

    @field_validator("console_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            return console_url(url)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @property
    def dev_key_file(self) -> Path:
        return self.home / DEV_KEY_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("STAGELINE_HOME") or ".stageline").expanduser().absolute()
        return cls(
            home=home,
            database_url=env.get("STAGELINE_DATABASE_URL")
            or f"sqlite+aiosqlite:///{home / 'stageline.db'}",
            workspace=env.get("STAGELINE_WORKSPACE") or "default",
            temporal_address=env.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233",
            temporal_namespace=env.get("TEMPORAL_NAMESPACE") or "default",
            task_queue=env.get("STAGELINE_TASK_QUEUE") or TASK_QUEUE,
            master_key=env.get("STAGELINE_MASTER_KEY") or None,
            master_key_file=Path(env["STAGELINE_MASTER_KEY_FILE"]).expanduser()
            if env.get("STAGELINE_MASTER_KEY_FILE")
            else None,
            previous_master_key_files=tuple(
                Path(p).expanduser()
                for p in (env.get("STAGELINE_PREVIOUS_MASTER_KEY_FILES") or "").split(os.pathsep)
                if p
            ),
            codec_token_file=Path(env["STAGELINE_CODEC_TOKEN_FILE"]).expanduser()
            if env.get("STAGELINE_CODEC_TOKEN_FILE")
            else None,
            step_paths=parse_step_paths(env.get("STAGELINE_STEP_PATHS") or ""),
            allow_unsandboxed_steps=parse_flag(
                "STAGELINE_ALLOW_UNSANDBOXED_STEPS", env.get("STAGELINE_ALLOW_UNSANDBOXED_STEPS")
            ),
            console_url=console_url(env.get("STAGELINE_CONSOLE_URL")),
        )
