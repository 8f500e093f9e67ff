"""The stageline web console, in a real browser (chromium, driven by Playwright), against
`stageline dev --demo` as a person runs it: they read the console's address and a demo user's
password from what it prints, log in, select environments, read what runs and is configured
where, and act; each page and button is used as a person uses it. Screenshots of the key pages
go to docs/ with `make screenshots` (for the README).

The demo: dev -> staging -> production (one approval, from alice), web@1.0.0 taken to
production, where it waits; alice (reviews production), demo (admin), victor (views). Added
here: dana (deploys everywhere), web@1.1.0 whose step prints a hostile string, and variables
holding one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.browser.conftest import UI_TIMEOUT_MS, VIEWPORT_HEIGHT, VIEWPORT_WIDTH
from tests.browser.dev_stack import Stack, dev_stack
from tests.browser.ui import screenshot
from tests.http_recorder import Recorder, recorder

pytestmark = pytest.mark.browser

PASSWORD = "console test password"
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(2)>'
FINISH_MS = 90_000  # a promotion: gates, a sandboxed step, its bookkeeping
DEMO_PRODUCTION = "promote-web-1.0.0-production"


def _pipeline(root: Path) -> Path:
    script = f"import os; print('deploying', os.environ['STAGELINE_VERSION']); print({HOSTILE!r})"
    path = root / "console-pipeline.yaml"
    path.write_text(
        f"steps:\n  - name: deploy\n    run: {json.dumps([sys.executable, '-c', script])}\n"
        "exposes:\n  endpoints: [{name: api, path: /api/v2}]\n"
        "  augmentations: [{name: search-tool, path: /tools/search}]\n"
    )
    return path


def printed_password(stack: Stack, name: str) -> str:
    """A demo user's password, as `stageline dev` printed it under its Console: line."""
    found = re.search(rf"^\s+{name}\s+/\s+(\S+)\s", stack.log.read_text(), re.MULTILINE)
    assert found, stack.log_tail(40)
    return found.group(1)


@pytest.fixture(scope="module")
def started() -> float:
    """When `stageline dev --demo` was started (the stack fixture comes after)."""
    return time.monotonic()


@pytest.fixture(scope="module")
def chat() -> Iterator[Recorder]:
    """A Slack-compatible webhook receiver: production's notification target."""
    with recorder() as receiving:
        yield receiving


