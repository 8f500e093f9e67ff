"""Ed25519 signatures of reviewer decisions and of requests the stageline server starts:
the canonical messages, signing and verifying, the text form of public keys, and reviewers'
private key files.

No database and no Temporal here, so the CLI and the server (which sign) and the worker's
activities (which verify) use exactly the same messages. Workflow code never imports this:
crypto runs in an activity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.errors import BadInput
from models.names import PERSON_NAME
from models.review import DecisionKind, RequestKind

PUBLIC_KEY_PREFIX = "ed25519:"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# Names what is signed, so a signature made for anything else can never pass for a decision.
PURPOSE = "stageline-decision-v1"
# The same for the start of a promotion, train or rollback: a decision's signature never
# passes for a request's, nor the other way round.
REQUEST_PURPOSE = "stageline-request-v1"
KEY_FILE_SUFFIX = ".ed25519"


def decision_message(
    *,
    namespace: str,
    workflow_id: str,
    run_id: str,
    kind: DecisionKind,
    reviewer: str,
    comment: str | None,
) -> bytes:
    """The bytes a reviewer signs: this decision, bound to one promotion run.

    Canonical JSON (sorted keys, no spaces, ASCII only) so signer and verifier build the same
    bytes from the same fields, whatever produced them. The run id makes a signature useless
    for any other promotion, or another run under the same workflow id.
    """
    fields = {
        "purpose": PURPOSE,
        "namespace": namespace,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "kind": kind,
        "reviewer": reviewer,
        "comment": comment,
    }
    return _canonical(fields)


def request_message(
    *,
    namespace: str,
    workflow_id: str,
    kind: RequestKind,
    app: str,
    version: str | None,
    environment: str,
    requested_by: str,
    on_behalf_of: str | None,
    force: bool = False,
) -> bytes:
    """The bytes the stageline server signs when it starts a workflow for someone who signed
    in: this request, bound to the workflow id it starts it under.

    `environment` is a promotion's target, a train's `through`, a rollback's environment;
    `version` a rollback's `to_version` (None: the previous release). `force` (promotions
    only) is signed too, so a signed request cannot be turned into a forced one. Canonical
    JSON as in `decision_message`, with a purpose of its own.
    """
    fields = {
        "purpose": REQUEST_PURPOSE,
        "namespace": namespace,
        "workflow_id": workflow_id,
        "kind": kind,
        "app": app,
        "version": version,
        "environment": environment,
        "requested_by": requested_by,
        "on_behalf_of": on_behalf_of,
        "force": force,
    }
    return _canonical(fields)


def _canonical(fields: Mapping[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    """A signature as it travels in a decision: base64 of the 64 raw bytes."""
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def decode_signature(text: str) -> bytes | None:
    """The raw signature, or None when `text` is not base64 of 64 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == SIGNATURE_BYTES else None


def verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- public keys ------------------------------------------------------------------------------

_KEY_FORM = (
    f"expected '{PUBLIC_KEY_PREFIX}' followed by the base64 of a 32-byte Ed25519 public key, as "
    "'stageline reviewer key generate' prints it"
)


def parse_public_key(text: str) -> bytes:
    """The raw 32 bytes of a public key in its text form. The text is never echoed in an
    error: someone may paste a private key by mistake."""
    text = text.strip()
    if "PRIVATE KEY" in text:
        raise BadInput(
            "that is a private key: keep it on the reviewer's machine and register the public "
            "key that 'stageline reviewer key generate' printed"
        )
    body = text.removeprefix(PUBLIC_KEY_PREFIX)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"the public key is not valid: {_KEY_FORM}") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise BadInput(
            f"the public key is not valid ({len(raw)} bytes, not {PUBLIC_KEY_BYTES}): {_KEY_FORM}"
        )
    return raw


def public_key_text(raw: bytes) -> str:
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def public_key_of(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def fingerprint(raw: bytes) -> str:
    """SHA-256 of the raw public key, hex; people see (and may type) its first 16 digits."""
    return hashlib.sha256(raw).hexdigest()


def short(fingerprint_hex: str) -> str:
    return fingerprint_hex[:16]


# -- private key files ------------------------------------------------------------------------


def default_key_file(home: Path, reviewer: str) -> Path | None:
    """Where `stageline reviewer key generate` puts a reviewer's key by default; None for a
    name that cannot be a file name (it cannot be a reviewer either)."""
    if not PERSON_NAME.fullmatch(reviewer):
        return None
    return home / "keys" / f"{reviewer}{KEY_FILE_SUFFIX}"


def write_private_key(path: Path) -> Ed25519PrivateKey:
    """Create a new key in a new file readable by its owner only; never overwrite one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BadInput(
            f"key file {path} already exists; keep using it, or give another --key-file "
            "(a key that is no longer wanted is revoked with 'stageline reviewer key revoke')"
        ) from None
    except OSError as exc:
        raise BadInput(f"cannot create key file {path} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """A reviewer's private key, or a one-line reason why it cannot be used."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(
            f"key file {path} does not exist; create a key with 'stageline reviewer key "
            "generate WHO' and register its public key with 'stageline reviewer key add'"
        ) from None
    except IsADirectoryError:
        raise BadInput(f"key file {path} is a directory, not a key file") from None
    except OSError as exc:
        raise BadInput(f"key file {path} cannot be read ({exc.strerror or exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInput(f"key file {path} is readable by other users; run 'chmod 600 {path}'")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BadInput(
            f"key file {path} is protected by a passphrase, which stageline cannot ask for; "
            "use a key made by 'stageline reviewer key generate'"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(
            f"key file {path} does not hold a private key in PEM form (as 'stageline reviewer "
            "key generate' writes it)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
