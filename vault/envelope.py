"""AES-256-GCM envelope encryption.

The master key wraps one data key per environment; each data key encrypts that
environment's secrets. The associated data binds every ciphertext to where it belongs
(workspace, environment, app, name, version), so a ciphertext copied into another row, or
another environment, fails to decrypt instead of leaking.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models.errors import StagelineError
from vault.keys import KEY_BYTES, KeyProvider

NONCE_BYTES = 12
_FORMAT = b"\x01"  # leading version byte, so the format can change without guessing


class DecryptionError(StagelineError):
    """A ciphertext does not belong where it was found, or the key is not the one used."""


def data_key_aad(workspace_id: int, environment_id: int) -> bytes:
    return f"stageline:data-key:v1:ws={workspace_id}:env={environment_id}".encode()


def secret_aad(
    workspace_id: int, environment_id: int, app_id: int | None, key: str, version: int
) -> bytes:
    app = "-" if app_id is None else str(app_id)
    return (
        f"stageline:secret:v1:ws={workspace_id}:env={environment_id}:app={app}"
        f":key={key}:version={version}"
    ).encode()


def notification_url_aad(workspace_id: int, environment_id: int, name: str) -> bytes:
    """A notification target's webhook URL (a credential) is sealed like a secret, bound to
    its workspace, environment and target name."""
    return (
        f"stageline:notification-url:v1:ws={workspace_id}:env={environment_id}:name={name}".encode()
    )


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _FORMAT:
        raise DecryptionError(f"{what} is not a stageline ciphertext")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise DecryptionError(
            f"{what} cannot be decrypted here: it was not encrypted for this workspace, "
            "environment, app, name and version, or with this key"
        ) from None


def wrap_data_key(master: KeyProvider, data_key: bytes, aad: bytes) -> bytes:
    return seal(master.key(), data_key, aad)


def unwrap_data_key(master: KeyProvider, wrapped: bytes, aad: bytes, environment: str) -> bytes:
    return unseal(
        master.key(),
        wrapped,
        aad,
        f"the data key of environment {environment!r} (was it "
        "wrapped with another master key? check STAGELINE_MASTER_KEY)",
    )
