"""The codec routes on the server decode workflow payloads only for someone who may view
every environment (or who holds the codec token), and keep the codec server's origin check."""

from __future__ import annotations

import httpx
from temporalio.api.common.v1 import Payload

from tests.conftest import KEY_TEXT
from tests.server.conftest import Served
from vault.codec import EncryptionCodec
from vault.keys import MasterKey
from worker.codec_server import parse_payloads, render_payloads


def sealed() -> bytes:
    codec = EncryptionCodec(MasterKey.from_text(KEY_TEXT, "test"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"app":"web"}')
    return render_payloads([codec.encrypt(plain)])


def decode(served: Served, token: str | None, origin: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if origin:
        headers["Origin"] = origin
    return httpx.post(f"{served.url}/codec/decode", content=sealed(), headers=headers)


def test_payloads_decode_only_for_who_views_everything(served_alone: Served) -> None:
    served = served_alone
    assert decode(served, None).status_code == 401
    dev_only = served.ci_token("dev-viewer", "--env", "dev", "--role", "viewer")
    refused = decode(served, dev_only)
    assert refused.status_code == 403 and "scoped to dev" in refused.text
    everywhere = served.ci_token("auditor", "--role", "viewer")
    answer = decode(served, everywhere)
    assert answer.status_code == 200, answer.text
    [plain] = parse_payloads(answer.content)
    assert plain.data == b'{"app":"web"}'
    # A page of another site is refused by the codec's own origin check, token or not.
    assert decode(served, everywhere, origin="https://evil.example").status_code == 403
    audit = served.machine.ok("audit", "--json").out
    assert '"actor": "dev-viewer"' in audit and '"subject": "codec"' in audit
