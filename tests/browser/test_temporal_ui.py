"""The Temporal Web UI (2.54), in a real browser, against `stageline dev`: what a person sees.

Every payload stageline writes is encrypted, so each of these pages shows decoded JSON only
when stageline's codec server answers the UI the way the UI calls it (see ui.py for the
selectors). Each test saves a screenshot of its key page (`make screenshots` puts them in docs/
for the README).
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.browser.dev_stack import REQUESTER, REVIEWER, TASK_QUEUE, Stack
from tests.browser.ui import (
    WORKFLOWS,
    expect_codec_connected,
    fill_json,
    input_box,
    open_workflow,
    result_box,
    screenshot,
    status_badge,
)

pytestmark = pytest.mark.browser

# Long enough for a promotion to run its gates, a pipeline step and its bookkeeping.
FINISH_MS = 90_000


def named(handler: str) -> re.Pattern[str]:
    """A signal or query in the UI's lists: its name, then its description if it has one."""
    return re.compile(rf"^{re.escape(handler)}(\s|$)")


def test_promotion_page_shows_input_and_result_decoded(page: Page, stack: Stack) -> None:
    # The UI was started with stageline's codec server as its codec endpoint.
    with urllib.request.urlopen(f"{stack.ui}/api/v1/settings", timeout=10) as response:
        settings = json.load(response)
    assert settings["Codec"]["Endpoint"] == stack.codec

    open_workflow(page, "promote-web-1.0.0-staging")
    expect(status_badge(page)).to_have_text(re.compile("completed", re.IGNORECASE))
    expect(input_box(page)).to_contain_text('"requested_by": "tester"')
    expect(input_box(page)).to_contain_text('"target": "staging"')
    expect(result_box(page)).to_contain_text('"status": "deployed"')
    expect(result_box(page)).to_contain_text('"environment": "staging"')
    expect_codec_connected(page)
    screenshot(page, "ui-promotion.png")


def test_start_workflow_form_promotes_and_deploys(page: Page, stack: Stack) -> None:
    workflow_id = "promote-web-1.1.0-dev"
    page.goto(WORKFLOWS)
    page.get_by_role("link", name="Start Workflow", exact=True).click()
    expect(page.get_by_role("heading", name="Start Workflow", level=1)).to_be_visible()

    page.get_by_role("textbox", name="Workflow ID").fill(workflow_id)
    page.get_by_role("textbox", name="Task Queue").fill(TASK_QUEUE)
    page.get_by_role("textbox", name="Workflow Type").fill("PromotionWorkflow")
    fill_json(
        page.get_by_role("textbox", name="Data", exact=True),
        {"app": "web", "version": "1.1.0", "target": "dev", "requested_by": REVIEWER},
    )
    # The UI looks the task queue up: stageline's worker polls it.
    expect(page.get_by_text("Task Queue is Active")).to_be_visible()
    screenshot(page, "ui-start-workflow.png")
    page.get_by_test_id("start-workflow-button").click()

    # The input went through the codec server's /encode; the toast links to the new run.
    page.get_by_role("link", name="Workflow started successfully").click()
    expect(page.get_by_test_id("workflow-id-heading")).to_contain_text(workflow_id)
    expect(status_badge(page)).to_have_text(
        re.compile("completed", re.IGNORECASE), timeout=FINISH_MS
    )
    expect(input_box(page)).to_contain_text(f'"requested_by": "{REVIEWER}"')
    expect(result_box(page)).to_contain_text('"status": "deployed"')
    expect(result_box(page)).to_contain_text('"environment": "dev"')
    expect(result_box(page)).to_contain_text('"version": "1.1.0"')
    expect_codec_connected(page)


def test_approve_signal_from_the_ui_deploys_to_production(page: Page, stack: Stack) -> None:
    started = stack.promote("web", "1.0.0", "production")
    workflow_id = started["promotion_id"]
    assert workflow_id == "promote-web-1.0.0-production"
    if started["status"] != "awaiting_approval":
        stack.await_phase("web", "production", workflow_id, "awaiting_approval")

    open_workflow(page, workflow_id)
    expect(status_badge(page)).to_have_text(re.compile("running", re.IGNORECASE))
    expect(input_box(page)).to_contain_text(f'"requested_by": "{REQUESTER}"')

    page.get_by_role("button", name="More Actions").click()
    page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")
    # The signal names come from the workflow's own (encrypted, decoded) metadata.
    dialog.get_by_role("button", name="Select a signal").click()
    dialog.get_by_role("option", name=named("approve")).click()
    fill_json(dialog.get_by_role("textbox", name="Data", exact=True), {"reviewer": REVIEWER})
    screenshot(page, "ui-signal-approve.png")
    dialog.get_by_role("button", name="Submit").click()

    expect(page.locator("#workflow-signal-success-toast")).to_contain_text("Workflow signaled")
    expect(dialog).to_be_hidden()
    expect(status_badge(page)).to_have_text(
        re.compile("completed", re.IGNORECASE), timeout=FINISH_MS
    )
    expect(result_box(page)).to_contain_text('"status": "deployed"')
    expect(result_box(page)).to_contain_text('"environment": "production"')
    expect_codec_connected(page)


