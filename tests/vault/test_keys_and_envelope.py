"""The master key, the envelope, and the value type that never prints itself."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from models.errors import ConfigurationError
from models.settings import Settings
from vault.envelope import DecryptionError, new_data_key, seal, secret_aad, unseal
from vault.keys import MasterKey, generate_key_text, load_master_key, write_key_file
from vault.secret_value import SecretValue


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(home=tmp_path, database_url="sqlite+aiosqlite://", **kw)


def test_secret_value_never_prints_its_plaintext() -> None:
    value = SecretValue("hunter2-very-secret")
    rendered = [str(value), repr(value), f"{value}", f"{value!r}", format(value, ""), str([value])]
    assert all("hunter2" not in text for text in rendered)
    assert value.reveal() == "hunter2-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_associated_data_binds_the_ciphertext_to_its_place() -> None:
    key = new_data_key()
    blob = seal(key, b"payload", secret_aad(1, 3, None, "DB", 1))
    assert unseal(key, blob, secret_aad(1, 3, None, "DB", 1), "DB") == b"payload"
    for other in (
        secret_aad(1, 2, None, "DB", 1),
        secret_aad(1, 3, 7, "DB", 1),
        secret_aad(1, 3, None, "DB2", 1),
        secret_aad(1, 3, None, "DB", 2),
    ):
        with pytest.raises(DecryptionError, match="cannot be decrypted"):
            unseal(key, blob, other, "DB")
    with pytest.raises(DecryptionError):
        unseal(new_data_key(), blob, secret_aad(1, 3, None, "DB", 1), "DB")


def test_no_master_key_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no master key is configured"):
        load_master_key(settings(tmp_path))


def test_master_key_must_be_32_base64_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a base64-encoded 32-byte key"):
        load_master_key(settings(tmp_path, master_key="too-short"))
    key = load_master_key(settings(tmp_path, master_key=generate_key_text()))
    assert len(key.key()) == 32 and "MasterKey(id=" in repr(key)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(generate_key_text())
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_master_key(settings(tmp_path, master_key_file=path))
    path.chmod(0o600)
    assert load_master_key(settings(tmp_path, master_key_file=path)).key_id


def test_dev_key_file_is_created_owner_only_and_then_used(tmp_path: Path) -> None:
    created = write_key_file(tmp_path / "dev-master.key")
    assert os.stat(tmp_path / "dev-master.key").st_mode & 0o777 == 0o600
    assert load_master_key(settings(tmp_path)).key_id == created.key_id


def test_master_key_id_does_not_reveal_the_key() -> None:
    key = MasterKey(b"x" * 32)
    assert key.key_id not in (b"x" * 32).hex() and len(key.key_id) == 16
