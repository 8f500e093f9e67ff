"""The web console over plain HTTP, against a real `stageline server` process on a SQLite
file: sessions and their CSRF checks, the environment selector, what each page shows (and
never shows), hostile strings rendered as text, and actions refused to those without the role.
The browser suite (tests/browser/test_console.py) drives the same pages in chromium."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import PASSWORD, Served, alone

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SECRET_VALUE = "s3cr3t-value-never-shown"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the tests below that need no Temporal (each uses people of its own)."""
    with alone(tmp_path_factory.mktemp("console")) as served:
        yield served


def browser_login(served: Served, name: str, next_path: str = "/") -> httpx.Client:
    """An httpx client holding a console session, logged in through the login form."""
    client = httpx.Client(base_url=served.url, timeout=60, follow_redirects=False)
    form = client.get("/login", params={"next": next_path})
    assert form.status_code == 200
    csrf = _csrf(form.text)
    answer = client.post(
        "/login",
        data={"name": name, "password": PASSWORD, "csrf_token": csrf, "next": next_path},
    )
    assert answer.status_code == 303, answer.text
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_pages_need_a_session_and_login_returns_to_the_page(console: Served) -> None:
    with httpx.Client(base_url=console.url, timeout=60) as anonymous:
        answer = anonymous.get("/environments/dev", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fenvironments%2Fdev"
        # The API keeps answering JSON, never a page.
        assert anonymous.get("/api/v1/whoami").json()["error"]["exit_code"] == 2
    console.add_user("ann", "*:viewer")
    client = browser_login(console, "ann", "/environments/dev")
    answered = client.post(
        "/login", data={"name": "ann", "password": PASSWORD, "csrf_token": "x", "next": "/"}
    )
    assert answered.status_code == 403  # a login form without its own CSRF cookie value
    page = client.get("/environments/dev")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert 'data-testid="signed-in-as">ann<' in page.text


def test_login_mistakes_and_an_open_redirect(console: Served) -> None:
    console.add_user("bob", "*:viewer")
    with httpx.Client(base_url=console.url, timeout=60) as client:
        csrf = _csrf(client.get("/login").text)
        wrong = client.post(
            "/login", data={"name": "bob", "password": "nope", "csrf_token": csrf, "next": "/"}
        )
        assert wrong.status_code == 401
        assert "wrong name or password" in wrong.text
        empty = client.post("/login", data={"name": "", "password": "", "csrf_token": csrf})
        assert empty.status_code == 400
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            answer = client.post(
                "/login",
                data={"name": "bob", "password": PASSWORD, "csrf_token": csrf, "next": target},
                follow_redirects=False,
            )
            assert answer.status_code == 303
            assert answer.headers["location"] == "/"


def test_environment_selector_is_kept_in_the_url_and_per_user(console: Served) -> None:
    console.add_user("cat", "*:viewer")
    console.add_user("dan", "*:viewer")
    cat = browser_login(console, "cat")
    chosen = cat.get("/", params={"env": "production"})
    assert '<option value="production" selected>' in chosen.text
    assert '<th><a href="/environments/dev">dev</a></th>' not in chosen.text
    # Another page opened without ?env shows the same environment, for this user only.
    assert '<option value="production" selected>' in cat.get("/releases").text
    dan = browser_login(console, "dan")
    dan.cookies.set("stageline_env", cat.cookies["stageline_env"])
    assert '<option value="" selected>' in dan.get("/releases").text
    missing = cat.get("/", params={"env": "nowhere"})
    assert missing.status_code == 400
    assert "there is no environment &#39;nowhere&#39;" in missing.text
    assert '<option value="" selected>' in cat.get("/", params={"env": ""}).text


def test_secrets_are_named_never_shown_and_hostile_strings_are_text(console: Served) -> None:
    machine = console.machine
    machine.ok("var", "set", "GREETING", HOSTILE, "--env", "dev")
    machine.ok("secret", "set", "API_TOKEN", "--env", "dev", input=SECRET_VALUE + "\n")
    machine.ok("tool", "create", "hook", "--kind", "webhook")
    machine.ok(
        "tool", "profile", "hook", "--env", "dev", "--url", "https://sandbox.example.test/h",
        "--auth-secret", "API_TOKEN", "--param", f"note={HOSTILE}",
    )  # fmt: skip
    machine.ok("env", "freeze", "dev", "--reason", HOSTILE)
    hook = "https://hooks.example.test/services/T000/B000/very-secret-path"
    machine.ok("notify", "add", "dev", "team-chat", "--events", "deployed", input=hook + "\n")
    console.add_user("eve", "*:viewer")
    client = browser_login(console, "eve")
    pages = ("/environments/dev", "/audit?env=dev", "/diff?app=web&source=dev&target=production")
    for path in pages:
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html, path
        assert SECRET_VALUE not in html and "very-secret-path" not in html, path
    page = client.get("/environments/dev").text
    assert 'data-testid="secret-API_TOKEN"' in page
    assert "bearer with secret <code>API_TOKEN</code>" in page
    assert "frozen" in page
    assert "team-chat: https://hooks.example.test for deployed" in page


def test_actions_are_refused_without_the_role_and_without_csrf(console: Served) -> None:
    console.add_user("vic", "*:viewer")
    vic = browser_login(console, "vic")
    page = vic.get("/environments/dev").text
    assert "Roll back" not in page
    csrf = _csrf(page)
    forged = {
        "/rollback": {"app": "web", "environment": "dev"},
        "/promote": {"app": "web", "version": "1.0.0", "to": "dev"},
        "/runs/promote-web-1.0.0-to-dev/decide": {"kind": "approve"},
    }
    for path, fields in forged.items():
        answer = vic.post(path, data={**fields, "csrf_token": csrf})
        assert answer.status_code == 403, (path, answer.text)
        assert "vic may not" in answer.text or "needs the" in answer.text, answer.text
        without = vic.post(path, data=fields)
        assert without.status_code == 403
        assert "X-CSRF-Token" in without.text
    # Nor are the confirmation pages theirs to see.
    for path, query in (
        ("/promote", {"app": "web", "version": "1.0.0", "to": "dev"}),
        ("/rollback", {"app": "web", "environment": "dev"}),
    ):
        confirm = vic.get(path, params=query)
        assert confirm.status_code == 403 and "needs the deployer role" in confirm.text, path
    audit = console.machine.ok("audit", "--json").out
    assert '"access.refused"' in audit and '"vic"' in audit


async def test_a_reviewer_overrides_a_freeze_from_the_run_page(
    served: Served, tmp_path: Path
) -> None:
    """A frozen promotion's page offers the reviewer Override; the form, sent as a browser
    sends it, lifts the freeze for that promotion, which then deploys."""
    machine = served.machine
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"steps:\n  - name: deploy\n    run: [{sys.executable!r}, '-c', 'pass']\n")
    machine.ok("release", "create", "web", "1.0.0", "--pipeline", str(pipeline))
    machine.ok("env", "protect", "dev", "--reviewer", "rex")  # who may override its freezes
    machine.ok("env", "freeze", "dev", "--reason", "holiday freeze")
    ci = served.remote(served.ci_token("ci", "--env", "dev", "--role", "deployer"), "ci")
    started = await ci.run("promote", "web", "1.0.0", "--to", "dev", "--json")
    assert started.code == 0, started.err
    run = f"/runs/{json.loads(started.out)['promotion_id']}"
    served.add_user("rex", "dev:reviewer")
    served.add_user("ros", "dev:reviewer")  # has the role, but is not one of dev's reviewers
    refused = await asyncio.to_thread(_decide, browser_login(served, "ros"), run, "frozen")
    assert refused.status_code == 409 and "ros is not a reviewer of dev" in refused.text
    # In a thread: this test's event loop runs the worker that answers the page's queries.
    await asyncio.to_thread(_override, browser_login(served, "rex"), run)


def _decide(client: httpx.Client, run: str, phase: str) -> httpx.Response:
    """The Override button of the run's page, once the run is in `phase`."""
    page = _until(client, run, phase)
    assert 'value="override"' in page and 'value="approve"' not in page
    return client.post(
        f"{run}/decide",
        data={"kind": "override", "comment": "hotfix", "csrf_token": _csrf(page)},
    )


def _override(rex: httpx.Client, run: str) -> None:
    answer = _decide(rex, run, "frozen")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{run}?done=override"
    _until(rex, run, "deployed")


def _until(client: httpx.Client, path: str, phase: str) -> str:
    """The page once its run shows `phase` (the page refreshes itself; a test asks again)."""
    deadline = time.monotonic() + 60
    while True:
        html = client.get(path).text
        if f'data-testid="phase">{phase.replace("_", " ")}<' in html:
            return html
        assert time.monotonic() < deadline, html[-2000:]
        time.sleep(0.5)
