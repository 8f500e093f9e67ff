"""The Temporal payload codec: what it writes, what it refuses, what it lets through."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from models.errors import StagelineError
from models.promotion import PromotionInput
from models.settings import Settings
from vault.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    data_converter,
    derive_codec_key,
)
from vault.keys import MasterKey, load_master_key, load_previous_keys

KEY = MasterKey(b"k" * 32)
OTHER = MasterKey(b"o" * 32)
REQUEST = PromotionInput(
    app="web", version="1.4.0", target="staging", requested_by="ci@acme", source="api"
)


async def test_round_trip_hides_the_value_and_its_encoding() -> None:
    converter = data_converter(KEY)
    [payload] = await converter.encode([REQUEST])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == KEY.key_id.encode()
    # The JSON, and the metadata saying it is JSON of a pydantic model, are both sealed.
    for clear in (b"web", b"1.4.0", b"ci@acme", b"json/plain"):
        assert clear not in payload.SerializeToString()
    assert await converter.decode([payload], [PromotionInput]) == [REQUEST]


async def test_each_encryption_is_fresh() -> None:
    codec = EncryptionCodec(KEY)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec.encode([plain, plain])
    assert first.data != second.data
    assert await codec.decode([first, second]) == [plain, plain]


def test_the_codec_key_is_derived_never_the_master_key() -> None:
    derived = derive_codec_key(KEY)
    assert len(derived) == 32 and derived != KEY.key()
    assert derived == derive_codec_key(MasterKey(b"k" * 32))
    assert derived != derive_codec_key(OTHER)
    assert "k" * 8 not in repr(EncryptionCodec(KEY))


async def test_a_worker_with_another_key_names_the_key_it_lacks() -> None:
    [payload] = await data_converter(KEY).encode([REQUEST])
    with pytest.raises(PayloadDecryptionError) as caught:
        await data_converter(OTHER).decode([payload], [PromotionInput])
    message = caught.value.message
    assert KEY.key_id in message and OTHER.key_id in message
    assert "STAGELINE_MASTER_KEY" in message
    # A StagelineError: the CLI prints it as one line with an exit code, not a traceback.
    assert isinstance(caught.value, StagelineError)


async def test_a_retired_key_still_decrypts_but_never_encrypts() -> None:
    [old] = await EncryptionCodec(OTHER).encode([Payload(data=b"x")])
    rotated = EncryptionCodec(KEY, previous=[OTHER])
    assert await rotated.decode([old]) == [Payload(data=b"x")]
    [new] = await rotated.encode([Payload(data=b"x")])
    assert new.metadata[KEY_ID] == KEY.key_id.encode()


async def test_previous_key_files_from_the_environment_read_payloads_from_before_a_rotation(
    tmp_path: Path,
) -> None:
    [old] = await data_converter(OTHER).encode([REQUEST])
    retired = tmp_path / "retired.key"
    retired.write_text(base64.b64encode(b"o" * 32).decode())
    retired.chmod(0o600)
    settings = Settings.from_env(
        {
            "STAGELINE_HOME": str(tmp_path),
            "STAGELINE_MASTER_KEY": base64.b64encode(b"k" * 32).decode(),
            "STAGELINE_PREVIOUS_MASTER_KEY_FILES": str(retired),
        }
    )
    converter = data_converter(load_master_key(settings), load_previous_keys(settings))
    assert await converter.decode([old], [PromotionInput]) == [REQUEST]
    # Without it, the error says where the retired key goes.
    with pytest.raises(PayloadDecryptionError, match="STAGELINE_PREVIOUS_MASTER_KEY_FILES"):
        await data_converter(load_master_key(settings)).decode([old], [PromotionInput])


@pytest.mark.parametrize("where", ["data", "nonce", "version", "key id", "truncated"])
async def test_tampering_is_detected(where: str) -> None:
    codec = EncryptionCodec(KEY, previous=[OTHER])
    [payload] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"{}")])
    data = bytearray(payload.data)
    if where == "data":
        data[-1] ^= 1
    elif where == "nonce":
        data[1] ^= 1
    elif where == "version":
        data[0] = 2
    elif where == "truncated":
        data = data[:20]
    else:
        # Relabel it as sealed by the other key the codec holds: the tag binds the key id.
        payload.metadata[KEY_ID] = OTHER.key_id.encode()
    payload.data = bytes(data)
    with pytest.raises(PayloadDecryptionError, match=r"altered|truncated"):
        await codec.decode([payload])


async def test_a_payload_marked_encrypted_without_a_key_id_is_refused() -> None:
    with pytest.raises(PayloadDecryptionError, match="names no encryption-key-id"):
        await EncryptionCodec(KEY).decode([Payload(metadata={"encoding": ENCODING}, data=b"x")])


async def test_unencrypted_payloads_pass_through_unchanged() -> None:
    # As in histories recorded before encryption, or input typed into the Temporal UI.
    [plain] = await pydantic_data_converter.encode([REQUEST])
    bare = Payload(data=b"no metadata at all")
    assert await EncryptionCodec(KEY).decode([plain, bare]) == [plain, bare]
    assert await data_converter(KEY).decode([plain], [PromotionInput]) == [REQUEST]


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = data_converter(KEY)
    failure = Failure()
    try:
        raise ApplicationError("step failed: connection to db-7.internal refused", type="StepError")
    except ApplicationError as exc:
        await converter.encode_failure(exc, failure)
    raw = failure.SerializeToString()
    assert b"db-7.internal" not in raw and b"test_codec" not in raw
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == "step failed: connection to db-7.internal refused"
    assert decoded.type == "StepError"