@pytest.fixture(scope="module")
def stack(
    started: float, chat: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console-stack")
    with dev_stack(root, demo=True) as running:
        cli = running.cli
        cli.ok("notify", "add", "production", "team-chat", input=f"{chat.url}/hook\n")
        cli.ok("var", "set", "BANNER", HOSTILE, "--env", "production")
        cli.ok("var", "set", "BANNER", "hello", "--env", "staging")
        cli.ok("secret", "set", "API_KEY", "--env", "production", input="prod-key-value\n")
        cli.ok("user", "add", "dana", "--role", "*:deployer", input=PASSWORD + "\n")
        cli.ok("release", "create", "web", "1.1.0", "--pipeline", str(_pipeline(root)))
        yield running


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context on the console (no session, no remembered environment)."""
    context = browser.new_context(
        base_url=stack.server,
        viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        if dialog.type == "confirm" and dialog.message.startswith(("Approve", "Reject")):
            dialog.accept()  # the decision's confirmation
        else:
            dialog.dismiss()

    opened = context.new_page()
    opened.on("dialog", on_dialog)
    try:
        yield opened
    finally:
        context.close()
    # No string from the workspace may ever run as script: a dialog other than a decision's
    # confirmation means one did.
    assert all(d.startswith(("Approve", "Reject")) for d in dialogs), dialogs


def log_in(page: Page, name: str, path: str = "/", password: str = PASSWORD) -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(name)


def select_environment(page: Page, environment: str) -> None:
    """The header's selector, as a person uses it: choosing applies it (console.js)."""
    page.get_by_label("Environment").select_option(environment)
    expect(page).to_have_url(re.compile(rf"env={environment}"))


def test_from_make_dev_to_approving_the_demo_in_the_console(
    page: Page, stack: Stack, started: float, chat: Recorder
) -> None:
    """What the README's quick start promises: from `stageline dev --demo` to alice's
    approval of the demo's production promotion in the console, well within two minutes."""
    stack.await_phase("web", "production", DEMO_PRODUCTION, "awaiting_approval")
    console = re.search(r"^Console:\s+(http://\S+)", stack.log.read_text(), re.MULTILINE)
    assert console and console.group(1).rstrip("/") == stack.server
    log_in(page, "alice", password=printed_password(stack, "alice"))
    select_environment(page, "production")
    pending = page.get_by_test_id("pending")
    expect(pending).to_contain_text("web 1.0.0 → production")
    expect(pending).to_contain_text("0 of 1 approvals")
    screenshot(page, "console-overview.png")
    pending.get_by_role("link").click()
    expect(page.get_by_test_id("phase")).to_have_text("awaiting approval")
    expect(page.get_by_test_id("approvals")).to_contain_text("May still approve: alice")
    expect(page.get_by_role("link", name="open in the Temporal UI")).to_have_attribute(
        "href", f"{stack.ui}/namespaces/default/workflows/{DEMO_PRODUCTION}"
    )
    page.get_by_label("Comment").fill(HOSTILE)
    screenshot(page, "console-approve.png")
    page.get_by_role("button", name="Approve").click()
    approved_after = time.monotonic() - started
    expect(page.get_by_role("status")).to_have_text("Your approve was sent.")
    # The page follows the run by itself (htmx) until it deploys.
    expect(page.get_by_test_id("phase")).to_have_text("deployed", timeout=FINISH_MS)
    screenshot(page, "console-deployed.png")
    assert approved_after < 120, f"approving took {approved_after:.0f} s from the start"
    history = json.loads(stack.cli.ok("history", "web", "--env", "production", "--json").out)
    newest = history["deployments"][-1]
    assert (newest["version"], newest["status"]) == ("1.0.0", "deployed")
    decided = [e for e in history["events"] if e["action"] == "promotion.approve"]
    assert decided and decided[-1]["actor"] == "alice"
    assert decided[-1]["detail"].get("comment") == HOSTILE
    # The team's chat hears of it, with a link that opens this run in the console.
    link = f"{stack.server}/runs/{DEMO_PRODUCTION}"
    deadline = time.monotonic() + 30
    while not any(
        link in json.dumps(c.body) and "deployed" in json.dumps(c.body) for c in chat.calls
    ):
        assert time.monotonic() < deadline, [c.body for c in chat.calls]
        time.sleep(0.5)
    page.goto(link)
    expect(page.get_by_test_id("phase")).to_have_text("deployed")
    # alice's comment, in production's history: as text.
    page.get_by_role("navigation").get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("History of web in production")
    expect(page.get_by_text(HOSTILE).first).to_be_visible()


def test_viewer_sees_no_action_and_a_forged_post_is_refused(page: Page, stack: Stack) -> None:
    log_in(page, "victor", password=printed_password(stack, "victor"))
    page.goto("/environments/staging")
    expect(page.get_by_test_id("deployed-web")).to_contain_text("1.0.0")
    expect(page.get_by_role("link", name="Roll back")).to_have_count(0)
    page.goto("/releases?env=")  # every environment (staging is remembered from above)
    expect(page.get_by_test_id("release-web-1.1.0")).to_contain_text("nowhere")
    expect(page.get_by_role("link", name=re.compile("^Promote"))).to_have_count(0)
    csrf = page.locator('form[action="/logout"] input[name="csrf_token"]').get_attribute("value")
    assert csrf
    # The same POST the buttons send, with victor's own session and CSRF value: refused.
    for path, form in (
        ("/rollback", {"app": "web", "environment": "staging"}),
        ("/promote", {"app": "web", "version": "1.1.0", "to": "dev"}),
    ):
        answer = page.request.post(path, form={**form, "csrf_token": csrf})
        assert answer.status == 403, (path, answer.status)
        assert "victor may not" in answer.text() or "needs the deployer role" in answer.text()
    staging = json.loads(stack.cli.ok("status", "--env", "staging", "--json").out)
    assert [c["version"] for c in staging["cells"] if c["app"] == "web"] == ["1.0.0"]


def test_environment_selector_changes_every_page(page: Page, stack: Stack) -> None:
    log_in(page, "victor", password=printed_password(stack, "victor"))
    select_environment(page, "staging")
    expect(page.get_by_role("heading", level=1)).to_have_text("staging")
    expect(page.get_by_role("columnheader", name="dev")).to_have_count(0)
    for link, heading in (
        ("Environment", "staging"),
        ("Releases", "Releases for staging"),
        ("History", "History of web in staging"),
        ("Audit", "Audit of staging"),
    ):
        page.get_by_role("navigation").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.get_by_label("Environment")).to_have_value("staging")
    page.get_by_role("navigation").get_by_role("link", name="Diff").click()
    expect(page.get_by_label("To")).to_have_value("staging")
    expect(page.get_by_label("From")).to_have_value("dev")
    # Remembered for this person: the next visit without ?env opens on staging.
    page.goto("/")
    expect(page.get_by_label("Environment")).to_have_value("staging")
    select_environment(page, "production")
    page.goto("/environments/production")
    expect(page.get_by_test_id("secret-API_KEY")).to_contain_text("v1")
    expect(page.locator("body")).not_to_contain_text("prod-key-value")
    # Hostile text is shown as text, not markup: and no dialog opened (see the fixture).
    expect(page.get_by_text(HOSTILE, exact=True)).to_be_visible()
    expect(page.locator("img[src=x]")).to_have_count(0)
    screenshot(page, "console-environment.png")


