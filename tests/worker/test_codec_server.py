"""The codec server over real HTTP on 127.0.0.1, called exactly as Temporal UI 2.54 calls it
(what it sends was read from the UI bundled in the `temporal` binary), and the
`stageline codec-server` command as a subprocess. tests/worker/test_codec_with_temporal_cli.py
runs the real `temporal` CLI against it."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

import worker.codec_server
from models.errors import BadInput, ConfigurationError, Unavailable
from models.promotion import PromotionInput
from tests.conftest import STAGELINE, Cli
from vault.codec import ENCODING, KEY_ID, EncryptionCodec, data_converter
from vault.keys import MasterKey
from worker.codec_server import (
    CodecServer,
    dev_ui_origins,
    listen,
    parse_payloads,
    read_token_file,
    render_payloads,
    serve_codec,
    ui_origin,
)

KEY = MasterKey(b"k" * 32)
UI = "http://localhost:8233"
TOKEN = "codec-token-3f9a1c7e5b2d4e6f"
REQUEST = PromotionInput(
    app="web", version="1.4.0", target="staging", requested_by="ci@acme", source="api"
)
# The UI 2.54 calls `${endpoint}/decode?preserveStorageRefs=true` (and /encode likewise) with
# exactly these headers, plus Authorization when its "pass access token" setting is on.
UI_HEADERS = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI}
DECODE = "/decode?preserveStorageRefs=true"
ENCODE = "/encode?preserveStorageRefs=true"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    with serve_codec(EncryptionCodec(KEY), dev_ui_origins(8233)) as running:
        async with httpx.AsyncClient(base_url=running.url) as client:
            yield client


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    """A server that requires the bearer token."""
    with serve_codec(EncryptionCodec(KEY), dev_ui_origins(8233), token=TOKEN) as running:
        async with httpx.AsyncClient(base_url=running.url) as client:
            yield client


def body(payloads: list[Payload]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(render_payloads(payloads))
    return loaded


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def preflight_headers(origin: str = UI) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }


async def test_decode_then_encode_round_trip_as_the_ui_sends_it(http: httpx.AsyncClient) -> None:
    [sealed] = await data_converter(KEY).encode([REQUEST])
    decoded = await http.post(DECODE, json=body([sealed]), headers=UI_HEADERS)
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["content-type"] == "application/json"
    [item] = decoded.json()["payloads"]
    assert base64.b64decode(item["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(item["data"]))["requested_by"] == "ci@acme"

    # What the UI encodes (e.g. a signal typed into it), the workers read.
    encoded = await http.post(ENCODE, json=decoded.json(), headers=UI_HEADERS)
    assert encoded.status_code == 200, encoded.text
    [again] = parse_payloads(encoded.content)
    assert again.metadata["encoding"] == ENCODING and again.metadata[KEY_ID] == KEY.key_id.encode()
    assert await data_converter(KEY).decode([again], [PromotionInput]) == [REQUEST]


@pytest.mark.parametrize("path", [DECODE, ENCODE, "/decode", "/encode"])
@pytest.mark.parametrize("sent", [b"{}", b'{"payloads": []}'])
async def test_an_empty_message_is_no_payloads(
    http: httpx.AsyncClient, path: str, sent: bytes
) -> None:
    # Go's protojson (the temporal CLI) sends an empty Payloads as `{}`.
    response = await http.post(path, content=sent, headers=UI_HEADERS)
    assert response.status_code == 200, response.text
    assert response.json() == {"payloads": []}
    assert cors_of(response)["access-control-allow-origin"] == UI


async def test_the_answer_is_protobuf_json_of_every_payload_field(http: httpx.AsyncClient) -> None:
    plain = Payload(metadata={"encoding": b"binary/null"})  # no data at all
    typed = Payload(metadata={"encoding": b"json/plain", "messageType": b"x.Y"}, data=b'"hi"')
    response = await http.post("/decode", content=render_payloads([plain, typed]))
    assert response.status_code == 200, response.text
    assert response.json() == json_format.MessageToDict(Payloads(payloads=[plain, typed]))
    assert parse_payloads(response.content) == [plain, typed]  # plain ones pass unchanged


async def test_a_failures_encoded_attributes_decode_to_its_message(
    http: httpx.AsyncClient,
) -> None:
    """stageline moves failure messages and stack traces into `encoded_attributes` (encrypted);
    the UI sends that payload to /decode like any other and shows the message."""
    failure = Failure()
    message = "release web@9.9.9 does not exist"
    await data_converter(KEY).encode_failure(
        ApplicationError(message, type="InvalidInput"), failure
    )
    assert (
        failure.message == "Encoded failure" and message.encode() not in failure.SerializeToString()
    )
    attributes = json_format.MessageToDict(failure)["encodedAttributes"]
    response = await http.post(DECODE, json={"payloads": [attributes]}, headers=UI_HEADERS)
    assert response.status_code == 200, response.text
    [decoded] = response.json()["payloads"]
    assert json.loads(base64.b64decode(decoded["data"]))["message"] == message


async def test_the_ui_preflight_is_answered_for_both_paths_with_or_without_query(
    http: httpx.AsyncClient,
) -> None:
    for origin in ("http://127.0.0.1:8233", "http://localhost:8233"):
        for path in (DECODE, ENCODE, "/decode", "/encode"):
            preflight = await http.options(path, headers=preflight_headers(origin))
            assert preflight.status_code == 204, (path, preflight.text)
            cors = cors_of(preflight)
            assert cors["access-control-allow-origin"] == origin
            assert cors["access-control-allow-credentials"] == "true"
            assert "POST" in cors["access-control-allow-methods"]
            allowed = {h.strip().lower() for h in cors["access-control-allow-headers"].split(",")}
            assert {"content-type", "x-namespace", "authorization"} <= allowed
            assert preflight.headers["vary"] == "Origin"
            posted = await http.post(path, json={}, headers={**UI_HEADERS, "Origin": origin})
            assert posted.status_code == 200 and posted.json() == {"payloads": []}
            assert cors_of(posted)["access-control-allow-origin"] == origin
            assert cors_of(posted)["access-control-allow-credentials"] == "true"
            assert posted.headers["vary"] == "Origin"


async def test_other_origins_and_hosts_are_refused_without_cors(http: httpx.AsyncClient) -> None:
    [sealed] = await data_converter(KEY).encode([REQUEST])
    evil = {**UI_HEADERS, "Origin": "https://evil.example"}
    for method in ("OPTIONS", "POST"):
        refused = await http.request(method, DECODE, json=body([sealed]), headers=evil)
        assert refused.status_code == 403
        assert "origin 'https://evil.example' is not allowed" in refused.json()["error"]
        assert cors_of(refused) == {} and refused.headers["vary"] == "Origin"
        assert b"ci@acme" not in refused.content
    # A hostile DNS name pointed at 127.0.0.1 (rebinding) is not this server.
    rebound = await http.post("/decode", json=body([sealed]), headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and "unexpected Host" in rebound.json()["error"]
    assert b"ci@acme" not in rebound.content
    port = http.base_url.port
    by_name = await http.post("/decode", json=body([sealed]), headers={"Host": f"localhost:{port}"})
    assert by_name.status_code == 200
    # The temporal CLI sends no Origin: it is served, without CORS headers.
    cli = await http.post("/decode", json=body([sealed]))
    assert cli.status_code == 200 and cors_of(cli) == {}


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[]", "the body must be a JSON object"),
        (b'{"payloads": {}}', "the body is not a Payloads message"),
        (b'{"payloads": [1]}', "the body is not a Payloads message"),
        (b'{"payloads": [{"data": "***"}]}', "payloads[0].data is not valid base64"),
        (b'{"payloads": [{"data": "a"}]}', "Invalid base64"),
        (b'{"payloads": [{"metadata": {"encoding": "@@"}}]}', "metadata.encoding is not valid"),
        (b'{"payloads": [{"metadata": {"encoding": 5}}]}', "Failed to parse metadata field"),
        (b'{"payload": []}', 'has no field named "payload"'),
    ],
)
async def test_bad_bodies_get_400_saying_what_is_wrong_and_the_format(
    http: httpx.AsyncClient, sent: bytes, says: str
) -> None:
    response = await http.post(DECODE, content=sent, headers=UI_HEADERS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert says in error and '{"payloads": [{"metadata"' in error
    assert cors_of(response)["access-control-allow-origin"] == UI  # the UI can show why


async def test_undecryptable_payloads_get_422_naming_the_key(http: httpx.AsyncClient) -> None:
    other = MasterKey(b"o" * 32)
    [foreign] = await data_converter(other).encode([REQUEST])
    response = await http.post(DECODE, json=body([foreign]), headers=UI_HEADERS)
    assert response.status_code == 422 and other.key_id in response.json()["error"]
    [sealed] = await data_converter(KEY).encode([REQUEST])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    altered = await http.post(DECODE, json=body([sealed]), headers=UI_HEADERS)
    assert altered.status_code == 422 and "failed authentication" in altered.json()["error"]


async def test_other_paths_and_methods_get_json_errors(http: httpx.AsyncClient) -> None:
    unknown = await http.post("/elsewhere", json={})
    get = await http.get("/decode")
    assert unknown.status_code == 404 and "use POST /encode or POST /decode" in unknown.text
    assert get.status_code == 405 and "use POST /encode or POST /decode" in get.text
    docs = await http.get("/docs")
    assert docs.status_code == 404  # FastAPI's generated pages are not served


async def test_a_body_over_the_limit_gets_413(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.codec_server, "MAX_BODY", 1000)
    big = json.dumps({"payloads": [{"data": "QUFB" * 500}]}).encode()
    declared = await http.post(DECODE, content=big, headers=UI_HEADERS)
    assert declared.status_code == 413 and "larger than 1000 bytes" in declared.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    streamed = await http.post(DECODE, content=chunks(), headers=UI_HEADERS)
    assert streamed.status_code == 413


async def test_with_a_token_decoding_needs_it_and_preflights_do_not(
    guarded: httpx.AsyncClient,
) -> None:
    [sealed] = await data_converter(KEY).encode([REQUEST])
    for authorization in (None, "Bearer wrong-token-0000000000", f"Basic {TOKEN}", TOKEN[:-1]):
        headers = dict(UI_HEADERS)
        if authorization is not None:
            headers["Authorization"] = authorization
        refused = await guarded.post(DECODE, json=body([sealed]), headers=headers)
        assert refused.status_code == 401, authorization
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer <token>" in refused.json()["error"]
        assert b"ci@acme" not in refused.content
        # The UI can read why (CORS headers), and a refused origin still learns nothing.
        assert cors_of(refused)["access-control-allow-origin"] == UI
    # Browsers send no credentials in a preflight, so it needs none.
    preflight = await guarded.options(DECODE, headers=preflight_headers())
    assert preflight.status_code == 204 and cors_of(preflight)["access-control-allow-origin"] == UI
    for authorization in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        served = await guarded.post(
            DECODE, json=body([sealed]), headers={**UI_HEADERS, "Authorization": authorization}
        )
        assert served.status_code == 200, served.text
        assert b"ci@acme" in base64.b64decode(served.json()["payloads"][0]["data"])


def test_token_files_are_checked_with_one_clear_sentence(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(f"{TOKEN}\n")
    assert read_token_file(good) == TOKEN
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path: "cannot be read (Is a directory)",
        tmp_path / "empty": "is empty",
        tmp_path / "short": "at least 16 characters",
        tmp_path / "spaces": "at least 16 characters",
        tmp_path / "binary": "is not text",
    }
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "short").write_text("abc")
    (tmp_path / "spaces").write_text("two words of a long enough token")
    (tmp_path / "binary").write_bytes(b"\xff\xfe" * 20)
    for path, says in cases.items():
        with pytest.raises(ConfigurationError) as refused:
            read_token_file(path)
        assert says in refused.value.message and str(path) in refused.value.message


def test_origins_are_checked_and_a_busy_port_is_named() -> None:
    assert ui_origin("HTTPS://Cloud.Temporal.io/") == "https://cloud.temporal.io"
    with pytest.raises(BadInput, match="not a UI origin"):
        ui_origin("localhost:8233")
    with pytest.raises(BadInput, match="not a UI origin"):
        ui_origin("http://localhost:8233/namespaces")
    with serve_codec(EncryptionCodec(KEY), [UI]) as running, pytest.raises(Unavailable) as busy:
        listen(running.port)
    assert f"127.0.0.1:{running.port}" in busy.value.message and "--port" in busy.value.message
    assert isinstance(running, CodecServer) and running.url == f"http://127.0.0.1:{running.port}"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "codec.token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def codec_command(cli: Cli) -> Iterator[list[subprocess.Popen[str]]]:
    """`stageline codec-server` processes a test starts; stopped with Ctrl-C at its end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def start_codec_command(
    cli: Cli, started: list[subprocess.Popen[str]], *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """Start it on a free port; return the process, its address and what it printed."""
    proc = subprocess.Popen(
        [STAGELINE, "codec-server", "--port", "0", *args],
        env=env or cli.env,
        cwd=cli.env["STAGELINE_HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(proc)
    assert proc.stderr is not None
    printed = ""
    while "Stop with Ctrl-C." not in printed:
        line = proc.stderr.readline()
        assert line, f"it exited {proc.wait()} before serving: {printed}"
        printed += line
    url = printed.split("codec server: ", 1)[1].split(" ", 1)[0]
    return proc, url, printed


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


async def test_codec_server_command_serves_until_stopped(
    cli: Cli, codec_command: list[subprocess.Popen[str]]
) -> None:
    proc, url, printed = start_codec_command(
        cli, codec_command, "--ui-origin", "https://ui.example"
    )
    assert url.startswith("http://127.0.0.1:")
    assert f"codec server: {url} (master key {KEY.key_id})" in printed
    assert "open to anyone on this machine" in printed
    [sealed] = await data_converter(KEY).encode([REQUEST])
    async with httpx.AsyncClient(base_url=url) as http:
        ui = {**UI_HEADERS, "Origin": "https://ui.example"}
        preflight = await http.options(DECODE, headers=preflight_headers("https://ui.example"))
        decoded = await http.post(DECODE, json=body([sealed]), headers=ui)
        dev_ui = await http.post(DECODE, json=body([sealed]), headers=UI_HEADERS)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    assert decoded.status_code == 200 and b"ci@acme" in base64.b64decode(
        decoded.json()["payloads"][0]["data"]
    )
    assert dev_ui.status_code == 403  # only the origins given
    code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in printed + err


async def test_codec_server_command_with_a_token_file(
    cli: Cli, codec_command: list[subprocess.Popen[str]], token_file: Path
) -> None:
    by_option = start_codec_command(cli, codec_command, "--token-file", str(token_file))
    by_env = start_codec_command(
        cli, codec_command, env={**cli.env, "STAGELINE_CODEC_TOKEN_FILE": str(token_file)}
    )
    for proc, url, printed in (by_option, by_env):
        assert f"requires the bearer token in {token_file}" in printed
        assert TOKEN not in printed
        async with httpx.AsyncClient(base_url=url) as http:
            without = await http.post(DECODE, json={}, headers=UI_HEADERS)
            wrong = await http.post(
                DECODE, json={}, headers={**UI_HEADERS, "Authorization": "Bearer nope"}
            )
            right = await http.post(
                DECODE, json={}, headers={**UI_HEADERS, "Authorization": f"Bearer {TOKEN}"}
            )
        assert (without.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        code, err = stop(proc)
        assert code == 0 and "Traceback" not in err
        assert TOKEN not in err


def test_codec_server_command_refuses_a_bad_token_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    for path, says in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "is empty"),
        (tmp_path, "cannot be read"),
    ):
        result = cli("codec-server", "--port", "0", "--token-file", str(path))
        assert result.code == 3, result.err
        assert says in result.err and "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
    env = {**cli.env, "STAGELINE_CODEC_TOKEN_FILE": str(tmp_path / "missing")}
    from_env = Cli(env)("codec-server", "--port", "0")
    assert from_env.code == 3 and "does not exist" in from_env.err


def test_codec_server_command_needs_the_master_key(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    result = Cli(env)("codec-server", "--port", "0")
    assert result.code == 3 and "no master key is configured" in result.err
    assert "Traceback" not in result.err
    bad = cli("codec-server", "--port", "0", "--ui-origin", "localhost:8233")
    assert bad.code == 3 and "is not a UI origin" in bad.err
