"""Signing in to a real server: rate-limited logins, cookie sessions that a page of another
site cannot use (CSRF), and no password or token in a log, an audit entry or an error."""

from __future__ import annotations

import json

import httpx

from server.auth import CSRF_COOKIE, SESSION_COOKIE
from tests.server.conftest import PASSWORD, Served, no_secret_text


def login(served: Served, name: str, password: str, **extra: object) -> httpx.Response:
    with served.http() as http:
        return http.post("/api/v1/login", json={"name": name, "password": password, **extra})


def test_logins_are_rate_limited_per_name_and_say_when_to_retry(served_alone: Served) -> None:
    served = served_alone
    served.add_user("alice", "*:viewer")
    wrong = [login(served, "alice", "wrong password, try again") for _ in range(5)]
    assert [w.status_code for w in wrong] == [401] * 5
    assert all(w.json()["error"]["message"].startswith("wrong name or password") for w in wrong)
    # The sixth attempt is refused before the password is even checked: the right one too.
    limited = login(served, "alice", PASSWORD)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 61
    assert "too many failed logins" in limited.json()["error"]["message"]
    # An unknown name gets the same answer as a wrong password, and its own limit.
    unknown = login(served, "mallory", PASSWORD)
    assert unknown.status_code in (401, 429)
    assert "wrong name or password" in unknown.text or "too many" in unknown.text
    # The CLI says the same, exits 2, and stores nothing.
    cli = served.remote(name="alice")
    answer = cli("login", "alice", "--url", served.url, input=PASSWORD + "\n")
    assert answer.code == 2 and "too many failed logins" in answer.err
    assert not (served.root / "remote-alice" / "session.json").exists()
    no_secret_text(served, PASSWORD, "wrong password, try again")


def test_a_login_from_the_cli_keeps_a_session_for_later_commands(served_alone: Served) -> None:
    served = served_alone
    served.add_user("bob", "dev:deployer")
    cli = served.remote(name="bob")
    cli.env.pop("STAGELINE_URL")
    missing = cli("login", "bob", input=PASSWORD + "\n")
    assert missing.code == 3 and "--url" in missing.err
    signed_in = cli("login", "bob", "--url", served.url, input=PASSWORD + "\n")
    assert signed_in.code == 0, signed_in.err
    session = served.root / "remote-bob" / "session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    token = json.loads(session.read_text())["token"]
    cli.env["STAGELINE_URL"] = served.url
    listed = cli("env", "list", "--json")
    assert listed.code == 0 and [e["name"] for e in json.loads(listed.out)] == ["dev", "production"]
    # bob deploys to dev only: production configuration is not his to change.
    refused = cli("var", "set", "K", "v", "--env", "production")
    assert refused.code == 2 and "needs the admin role" in refused.err
    # The session is for that server only.
    cli.env["STAGELINE_URL"] = served.url.replace("127.0.0.1", "localhost")
    elsewhere = cli("env", "list")
    assert elsewhere.code == 2 and "no credentials" in elsewhere.err
    no_secret_text(served, PASSWORD, token)
    audit = served.machine.ok("audit", "--json").out
    assert token not in audit and PASSWORD not in audit and "user.login" in audit


def test_cookie_sessions_need_the_csrf_token_for_changes(served_alone: Served) -> None:
    served = served_alone
    served.add_user("carol", "*:admin")
    answer = login(served, "carol", PASSWORD, cookie=True)
    assert answer.status_code == 200
    assert "token" not in answer.json()  # the token is in the cookie only
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    csrf = answer.json()["csrf_token"]
    jar = {SESSION_COOKIE: answer.cookies[SESSION_COOKIE], CSRF_COOKIE: csrf}
    with httpx.Client(base_url=served.url, cookies=jar) as browser:
        # Reading with the cookie alone is fine (GET).
        assert browser.get("/api/v1/whoami").json()["name"] == "carol"
        # A change without the header, as a form on another site would send it: refused.
        forged = browser.post(
            "/api/v1/variables/set-variable",
            json={"environment": "dev", "key": "K", "value": "v"},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 403
        assert "X-CSRF-Token" in forged.json()["error"]["message"]
        wrong = browser.post(
            "/api/v1/variables/set-variable",
            json={"environment": "dev", "key": "K", "value": "v"},
            headers={"X-CSRF-Token": "0" * 64},
        )
        assert wrong.status_code == 403
        made = browser.post(
            "/api/v1/variables/set-variable",
            json={"environment": "dev", "key": "K", "value": "v"},
            headers={"X-CSRF-Token": csrf},
        )
        assert made.status_code == 200, made.text
    listed = served.machine.ok("var", "list", "--env", "dev", "--json").out
    assert [v["key"] for v in json.loads(listed)] == ["K"]
    assert len([c for c in listed.split('"key"')]) == 2  # the forged ones stored nothing


def test_errors_never_echo_a_password_or_token(served_alone: Served) -> None:
    served = served_alone
    token = served.ci_token("echo-bot", "--role", "admin")
    secret = "s3cret-value-never-echoed"
    with served.http(token) as http:
        too_short = http.post(
            "/api/v1/principals/add-user",
            json={"name": "dave", "password": "short-pw", "roles": []},
        )
        assert too_short.status_code == 400 and "short-pw" not in too_short.text
        bad_name = http.post(
            "/api/v1/secrets/set-secret",
            json={"environment": "nowhere", "key": "S", "value": secret},
        )
        assert bad_name.status_code == 400 and secret not in bad_name.text
        extra = http.post(
            "/api/v1/secrets/set-secret",
            json={"environment": "dev", "key": "S", "value": secret, "oops": secret},
        )
        assert extra.status_code == 400 and secret not in extra.text
    answer = login(served, "nobody", "my-password-attempt")
    assert "my-password-attempt" not in answer.text
    no_secret_text(served, token, secret, "my-password-attempt", "short-pw")


def test_logout_ends_the_session_on_the_server(served_alone: Served) -> None:
    served = served_alone
    served.add_user("erin", "*:viewer")
    cli = served.remote(name="erin")
    assert cli("login", "erin", input=PASSWORD + "\n").code == 0
    token = json.loads((served.root / "remote-erin" / "session.json").read_text())["token"]
    assert cli("status").code == 0
    out = cli("logout")
    assert out.code == 0 and "signed out" in out.out
    assert not (served.root / "remote-erin" / "session.json").exists()
    # The token itself no longer works, wherever a copy of it is.
    with served.http(token) as http:
        assert http.get("/api/v1/whoami").status_code == 401
    again = cli("logout")
    assert again.code == 0 and "nothing to end" in again.out
    # A CI token is not a session: logging out with one is refused, and it keeps working.
    ci = served.ci_token("erin-bot", "--role", "viewer")
    with served.http(ci) as http:
        refused = http.post("/api/v1/logout")
        assert refused.status_code == 400 and "token revoke" in refused.text
        assert http.get("/api/v1/whoami").status_code == 200
    audit = served.machine.ok("audit", "--json").out
    assert "user.logout" in audit
