"""The browser suite: the real Temporal Web UI 2.54 and stageline's web console in chromium,
driven by Playwright, against a stack started the way `stageline dev` starts it (see
dev_stack.py).

One stack and one chromium for the module; each test gets a fresh browser context.
Playwright's sync API is used from plain `def` tests: pytest-asyncio runs its session loop only
inside async tests and fixtures, and none runs while this module's browser is open (between
calls the sync API marks its own loop as running in this thread, so the two must not overlap;
module scope closes the browser before the next module starts).

Chromium is Debian's (/usr/bin/chromium, `apt-get install chromium`; .ci/run installs it);
Playwright never downloads a browser here. Without it the suite fails, saying so; leave it out
on purpose with `pytest -m "not browser"` (`make test-fast`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.browser.dev_stack import Stack, build_workspace, dev_stack

CHROMIUM = os.environ.get("STAGELINE_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps calling a network that is not there.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 800
UI_TIMEOUT_MS = 30_000  # generous: CI machines are small and busy

expect.set_options(timeout=UI_TIMEOUT_MS)

_NOTES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives the real Temporal Web UI and the console in chromium against "
        "`stageline dev` "
        "(leave out with -m 'not browser')",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"chromium is not installed at {CHROMIUM}; the browser suite (tests/browser, "
            "marker 'browser') drives the Temporal UI with it. Install it with "
            "`apt-get install chromium` (.ci/run does), point STAGELINE_CHROMIUM at another "
            "chromium, or leave the suite out on purpose: `pytest -m 'not browser'` or "
            "`make test-fast`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("browser-stack")
    with dev_stack(root) as running:
        build_workspace(running, root)
        yield running


@pytest.fixture
def page(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh context (no stored UI settings) on the stack's UI, in UTC and English, so
    screenshots read the same everywhere. (`browser` comes first: no chromium, no stack.)"""
    context = browser.new_context(
        base_url=stack.ui,
        viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    notes: list[str] = []
    request.node.stash[_NOTES] = notes

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            notes.append(f"console {message.type}: {message.text[:300]}")

    opened = context.new_page()
    opened.on("console", on_console)
    opened.on("pageerror", lambda error: notes.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        context.close()


def _describe(page: Page, notes: list[str], stack: Stack | None, where: Path) -> str:
    """What the page showed when a test failed: enough to tell a codec problem from a
    workflow problem without running it again."""
    lines = [f"url: {page.url}"]
    with contextlib.suppress(Exception):
        icon = page.locator('[data-testid^="data-encoder-status-"]').first
        lines.append(f"codec icon (top bar): {icon.get_attribute('aria-label', timeout=1000)}")
    with contextlib.suppress(Exception):
        alerts = [t.strip() for t in page.get_by_role("alert").all_inner_texts() if t.strip()]
        lines.append(f"alerts: {alerts}")
    with contextlib.suppress(Exception):
        toasts = page.locator('[data-testid^="toast-live-region"]').all_inner_texts()
        lines.append(f"toasts: {[t.strip() for t in toasts if t.strip()]}")
    with contextlib.suppress(Exception):
        page.screenshot(path=where)
        lines.append(f"screenshot: {where}")
    lines += list(dict.fromkeys(notes))[-10:]  # the last distinct console messages
    if stack is not None:
        lines.append(f"codec server: {stack.codec}\nstageline dev log (tail):\n{stack.log_tail()}")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, while the page is still open: what it showed, in the report."""
    report = yield
    if report.when == "call" and report.failed and isinstance(item, pytest.Function):
        failed = item.funcargs.get("page")
        stack = item.funcargs.get("stack")
        if isinstance(failed, Page):
            cache = getattr(item.config, "cache", None)  # absent with -p no:cacheprovider
            folder = (
                cache.mkdir("browser-failures")
                if cache is not None
                else Path(tempfile.gettempdir())
            )
            report.sections.append(
                (
                    "What the Temporal UI showed",
                    _describe(
                        failed,
                        item.stash.get(_NOTES, []),
                        stack if isinstance(stack, Stack) else None,
                        Path(folder) / f"{item.name}.png",
                    ),
                )
            )
    return report
