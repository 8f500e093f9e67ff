"""The Temporal boundary has one home, workflows.contract: its names are the ones the
external contract documents (the Temporal UI and the `temporal` CLI type them), the worker
registers exactly them, and no Temporal name is written as a string anywhere else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from activities.promotion import PromotionActivities
from worker.main import WORKFLOWS
from workflows import contract
from workflows.contract import Query, Signal, Update

ROOT = Path(__file__).resolve().parents[2]
# The homes of the names: the contract, and the search attributes it re-exports.
HOMES = {ROOT / "workflows" / "contract.py", ROOT / "workflows" / "search_attributes.py"}
# Where Temporal is spoken to; tests may still send raw names on purpose (as the UI does).
SCANNED = ("cli", "activities", "workflows", "worker", "bench")

WORKFLOW_NAMES = {w.name for w in contract.WORKFLOWS}
ACTIVITY_NAMES = {a.name for a in contract.ACTIVITIES}
SEARCH_ATTRIBUTE_NAMES = {key.name for key in contract.SEARCH_ATTRIBUTES}
HANDLER_NAMES = {
    v
    for group in (Signal, Query, Update)
    for k, v in vars(group).items()
    if not k.startswith("_") and isinstance(v, str)
}
# Calls whose first argument (or `name=`) is a Temporal name: the client and workflow APIs,
# the handler decorators, and the workflows' own helpers that pass one on.
NAMING_CALLS = {
    "signal",
    "query",
    "update",
    "defn",
    "execute_update",
    "start_update",
    "execute_update_with_start_workflow",
    "start_update_with_start_workflow",
    "signal_with_start",
    "start_workflow",
    "execute_workflow",
    "start_child_workflow",
    "execute_child_workflow",
    "start_activity",
    "execute_activity",
    "start_local_activity",
    "execute_local_activity",
    "store",
    "store_only",
    "store_or_none",
    "_decide",
    "_forward",
    "_verified_interruption",
}


def _called(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def temporal_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal in `source` that is a Temporal name: a workflow
    type, activity or search attribute name anywhere (they mean nothing else), a signal,
    query or update name
    where a Temporal call or handler takes a name (elsewhere "status" or "approve" are plain
    words: a JSON key, a CLI command)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in WORKFLOW_NAMES | ACTIVITY_NAMES | SEARCH_ATTRIBUTE_NAMES
        ):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Call) and _called(node) in NAMING_CALLS:
            named = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]
            found += [
                (arg.lineno, arg.value)
                for arg in named
                if isinstance(arg, ast.Constant) and arg.value in HANDLER_NAMES
            ]
    return sorted(set(found))


def test_no_temporal_name_is_written_outside_the_contract() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for top in SCANNED
        for path in sorted((ROOT / top).rglob("*.py"))
        if path not in HOMES
        for line, text in temporal_literals(path.read_text())
    ]
    assert offenders == [], "use workflows.contract instead:\n" + "\n".join(offenders)


def test_the_scan_finds_the_names_it_looks_for() -> None:
    source = """
await client.start_workflow("PromotionWorkflow", x, id=i)
await handle.signal("approve", {"reviewer": "alice"})
await handle.query("status")
await handle.execute_update("decide", payload)
await store("prepare_promotion", arg)
kind = "rollback" if info.workflow_type == "RollbackWorkflow" else "promotion"
@workflow.signal(name="queue_moved")
def f(): ...
emit_json({"status": "running"})          # a JSON key, not a name
command = click.command(name="approve")   # the CLI's command, not a signal
"""
    assert [text for _, text in temporal_literals(source)] == [
        "PromotionWorkflow",
        "approve",
        "status",
        "decide",
        "prepare_promotion",
        "RollbackWorkflow",
        "queue_moved",
    ]


def test_the_worker_registers_exactly_the_contract() -> None:
    assert {w.__temporal_workflow_definition.name for w in WORKFLOWS} == WORKFLOW_NAMES  # type: ignore[attr-defined]
    methods = PromotionActivities.all(object.__new__(PromotionActivities))
    registered = {m.__temporal_activity_definition.name for m in methods}  # type: ignore[attr-defined]
    assert registered == ACTIVITY_NAMES
    for workflow in WORKFLOWS:
        definition = workflow.__temporal_workflow_definition  # type: ignore[attr-defined]
        assert set(definition.queries) == {Query.STATUS}
        assert set(definition.signals) <= set(contract.SIGNAL_INPUTS)
        assert set(definition.updates) <= set(contract.UPDATES)


def test_names_never_change() -> None:
    """What histories, the UI and scripts hold: changing one needs a migration path."""
    assert [w.name for w in contract.WORKFLOWS] == [
        "PromotionWorkflow",
        "RollbackWorkflow",
        "ReleaseTrainWorkflow",
    ]
    assert sorted(contract.SIGNAL_INPUTS) == sorted(
        ["approve", "reject", "override", "supersede", "preempt", "queue_moved", "freeze_changed"]
    )
    assert (Query.STATUS, Update.DECIDE) == ("status", "decide")
    assert [a.name for a in contract.ACTIVITIES] == [
        "prepare_promotion",
        "plan_train",
        "record_decision",
        "verify_decision",
        "freeze_state",
        "record_promotion_outcome",
        "verify_interruption",
        "end_promotion",
        "enter_queue",
        "take_turn",
        "leave_queue",
        "begin_deployment",
        "finish_deployment",
        "check_rollback",
        "plan_rollback",
        "take_rollback_turn",
        "end_rollback",
        "run_step",
    ]


def _documents() -> list[Path]:
    return [p for p in (ROOT / "README.md", ROOT.parent / "shared" / "CONTRACT.md") if p.exists()]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.name)
def test_the_documented_names_are_the_contracts(document: Path) -> None:
    text = document.read_text()
    # Each workflow type in a table's first column, with its input documented beside it.
    documented = set(re.findall(r"^\| `(\w+Workflow)` \|", text, re.MULTILINE))
    assert documented == WORKFLOW_NAMES
    assert {
        "StagelineApp",
        "StagelineEnvironment",
        "StagelineVersion",
        "StagelineStatus",
    } == SEARCH_ATTRIBUTE_NAMES
    for name in SEARCH_ATTRIBUTE_NAMES:
        assert f"`{name}`" in text, name
    for name in (Signal.APPROVE, Signal.REJECT, Query.STATUS):
        assert f"`{name}`" in text, name
    if document.name == "README.md":  # it documents the override, the update, the internals
        for name in (
            Signal.OVERRIDE,
            Update.DECIDE,
            Signal.SUPERSEDE,
            Signal.PREEMPT,
            Signal.QUEUE_MOVED,
            Signal.FREEZE_CHANGED,
        ):
            assert f"`{name}`" in text, name
        assert "--type status" in text  # `temporal workflow query --type status`


def test_input_and_result_models_match_the_documented_examples() -> None:
    """The JSON a person types into the UI's Start Workflow form is each workflow's input."""
    contract.PROMOTION.input.model_validate(
        {"app": "web", "version": "1.4.0", "target": "staging", "requested_by": "ci@acme"}
    )
    contract.ROLLBACK.input.model_validate(
        {"app": "web", "environment": "production", "to_version": None, "requested_by": "oncall"}
    )
    contract.TRAIN.input.model_validate(
        {"app": "web", "version": "1.4.0", "through": "production", "requested_by": "ci"}
    )
    assert contract.kind_of("RollbackWorkflow") == "rollback"
    assert contract.kind_of("rollback-web-dev-1") is None  # never from an id
