"""The codec server the Temporal UI calls, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from models.errors import BadInput, Unavailable
from models.promotion import PromotionInput
from tests.conftest import STAGELINE, Cli
from vault.codec import ENCODING, KEY_ID, EncryptionCodec, data_converter
from vault.keys import MasterKey
from worker.codec_server import (
    CodecServer,
    dev_ui_origins,
    parse_payloads,
    render_payloads,
    serve_codec,
    ui_origin,
)

KEY = MasterKey(b"k" * 32)
UI = "http://localhost:8233"
REQUEST = PromotionInput(
    app="web", version="1.4.0", target="staging", requested_by="ci@acme", source="api"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[CodecServer]:
    with serve_codec(EncryptionCodec(KEY), dev_ui_origins(8233)) as running:
        yield running


def body(payloads: list[Payload]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(render_payloads(payloads))
    return loaded


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_decode_then_encode_round_trip_in_the_ui_format(server: CodecServer) -> None:
    [sealed] = await data_converter(KEY).encode([REQUEST])
    async with httpx.AsyncClient(base_url=server.url) as http:
        decoded = await http.post(
            "/decode", json=body([sealed]), headers={"Origin": UI, "X-Namespace": "default"}
        )
        assert decoded.status_code == 200, decoded.text
        [item] = decoded.json()["payloads"]
        assert base64.b64decode(item["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(item["data"]))["requested_by"] == "ci@acme"

        encoded = await http.post("/encode", json=decoded.json(), headers={"Origin": UI})
        assert encoded.status_code == 200, encoded.text
        [again] = parse_payloads(encoded.content)
    assert again.metadata["encoding"] == ENCODING and again.metadata[KEY_ID] == KEY.key_id.encode()
    # What the UI encodes (e.g. a signal typed in it), the workers read.
    assert await data_converter(KEY).decode([again], [PromotionInput]) == [REQUEST]


async def test_cors_preflight_and_responses_name_the_ui_origin(server: CodecServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for origin in ("http://127.0.0.1:8233", "http://localhost:8233"):
            preflight = await http.options(
                "/decode",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-namespace",
                },
            )
            assert preflight.status_code == 204
            cors = cors_of(preflight)
            assert cors["access-control-allow-origin"] == origin
            assert cors["access-control-allow-methods"] == "POST, OPTIONS"
            assert cors["access-control-allow-headers"] == "Content-Type, X-Namespace"
            assert cors["access-control-allow-credentials"] == "true"
            posted = await http.post("/decode", json={"payloads": []}, headers={"Origin": origin})
            assert posted.status_code == 200 and posted.json() == {"payloads": []}
            assert cors_of(posted)["access-control-allow-origin"] == origin
            assert cors_of(posted)["access-control-allow-credentials"] == "true"


async def test_other_origins_and_hosts_are_refused_without_cors(server: CodecServer) -> None:
    [sealed] = await data_converter(KEY).encode([REQUEST])
    async with httpx.AsyncClient(base_url=server.url) as http:
        for method in ("OPTIONS", "POST"):
            refused = await http.request(
                method, "/decode", json=body([sealed]), headers={"Origin": "https://evil.example"}
            )
            assert refused.status_code == 403
            assert "origin 'https://evil.example' is not allowed" in refused.json()["error"]
            assert cors_of(refused) == {}
            assert b"ci@acme" not in refused.content
        # A hostile DNS name pointed at 127.0.0.1 (rebinding) is not this server.
        rebound = await http.post("/decode", json=body([sealed]), headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and "unexpected Host" in rebound.json()["error"]
        # The temporal CLI sends no Origin: it is served.
        cli = await http.post("/decode", json=body([sealed]))
        assert cli.status_code == 200 and cors_of(cli) == {}


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[]", "a JSON object with a list 'payloads'"),
        (b'{"payloads": [1]}', "payloads[0] must be an object"),
        (b'{"payloads": [{"data": "***"}]}', "payloads[0].data is not valid base64"),
        (b'{"payloads": [{"metadata": {"encoding": 5}}]}', "payloads[0].metadata.encoding must"),
    ],
)
async def test_bad_bodies_get_400_with_a_clear_message(
    server: CodecServer, sent: bytes, says: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/decode", content=sent, headers={"Origin": UI, "Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert cors_of(response)["access-control-allow-origin"] == UI  # the UI can show why


async def test_a_payload_of_another_key_gets_422_naming_the_key(server: CodecServer) -> None:
    other = MasterKey(b"o" * 32)
    [sealed] = await data_converter(other).encode([REQUEST])
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/decode", json=body([sealed]), headers={"Origin": UI})
        unknown = await http.post("/elsewhere", json={"payloads": []})
        get = await http.get("/decode")
    assert response.status_code == 422 and other.key_id in response.json()["error"]
    assert unknown.status_code == 404 and get.status_code == 405


def test_origins_are_checked_and_a_busy_port_is_named() -> None:
    assert ui_origin("HTTPS://Cloud.Temporal.io/") == "https://cloud.temporal.io"
    with pytest.raises(BadInput, match="not a UI origin"):
        ui_origin("localhost:8233")
    with pytest.raises(BadInput, match="not a UI origin"):
        ui_origin("http://localhost:8233/namespaces")
    with serve_codec(EncryptionCodec(KEY), [UI]) as running, pytest.raises(Unavailable) as busy:
        CodecServer(EncryptionCodec(KEY), [UI], running.port)
    assert f"127.0.0.1:{running.port}" in busy.value.message and "--port" in busy.value.message


def test_codec_server_command_serves_until_stopped(cli: Cli) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [STAGELINE, "codec-server", "--port", str(port), "--ui-origin", "https://ui.example"],
        env=cli.env,
        cwd=cli.env["STAGELINE_HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                preflight = httpx.options(
                    f"http://127.0.0.1:{port}/decode", headers={"Origin": "https://ui.example"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the codec server never answered"
                time.sleep(0.2)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"codec server: http://127.0.0.1:{port} (master key {KEY.key_id})" in err
    assert "Traceback" not in err


def test_codec_server_command_needs_the_master_key(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    result = Cli(env)("codec-server", "--port", "0")
    assert result.code == 3 and "no master key is configured" in result.err
    assert "Traceback" not in result.err
    bad = cli("codec-server", "--port", "0", "--ui-origin", "localhost:8233")
    assert bad.code == 3 and "is not a UI origin" in bad.err
