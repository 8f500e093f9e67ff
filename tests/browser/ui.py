"""The Temporal Web UI 2.54's pages, as the browser suite reads them.

Selectors are the UI's own roles, labels and test ids: `workflow-id-heading` and
`execution-status` (a workflow's page), the `Input` / `Result` code editors (textboxes of
those names), `data-encoder-status-success|error` (the codec icon in the top bar),
`start-workflow-button`, `toggle-manual-query`. Nothing waits on a sleep: every check is one
of Playwright's auto-waiting `expect`s.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.browser.dev_stack import NAMESPACE

WORKFLOWS = f"/namespaces/{NAMESPACE}/workflows"
# Screenshots of the key pages. `make screenshots` writes them into docs/ for the README
# (STAGELINE_SCREENSHOTS=docs); an ordinary run keeps them out of the work tree.
SCREENSHOTS = Path(
    os.environ.get("STAGELINE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "stageline-ui"
)


def open_workflow(page: Page, workflow_id: str) -> None:
    """A workflow's own page (the UI goes on to its latest run)."""
    page.goto(f"{WORKFLOWS}/{workflow_id}")
    expect(page.get_by_test_id("workflow-id-heading")).to_contain_text(workflow_id)


def status_badge(page: Page) -> Locator:
    """Running, Completed, Failed... next to the workflow id."""
    return page.get_by_test_id("execution-status")


def input_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Input", exact=True)


def result_box(page: Page) -> Locator:
    """The result, or for a failed workflow its failure."""
    return page.get_by_role("textbox", name="Result", exact=True)


def expect_codec_connected(page: Page) -> None:
    """No "Codec Server could not connect" banner, and the codec icon in the top bar says the
    codec server converted the content."""
    expect(page.get_by_text("Codec Server could not connect")).to_have_count(0)
    expect(page.get_by_test_id("data-encoder-status-error")).to_have_count(0)
    expect(page.get_by_test_id("data-encoder-status-success")).to_be_visible()


def fill_json(editor: Locator, document: dict[str, object]) -> None:
    """Type a JSON input into one of the UI's code editors and leave it. The UI reformats it
    on blur, which moves the buttons below: click nothing before that has happened."""
    editor.fill(json.dumps(document))
    editor.blur()
    key, value = next(iter(document.items()))
    expect(editor).to_contain_text(f'"{key}": {json.dumps(value)}')


def screenshot(page: Page, name: str) -> None:
    """What the person sees (the viewport), for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / name, animations="disabled")
