"""The progress trackers and renderers behind `promote --wait` and `train --wait`, fed the
looks a poll can get (too late, twice, out of step with the workflow): each gate, phase and
step is shown once, in order, and no phase is shown that nothing proves happened."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from cli.progress import (
    Event,
    PlainRenderer,
    PromotionTracker,
    RichRenderer,
    TrainTracker,
    interactive,
    plain_text,
    renderer,
)
from models.promotion import (
    GateResult,
    Phase,
    PromotionResult,
    PromotionStatus,
    RollbackResult,
    StepProgress,
    TrainStage,
    TrainStatus,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GATES = [
    GateResult(name="release-exists", passed=True, reason="release web@1.0.0 exists"),
    GateResult(name="preflight", passed=True, reason="dev provides vars.A"),
]
PIPELINE = [("steps", "migrate", "run"), ("steps", "notify", "tool"), ("verify", "health", "http")]


def steps(*states: str) -> list[StepProgress]:
    made = []
    for n, ((section, name, kind), state) in enumerate(zip(PIPELINE, states, strict=True)):
        began = T0 + timedelta(seconds=n)
        made.append(
            StepProgress(
                section=section,
                name=name,
                kind=kind,
                status=state,
                started_at=began if state not in ("pending", "skipped") else None,
                finished_at=began + timedelta(seconds=0.5)
                if state in ("succeeded", "failed")
                else None,
                exit_code={"succeeded": 0, "failed": 1}.get(state),
            )
        )
    return made


def status(phase: Phase, *states: str, **kw: object) -> PromotionStatus:
    return PromotionStatus(
        promotion_id="promote-web-1.0.0-dev",
        phase=phase,
        gates=GATES if phase != Phase.VALIDATING else [],
        steps=steps(*states) if states else [],
        **kw,
    )


def result(outcome: str, *states: str, **kw: object) -> PromotionResult:
    return PromotionResult(
        status=outcome,
        app="web",
        environment="dev",
        version="1.0.0",
        promotion_id="promote-web-1.0.0-dev",
        gates=GATES,
        steps=steps(*states),
        **kw,
    )


def lines(events: list[Event]) -> list[str]:
    return [plain_text(e) for e in events]


DEPLOYED = [
    "phase: gates",
    "  pass release-exists: release web@1.0.0 exists",
    "  pass preflight: dev provides vars.A",
    "phase: deploying",
    "  step steps/migrate: succeeded in 500ms",
    "  step steps/notify: succeeded in 500ms",
    "phase: verifying",
    "  step verify/health: succeeded in 500ms",
]


def test_a_promotion_the_polls_saw_only_in_gates_is_completed_from_its_result() -> None:
    tracker = PromotionTracker()
    shown = lines(tracker.update(status(Phase.GATES, "pending", "pending", "pending")))
    shown += lines(tracker.finish(result("deployed", "succeeded", "succeeded", "succeeded")))
    assert shown == DEPLOYED


def test_every_look_shows_only_what_is_new_and_nothing_twice() -> None:
    tracker = PromotionTracker()
    looks = [
        status(Phase.VALIDATING),
        status(Phase.GATES, "pending", "pending", "pending"),
        status(Phase.GATES, "pending", "pending", "pending"),
        status(Phase.DEPLOYING, "running", "pending", "pending"),
        status(Phase.DEPLOYING, "succeeded", "running", "pending"),
        status(Phase.DEPLOYING, "succeeded", "running", "pending"),
        status(Phase.VERIFYING, "succeeded", "succeeded", "running"),
    ]
    shown: list[str] = []
    for look in looks:
        shown += lines(tracker.update(look))
    shown += lines(tracker.finish(result("deployed", "succeeded", "succeeded", "succeeded")))
    assert shown == ["phase: validating", *DEPLOYED]
    assert tracker.finish(result("deployed", "succeeded", "succeeded", "succeeded")) == []


def test_the_second_step_shows_although_no_poll_saw_it_run() -> None:
    tracker = PromotionTracker()
    shown = lines(tracker.update(status(Phase.DEPLOYING, "running", "pending", "pending")))
    shown += lines(tracker.update(status(Phase.VERIFYING, "succeeded", "succeeded", "running")))
    assert shown == [*DEPLOYED[:-1]]
    assert tracker.live(T0 + timedelta(seconds=4)) == "verifying: health running 2.0s"


def test_no_phase_is_shown_that_nothing_proves() -> None:
    # Refused at the gates: no step ran, so neither deploying nor a step line.
    tracker = PromotionTracker()
    refused = result("rejected", "pending", "pending", "pending")
    refused.gates = [GATES[0], GateResult(name="preflight", passed=False, reason="missing X")]
    assert lines(tracker.finish(refused)) == [
        "phase: gates",
        "  pass release-exists: release web@1.0.0 exists",
        "  FAIL preflight: missing X",
    ]
    # Unprotected: never awaiting approval; not compensated: never compensating.
    shown = lines(PromotionTracker().finish(result("deployed", *["succeeded"] * 3)))
    assert not any("awaiting_approval" in s or "compensating" in s for s in shown)


def test_a_protected_promotion_that_deployed_waited_for_approval_first() -> None:
    tracker = PromotionTracker()
    shown = lines(tracker.update(status(Phase.GATES, "pending", "pending", "pending")))
    tracker.update(status(Phase.GATES, "pending", "pending", "pending", approvals_required=1))
    shown += lines(tracker.finish(result("deployed", "succeeded", "succeeded", "succeeded")))
    assert shown.index("phase: awaiting_approval") == shown.index("phase: deploying") - 1


def test_approvals_and_refusals_are_noted_as_they_change() -> None:
    tracker = PromotionTracker()
    waiting = {"approvals_required": 2, "may_approve": ["bob", "carol"]}
    shown = lines(tracker.update(status(Phase.AWAITING_APPROVAL, *["pending"] * 3, **waiting)))
    shown += lines(tracker.update(status(Phase.AWAITING_APPROVAL, *["pending"] * 3, **waiting)))
    shown += lines(
        tracker.update(
            status(
                Phase.AWAITING_APPROVAL,
                *["pending"] * 3,
                approvals_required=2,
                approvals=["bob"],
                may_approve=["carol"],
                refusals=["approve by alice refused: alice requested it"],
            )
        )
    )
    assert shown[-4:] == [
        "phase: awaiting_approval",
        "  approvals 0/2; may approve: bob, carol",
        "  approvals 1/2 (bob); may approve: carol",
        "  refused: approve by alice refused: alice requested it",
    ]


def test_a_phase_that_comes_back_is_shown_again() -> None:
    tracker = PromotionTracker()
    shown: list[str] = []
    for phase in (Phase.QUEUED, Phase.FROZEN, Phase.QUEUED, Phase.QUEUED):
        shown += [
            s
            for s in lines(tracker.update(status(phase, "pending", "pending", "pending")))
            if s.startswith("phase")
        ]
    assert shown == ["phase: gates", "phase: queued", "phase: frozen", "phase: queued"]


def test_a_compensated_promotion_shows_its_failure_skips_and_compensation_in_order() -> None:
    tracker = PromotionTracker()
    tracker.update(status(Phase.DEPLOYING, "running", "pending", "pending"))
    compensation = RollbackResult(
        status="rolled_back",
        app="web",
        environment="dev",
        steps=[
            StepProgress(
                section="activate",
                name="switch",
                kind="tool",
                status="succeeded",
                started_at=T0,
                finished_at=T0 + timedelta(seconds=1),
                exit_code=200,
            )
        ],
    )
    shown = lines(
        tracker.finish(result("failed", "failed", "skipped", "skipped", compensation=compensation))
    )
    assert shown == [
        "  step steps/migrate: failed (exit 1) in 500ms",
        "  step steps/notify: skipped",
        "  step verify/health: skipped",
        "phase: compensating",
        "  step activate/switch: succeeded in 1.0s",
    ]


def test_a_train_shows_each_stage_in_turn_and_those_never_reached() -> None:
    train = TrainTracker()
    plan = TrainStatus(
        train_id="train-web-1.0.0-production",
        app="web",
        version="1.0.0",
        through="production",
        stages=[
            TrainStage(environment=env, promotion_id=f"promote-web-1.0.0-{env}")
            for env in ("dev", "staging", "production")
        ],
    )
    shown = lines(train.plan(plan)) + lines(train.plan(plan))
    shown += lines(
        train.stage_update(
            "dev", "promote-web-1.0.0-dev", status(Phase.DEPLOYING, "running", "pending", "pending")
        )
    )
    dev = result("deployed", "succeeded", "succeeded", "succeeded")
    shown += lines(train.stage_end("dev", "promote-web-1.0.0-dev", "deployed", dev))
    staging = result("failed", "succeeded", "succeeded", "failed")
    staging.environment, staging.promotion_id = "staging", "promote-web-1.0.0-staging"
    staging.reason = "verification 'health' failed:\nconnection refused"
    shown += lines(train.finish([dev, staging]))
    assert shown[0] == "train web@1.0.0 through production: dev, staging, production"
    assert shown.count(shown[0]) == 1
    assert shown[1] == "stage dev: promote-web-1.0.0-dev"
    assert [s for s in shown if s.startswith("stage")] == [
        "stage dev: promote-web-1.0.0-dev",
        "stage dev: deployed",
        "stage staging: promote-web-1.0.0-staging",
        "stage staging: failed: verification 'health' failed: connection refused",
        "stage production: not run",
    ]
    dev_block = shown[1 : shown.index("stage dev: deployed")]
    assert [s.strip() for s in dev_block if "step " in s] == [
        "step steps/migrate: succeeded in 500ms",
        "step steps/notify: succeeded in 500ms",
        "step verify/health: succeeded in 500ms",
    ]
    assert all(s.startswith("  ") for s in dev_block[1:])


def test_plain_output_has_no_escape_codes_and_a_pipe_gets_plain_output() -> None:
    out = io.StringIO()
    assert not interactive(out)
    shown = renderer(lambda now: "deploying", out)
    assert isinstance(shown, PlainRenderer)
    tracker = PromotionTracker()
    shown.show(tracker.finish(result("deployed", "succeeded", "succeeded", "succeeded")))
    shown.close()
    assert out.getvalue().splitlines() == DEPLOYED
    assert "\x1b" not in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_rich_unless_it_is_dumb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    shown = renderer(lambda now: "deploying: migrate running 1s", out)
    assert isinstance(shown, RichRenderer)
    shown.show(PromotionTracker().finish(result("deployed", "succeeded", "succeeded", "failed")))
    shown.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "\x1b[" in out.getvalue()
    for seen in ("gates", "✓ release-exists", "✓ migrate", "✓ notify", "✗ health", "(HTTP 1)"):
        assert seen in text, text
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(renderer(lambda now: None, Terminal()), PlainRenderer)


def test_no_color_keeps_the_terminal_rendering_without_colour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    shown = renderer(lambda now: None, out)
    shown.show(PromotionTracker().finish(result("deployed", "succeeded", "succeeded", "succeeded")))
    shown.close()
    assert "✓ migrate" in out.getvalue()
    assert not re.search(r"\x1b\[(3[0-7]|9[0-7]|38;)", out.getvalue())  # no colour codes