def test_deployer_promotes_after_the_diff_then_rolls_back(page: Page, stack: Stack) -> None:
    log_in(page, "dana")
    page.goto("/releases?env=dev")
    row = page.get_by_test_id("release-web-1.1.0")
    expect(row).to_contain_text("nowhere")
    row.get_by_role("link", name="Promote to dev").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Promote web 1.1.0 to dev")
    expect(page.get_by_text("dev is the first stage of web.")).to_be_visible()
    page.get_by_role("button", name="Promote 1.1.0 to dev").click()
    expect(page.get_by_test_id("phase")).to_have_text("deployed", timeout=FINISH_MS)
    # The step's output, as text: the hostile line did not become markup.
    expect(page.get_by_test_id("step-deploy")).to_contain_text(HOSTILE)
    # What 1.1.0 exposes, where it now runs.
    page.goto("/environments/dev")
    expect(page.get_by_test_id("deployed-web")).to_contain_text("path /api/v2")
    expect(page.get_by_test_id("deployed-web")).to_contain_text("name search-tool")
    # Staging next: the diff against dev comes first.
    page.goto("/releases?env=staging")
    page.get_by_test_id("release-web-1.1.0").get_by_role("link", name="Promote to staging").click()
    diff = page.get_by_test_id("diff")
    expect(diff).to_contain_text("1.1.0")
    expect(diff).to_contain_text("BANNER")
    screenshot(page, "console-promote-diff.png")
    page.get_by_role("link", name="Cancel").click()
    # Roll dev back: where to is shown first.
    page.goto("/environments/dev")
    page.get_by_test_id("deployed-web").get_by_role("link", name="Roll back").click()
    expect(page.get_by_test_id("rollback-plan")).to_contain_text("from 1.1.0 back to 1.0.0")
    page.get_by_label("Reason").fill("bad build")
    page.get_by_role("button", name="Roll back to 1.0.0").click()
    expect(page.get_by_test_id("phase")).to_have_text("rolled back", timeout=FINISH_MS)
    dev = json.loads(stack.cli.ok("status", "--env", "dev", "--json").out)
    assert [c["version"] for c in dev["cells"] if c["app"] == "web"] == ["1.0.0"]
