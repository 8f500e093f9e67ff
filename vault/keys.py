"""The master key: where it comes from, and the provider protocol the envelope uses."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from models.errors import ConfigurationError
from models.settings import Settings

KEY_BYTES = 32
_HOW_TO_SET = (
    "set STAGELINE_MASTER_KEY to a base64-encoded 32-byte key (make one with "
    "'stageline vault generate-key') or STAGELINE_MASTER_KEY_FILE to a file holding one, "
    "or run 'stageline dev', which creates a dev key under STAGELINE_HOME"
)


class KeyProvider(Protocol):
    """Gives the key that wraps environment data keys; a KMS could stand behind it."""

    @property
    def key_id(self) -> str: ...

    def key(self) -> bytes: ...


class MasterKey:
    """A 256-bit key held in memory; its repr names its id, never its bytes."""

    __slots__ = ("_key", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"the master key must be {KEY_BYTES} bytes, got {len(key)}; {_HOW_TO_SET}"
            )
        self._key = key
        self._key_id = hmac.new(key, b"stageline key id", hashlib.sha256).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def key(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return f"MasterKey(id={self._key_id})"

    @classmethod
    def from_text(cls, text: str, where: str) -> MasterKey:
        text = text.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ConfigurationError(
                f"the master key in {where} is not a base64-encoded 32-byte key; {_HOW_TO_SET}"
            )
        return cls(raw)


def generate_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def read_key_file(path: Path) -> MasterKey:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"master key file {path} does not exist; {_HOW_TO_SET}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"master key file {path} cannot be read ({exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"master key file {path} is readable by other users; run 'chmod 600 {path}'"
        )
    return MasterKey.from_text(text, str(path))


def write_key_file(path: Path) -> MasterKey:
    """Create a new key file readable by its owner only (used by `stageline dev`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = generate_key_text()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return MasterKey.from_text(text, str(path))


def load_previous_keys(settings: Settings) -> list[MasterKey]:
    """Retired master keys (STAGELINE_PREVIOUS_MASTER_KEY_FILES), for decoding only."""
    return [read_key_file(path) for path in settings.previous_master_key_files]


def load_master_key(settings: Settings) -> MasterKey:
    """The configured master key, or a clear refusal to go on without one."""
    if settings.master_key:
        return MasterKey.from_text(settings.master_key, "STAGELINE_MASTER_KEY")
    if settings.master_key_file is not None:
        return read_key_file(settings.master_key_file)
    if settings.dev_key_file.exists():
        return read_key_file(settings.dev_key_file)
    raise ConfigurationError(f"no master key is configured; {_HOW_TO_SET}")