def test_status_query_from_the_queries_tab(page: Page, stack: Stack) -> None:
    workflow_id = "promote-api-1.0.0-production"  # waiting for alice since the workspace began
    open_workflow(page, workflow_id)
    page.get_by_role("tab", name="Queries").click()

    # The query types come from the workflow's decoded metadata.
    query_type = page.get_by_role("button").filter(
        has=page.get_by_role("textbox", name="Query Type")
    )
    query_type.click()
    page.get_by_role("option", name=named("status")).click()
    page.get_by_role("button", name="Run Query").click()

    answer = page.get_by_role("textbox", name="Query Result")
    expect(answer).to_contain_text('"phase": "awaiting_approval"')
    # (The editor renders only the lines in view: check the first ones.)
    expect(answer).to_contain_text(f'"promotion_id": "{workflow_id}"')
    expect_codec_connected(page)
    screenshot(page, "ui-query-status.png")


def test_list_filtered_by_environment_search_attribute(page: Page, stack: Stack) -> None:
    page.goto(WORKFLOWS)
    table = page.get_by_role("table", name="Workflows")
    expect(table).to_contain_text("promote-web-1.0.0-staging")  # unfiltered: every stage

    search = page.get_by_role("searchbox", name="Enter a query")
    if not search.is_visible():
        page.get_by_test_id("toggle-manual-query").click()
    search.fill('StagelineEnvironment="production"')
    page.get_by_role("search").get_by_role("button", name="Search", exact=True).click()

    expect(page).to_have_url(re.compile(r"query=StagelineEnvironment"))
    expect(table).to_contain_text("promote-api-1.0.0-production")
    for other in ("-dev", "-staging"):
        expect(table).not_to_contain_text(other)
    listed = table.get_by_role("link", name=re.compile(r"^promote-"))
    ids = {text.strip() for text in listed.all_inner_texts()}
    assert ids, "the filtered list is empty"
    assert all(i.endswith("-production") for i in ids), ids
    screenshot(page, "ui-filter-production.png")


def test_invalid_input_failure_is_shown_decoded(page: Page, stack: Stack) -> None:
    workflow_id = "invalid-input-web"
    started = stack.temporal(
        "workflow",
        "start",
        "--type",
        "PromotionWorkflow",
        "--task-queue",
        TASK_QUEUE,
        "--workflow-id",
        workflow_id,
        "--input",
        '{"app": "web"}',
    )
    assert started.returncode == 0, started.stderr

    open_workflow(page, workflow_id)
    expect(status_badge(page)).to_have_text(re.compile("failed", re.IGNORECASE))
    expect(input_box(page)).to_contain_text('"app": "web"')
    # stageline moves failure messages into an encrypted payload (Temporal keeps
    # "Encoded failure" in their place); the UI shows the codec's decoding of it.
    # The message names the missing fields.
    expect(result_box(page)).to_contain_text(
        re.compile(r'"message":\s*"invalid input:[^"]*\bversion\b')
    )
    expect_codec_connected(page)
    screenshot(page, "ui-invalid-input.png")


def test_summary_details_and_a_rejection_read_as_a_failure(page: Page, stack: Stack) -> None:
    """Without running a query: the summary and live details of a promotion waiting for
    approval; then a reviewer rejects it from the Signal dialog, and it reads Failed, with
    the reason, on its page and in the list."""
    workflow_id = "promote-api-1.0.0-production"  # started by the CLI, waiting for alice
    open_workflow(page, workflow_id)
    page.get_by_role("tab", name="User Metadata").click()
    # The UI renders Summary, Details and Current Details (Markdown) in frames, in that order.
    summary, _, current = (page.frame_locator("iframe").nth(i) for i in range(3))
    expect(summary.get_by_text("api 1.0.0 -> production")).to_be_visible()
    expect(current.locator("body")).to_contain_text("Phase: awaiting approval")
    expect(current.locator("body")).to_contain_text("Approvals: 0 of 1")
    expect(current.locator("body")).to_contain_text(f"May still approve: {REVIEWER}")
    expect(current.get_by_role("listitem")).to_contain_text(["steps/deploy: pending"])
    expect_codec_connected(page)
    screenshot(page, "ui-current-details.png")

    page.get_by_role("button", name="More Actions").click()
    page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")
    dialog.get_by_role("button", name="Select a signal").click()
    # Internal signals say so in the list, so nobody sends them by mistake.
    expect(dialog.get_by_role("option", name=named("supersede"))).to_contain_text("Internal")
    dialog.get_by_role("option", name=named("reject")).click()
    fill_json(
        dialog.get_by_role("textbox", name="Data", exact=True),
        {"reviewer": REVIEWER, "comment": "not this week"},
    )
    dialog.get_by_role("button", name="Submit").click()
    expect(page.locator("#workflow-signal-success-toast")).to_contain_text("Workflow signaled")

    expect(status_badge(page)).to_have_text(re.compile("failed", re.IGNORECASE), timeout=FINISH_MS)
    open_workflow(page, workflow_id)  # back to its summary, where the failure shows
    expect(result_box(page)).to_contain_text(f"rejected by {REVIEWER}: not this week")

    page.goto(f'{WORKFLOWS}?query=WorkflowId%3D"{workflow_id}"')
    row = (
        page.get_by_role("table", name="Workflows").get_by_role("row").filter(has_text=workflow_id)
    )
    expect(row).to_contain_text(re.compile("failed", re.IGNORECASE))
    expect(row).not_to_contain_text(re.compile("completed", re.IGNORECASE))
