"""Encryption of what stageline stores in Temporal.

Every payload a stageline client or worker hands to Temporal (workflow and activity inputs
and results, signals, queries, updates, memos, and failure messages and stack traces, which
the failure converter moves into a payload) is sealed with AES-256-GCM before it leaves the
process. The key is derived from the master key with HKDF, so the master key itself never
encrypts anything here, and a payload names the master key (by id) it was sealed under.

Payloads without the "binary/encrypted" encoding pass through decoding unchanged: histories
recorded before encryption still replay, and a plain JSON input typed into the Temporal UI or
`temporal workflow start --input` still starts a workflow.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from vault.envelope import DecryptionError
from vault.keys import KEY_BYTES, KeyProvider

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
CODEC_KEY_INFO = b"stageline temporal payload codec"
NONCE_BYTES = 12
_FORMAT = b"\x01"  # leading version byte, so the format can change without guessing
_TAG_BYTES = 16


class PayloadDecryptionError(DecryptionError):
    """A Temporal payload cannot be decrypted here: another key, or it was altered."""


def derive_codec_key(master: KeyProvider) -> bytes:
    """The payload key: HKDF-SHA256 of the master key, bound to this one purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=CODEC_KEY_INFO).derive(
        master.key()
    )


def _aad(key_id: str) -> bytes:
    # Binds the key id in the (clear) metadata to the ciphertext: editing it breaks the tag.
    return b"stageline:temporal-payload:v1:key=" + key_id.encode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole payload (its metadata too, e.g. the JSON encoding).

    Encrypts with `key`; decrypts with `key` or any of `previous` (keys retired by a rotation
    while workflows sealed under them may still be running).
    """

    def __init__(self, key: KeyProvider, previous: Sequence[KeyProvider] = ()) -> None:
        self.key_id = key.key_id
        self._aead = AESGCM(derive_codec_key(key))
        self._readers = {k.key_id: AESGCM(derive_codec_key(k)) for k in (*previous, key)}

    def __repr__(self) -> str:
        return f"EncryptionCodec(key_id={self.key_id})"

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, payload.SerializeToString(), _aad(self.key_id))
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()},
            data=_FORMAT + nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID)
        if not raw_id:
            raise PayloadDecryptionError(
                f"a Temporal payload marked {ENCODING.decode()} names no {KEY_ID}; it was "
                "not encrypted by stageline"
            )
        key_id = raw_id.decode("utf-8", "replace")
        aead = self._readers.get(key_id)
        if aead is None:
            raise PayloadDecryptionError(
                f"a Temporal payload was encrypted with the stageline master key {key_id!r}, "
                f"but this process has the master key {self.key_id!r}; configure the key "
                f"with id {key_id!r} (STAGELINE_MASTER_KEY or STAGELINE_MASTER_KEY_FILE, or, "
                "if it was retired by a rotation, STAGELINE_PREVIOUS_MASTER_KEY_FILES) to read it"
            )
        blob = payload.data
        if len(blob) < 1 + NONCE_BYTES + _TAG_BYTES or blob[:1] != _FORMAT:
            raise PayloadDecryptionError(
                f"a Temporal payload encrypted with key {key_id!r} is not in stageline's "
                "format; it was altered or truncated"
            )
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return Payload.FromString(aead.decrypt(nonce, body, _aad(key_id)))
        except (InvalidTag, DecodeError):
            raise PayloadDecryptionError(
                f"a Temporal payload encrypted with key {key_id!r} failed authentication; it "
                "was altered or corrupted"
            ) from None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def data_converter(key: KeyProvider, previous: Sequence[KeyProvider] = ()) -> DataConverter:
    """The converter of every stageline client and worker: pydantic JSON, then encrypted;
    failure messages and stack traces moved into (encrypted) payloads as well."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(key, previous),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
