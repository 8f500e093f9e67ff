"""What `promote --wait`, `train --wait` and `rollback --wait` show while they wait.

Trackers turn successive looks at a workflow (its `status` query, polled, then its result)
into events: each gate, each phase, each step's outcome and each stage, shown exactly once and
in the order they happened, however fast the workflow was. A look that missed a phase is made
good from what the later data proves (gates ran: the gates phase; a step ran: deploying; a
verification ran: verifying; a compensation: compensating); a phase nothing proves is never
shown.

Renderers show the events on stderr: plain lines (CI logs, pipes, `TERM=dumb`: no colour, no
escape codes, no spinner), or on a terminal with rich: styled lines and a live status line
for what is running now, which disappears when the command ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from models.promotion import (
    GateResult,
    Phase,
    PromotionResult,
    PromotionStatus,
    RollbackResult,
    StepProgress,
    TrainStatus,
)
from models.text import clip, elapsed

if TYPE_CHECKING:
    from rich.text import Text  # imported when drawn: plain output never loads rich

FINAL_STEP = ("succeeded", "failed", "skipped")
RAN = ("running", "succeeded", "failed")
DEPLOY_SECTIONS = ("steps", "activate")

# The order phases happen in. Terminal phases are the outcome, which the command says itself.
ORDER = (
    Phase.VALIDATING,
    Phase.GATES,
    Phase.AWAITING_APPROVAL,
    Phase.WAITING,
    Phase.FROZEN,
    Phase.QUEUED,
    Phase.DEPLOYING,
    Phase.VERIFYING,
    Phase.COMPENSATING,
)

OUTCOME_WIDTH = 160


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    depth: int


@dataclass(frozen=True)
class PlanEvent(Event):
    title: str
    stages: tuple[str, ...]


@dataclass(frozen=True)
class StageEvent(Event):
    environment: str
    promotion_id: str


@dataclass(frozen=True)
class OutcomeEvent(Event):
    environment: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class PhaseEvent(Event):
    phase: str


@dataclass(frozen=True)
class GateEvent(Event):
    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class StepEvent(Event):
    section: str
    name: str
    status: str
    kind: str = "run"
    exit_code: int | None = None
    seconds: float | None = None

    @property
    def code(self) -> str | None:
        """How a failed step ended: its exit code, or a tool's or check's HTTP status."""
        if self.status != "failed" or self.exit_code is None:
            return None
        return f"exit {self.exit_code}" if self.kind == "run" else f"HTTP {self.exit_code}"


@dataclass(frozen=True)
class NoteEvent(Event):
    text: str


def plain_text(event: Event) -> str:
    """The event as one plain line, indented by its depth."""
    match event:
        case PlanEvent(title=title, stages=stages):
            text = f"train {title}: {', '.join(stages) or 'no stages'}"
        case StageEvent(environment=env, promotion_id=pid):
            text = f"stage {env}: {pid}"
        case OutcomeEvent(environment=env, status=status, reason=reason):
            text = f"stage {env}: {status}" + (f": {reason}" if reason else "")
        case PhaseEvent(phase=phase):
            text = f"phase: {phase}"
        case GateEvent(name=name, passed=passed, reason=reason):
            text = f"{'pass' if passed else 'FAIL'} {name}: {reason}"
        case StepEvent() as step:
            text = f"step {step.section}/{step.name}: {step.status}"
            if step.code:
                text += f" ({step.code})"
            if step.seconds is not None:
                text += f" in {elapsed(step.seconds)}"
        case NoteEvent(text=note):
            text = note
        case _:
            text = str(event)
    return "  " * event.depth + text


# -- trackers -----------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _seconds(step: StepProgress) -> float | None:
    if step.started_at is None or step.finished_at is None:
        return None
    return (_aware(step.finished_at) - _aware(step.started_at)).total_seconds()


def _notes(status: PromotionStatus) -> list[str]:
    """What the current phase waits for, in words."""
    notes = []
    if status.phase == Phase.AWAITING_APPROVAL and status.approvals_required:
        note = f"approvals {len(status.approvals)}/{status.approvals_required}"
        if status.approvals:
            note += f" ({', '.join(status.approvals)})"
        if status.signed_approvals_required:
            note += ", signed only"
        if status.may_approve:
            note += f"; may approve: {', '.join(status.may_approve)}"
        notes.append(note)
    if status.phase == Phase.WAITING and status.not_before is not None:
        notes.append(f"wait timer: not before {status.not_before:%Y-%m-%d %H:%M:%S} UTC")
    if status.phase == Phase.FROZEN:
        until = f" until {status.frozen_until:%Y-%m-%d %H:%M} UTC" if status.frozen_until else ""
        notes.append(f"{status.reason or 'frozen'}{until}")
    if status.phase == Phase.QUEUED and status.waiting_for:
        notes.append(f"waiting for {status.waiting_for} to finish")
    return notes


class PromotionTracker:
    """One promotion's (or rollback's) events, from its status query and then its result."""

    def __init__(self, depth: int = 0) -> None:
        self.depth = depth
        self._shown: set[Hashable] = set()
        self._phases: set[Phase] = set()
        self._last_phase: Phase | None = None
        self._approvals_required = 0
        self._latest: PromotionStatus | None = None
        self.finished = False

    def update(self, status: PromotionStatus) -> list[Event]:
        """Events from a look at the `status` query."""
        if self.finished:
            return []
        self._latest = status
        self._approvals_required = max(self._approvals_required, status.approvals_required)
        events = self._look(
            status.phase,
            status.gates,
            status.steps,
            compensated=False,
            waited=status.not_before is not None,
            notes=_notes(status),
        )
        if status.override:
            events += self._once(("override", status.override), f"override: {status.override}")
        for refusal in status.refusals:
            events += self._once(("refusal", refusal), f"refused: {refusal}")
        return events

    def finish(self, final: PromotionResult | RollbackResult | PromotionStatus) -> list[Event]:
        """The last events, from the result (or the last status): every gate, phase and step
        the polls missed."""
        if self.finished:
            return []
        if isinstance(final, PromotionStatus):
            events = self.update(final)
        else:
            gates = final.gates if isinstance(final, PromotionResult) else []
            compensation = final.compensation if isinstance(final, PromotionResult) else None
            events = self._look(
                None,
                gates,
                final.steps,
                compensated=compensation is not None,
                waited=False,
                notes=[],
                compensation=compensation.steps if compensation is not None else [],
            )
        self.finished = True
        return events

    def live(self, now: datetime) -> str | None:
        """What runs now, for a terminal's status line; None when over."""
        status = self._latest
        if self.finished:
            return None
        if status is None:
            return "starting"
        if status.phase.is_terminal:
            return None
        running = next((s for s in status.steps if s.status == "running"), None)
        if running is not None:
            since = (now - _aware(running.started_at)).total_seconds() if running.started_at else 0
            return f"{status.phase.value}: {running.name} running {elapsed(since)}"
        notes = _notes(status)
        return status.phase.value + (f": {notes[0]}" if notes else "")

    # -- internals

    def _once(self, key: Hashable, text: str) -> list[Event]:
        if key in self._shown:
            return []
        self._shown.add(key)
        return [NoteEvent(depth=self.depth + 1, text=text)]

    def _proven(
        self, gates: Sequence[GateResult], steps: Sequence[StepProgress], compensated: bool
    ) -> set[Phase]:
        """The phases this data shows must have happened."""
        ran = [s for s in steps if s.status in RAN]
        proven = set()
        if gates:
            proven.add(Phase.GATES)
        if ran:
            proven.add(Phase.DEPLOYING)
        if any(s.section == "verify" for s in ran):
            proven.add(Phase.VERIFYING)
        if compensated:
            proven.add(Phase.COMPENSATING)
        if Phase.DEPLOYING in proven and self._approvals_required:
            proven.add(Phase.AWAITING_APPROVAL)  # protected: nothing deploys unapproved
        return proven

    def _look(
        self,
        current: Phase | None,
        gates: Sequence[GateResult],
        steps: Sequence[StepProgress],
        *,
        compensated: bool,
        waited: bool,
        notes: list[str],
        compensation: Sequence[StepProgress] = (),
    ) -> list[Event]:
        proven = self._proven(gates, steps, compensated)
        if waited:
            proven.add(Phase.WAITING)
        events: list[Event] = []
        for phase in ORDER:
            if self._enters(phase, current, proven):
                events.append(self._phase(phase))
            events += self._within(phase, gates, steps, compensation)
            if phase == current:
                for note in notes:
                    events += self._once(("note", note), note)
        return events

    def _enters(self, phase: Phase, current: Phase | None, proven: set[Phase]) -> bool:
        """Whether `phase` is shown now: the status is in it and the last look's was not, or
        the data proves it happened and it was not shown yet (see `_after_last`)."""
        observed = phase == current and self._last_phase != current
        inferred = phase in proven and phase not in self._phases and self._after_last(phase)
        return observed or inferred

    def _within(
        self,
        phase: Phase,
        gates: Sequence[GateResult],
        steps: Sequence[StepProgress],
        compensation: Sequence[StepProgress],
    ) -> list[Event]:
        """What happened inside `phase` that was not shown yet."""
        if phase == Phase.GATES:
            return self._gates(gates)
        if phase in (Phase.DEPLOYING, Phase.VERIFYING):
            return self._steps(steps, phase)
        if phase == Phase.COMPENSATING:
            # The compensating rollback's own steps (the previous release's activate:).
            return self._steps(compensation, phase, "compensation")
        return []

    def _gates(self, gates: Sequence[GateResult]) -> list[Event]:
        events: list[Event] = []
        for gate in gates:
            if ("gate", gate.name) not in self._shown:
                self._shown.add(("gate", gate.name))
                events.append(
                    GateEvent(
                        depth=self.depth + 1, name=gate.name, passed=gate.passed, reason=gate.reason
                    )
                )
        return events

    def _after_last(self, phase: Phase) -> bool:
        """An inferred phase is shown only where it belongs: after the last one shown."""
        return self._last_phase is None or ORDER.index(phase) > ORDER.index(self._last_phase)

    def _phase(self, phase: Phase) -> PhaseEvent:
        self._phases.add(phase)
        self._last_phase = phase
        return PhaseEvent(depth=self.depth, phase=phase.value)

    def _steps(self, steps: Sequence[StepProgress], phase: Phase, run: str = "own") -> list[Event]:
        sections = ("verify",) if phase == Phase.VERIFYING else DEPLOY_SECTIONS
        events: list[Event] = []
        for position, step in enumerate(steps):
            if step.section not in sections:
                continue
            if step.status not in FINAL_STEP:
                break  # steps run in order: the later ones are not over either
            key = (run, step.section, position)
            if key in self._shown:
                continue
            self._shown.add(key)
            events.append(
                StepEvent(
                    depth=self.depth + 1,
                    section=step.section,
                    name=step.name,
                    status=step.status,
                    kind=step.kind,
                    exit_code=step.exit_code,
                    seconds=_seconds(step),
                )
            )
        return events


class TrainTracker:
    """A release train's events: its plan, then each stage as a promotion, then its outcome."""

    def __init__(self) -> None:
        self._shown: set[Hashable] = set()
        self._stages: dict[str, PromotionTracker] = {}
        self._planned: tuple[str, ...] = ()
        self._active: str | None = None

    def plan(self, status: TrainStatus) -> list[Event]:
        events: list[Event] = []
        if status.stages and "plan" not in self._shown:
            self._shown.add("plan")
            self._planned = tuple(s.environment for s in status.stages)
            events.append(
                PlanEvent(
                    depth=0,
                    title=f"{status.app}@{status.version} through {status.through}",
                    stages=self._planned,
                )
            )
        for refusal in status.refusals:
            if ("refusal", refusal) not in self._shown:
                self._shown.add(("refusal", refusal))
                events.append(NoteEvent(depth=1, text=f"refused: {refusal}"))
        return events

    def ended(self, environment: str) -> bool:
        return ("outcome", environment) in self._shown

    def stage(self, environment: str, promotion_id: str) -> list[Event]:
        """A stage began (once)."""
        if environment in self._stages:
            return []
        self._stages[environment] = PromotionTracker(depth=1)
        self._active = environment
        return [StageEvent(depth=0, environment=environment, promotion_id=promotion_id)]

    def stage_update(
        self, environment: str, promotion_id: str, status: PromotionStatus | None
    ) -> list[Event]:
        events = self.stage(environment, promotion_id)
        if status is not None and not self.ended(environment):
            events += self._stages[environment].update(status)
        return events

    def stage_end(
        self,
        environment: str,
        promotion_id: str,
        outcome: str,
        final: PromotionResult | PromotionStatus | None,
        reason: str | None = None,
    ) -> list[Event]:
        """A stage is over: what its polls missed, then its outcome (once)."""
        if self.ended(environment):
            return []
        events = self.stage(environment, promotion_id)
        if final is not None:
            events += self._stages[environment].finish(final)
        self._shown.add(("outcome", environment))
        if self._active == environment:
            self._active = None
        shown = None if outcome == "deployed" or not reason else clip(reason, OUTCOME_WIDTH)[0]
        events.append(OutcomeEvent(depth=0, environment=environment, status=outcome, reason=shown))
        return events

    def finish(self, stages: Sequence[PromotionResult]) -> list[Event]:
        """From the train's result: every stage that ran, then those it never reached."""
        events: list[Event] = []
        for result in stages:
            events += self.stage_end(
                result.environment,
                result.promotion_id,
                "nothing to do" if result.noop else result.status,
                result,
                result.reason,
            )
        reached = {r.environment for r in stages}
        for environment in self._planned:
            if environment not in reached and not self.ended(environment):
                self._shown.add(("outcome", environment))
                events.append(OutcomeEvent(depth=0, environment=environment, status="not run"))
        return events

    def live(self, now: datetime) -> str | None:
        active = self._active  # read once: the status line is drawn from another thread
        tracker = self._stages.get(active) if active is not None else None
        if tracker is None:
            return None
        what = tracker.live(now)
        return f"stage {active}" + (f" · {what}" if what else "")


# -- renderers ----------------------------------------------------------------------------


class Renderer(Protocol):
    def show(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


class PlainRenderer:
    """One line per event: what CI logs and pipes get."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def show(self, events: Sequence[Event]) -> None:
        for event in events:
            self.stream.write(plain_text(event) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


_MARK = {
    "succeeded": ("✓", "green"),
    "deployed": ("✓", "green"),
    "nothing to do": ("✓", "green"),
    "failed": ("✗", "red"),
    "rejected": ("✗", "red"),
    "rolled_back": ("✗", "red"),
    "superseded": ("✗", "yellow"),
    "skipped": ("-", "dim"),
    "not run": ("-", "dim"),
}


class RichRenderer:
    """On a terminal: styled lines, and below them a live status line with a spinner for what
    runs now (transient: gone when the command ends). Colour follows rich's rules (NO_COLOR)."""

    def __init__(self, stream: IO[str], live_text: Callable[[datetime], str | None]) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self._live_text = live_text
        self._spinner = Spinner("dots", text="")
        self._live = Live(
            console=self.console,
            get_renderable=self._status_line,
            refresh_per_second=8,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def _status_line(self) -> Any:
        from rich.text import Text

        try:
            text = self._live_text(datetime.now(UTC))
        except Exception:  # drawn from rich's refresh thread: never let it die
            text = None
        if text is None:
            return Text("")
        self._spinner.update(text=Text(text, style="cyan"))
        return self._spinner

    def show(self, events: Sequence[Event]) -> None:
        self._live.refresh()  # the status line below the new lines says what runs now
        for event in events:
            self.console.print(self._styled(event))

    def close(self) -> None:
        self._live.stop()

    def _styled(self, event: Event) -> Any:
        from rich.text import Text

        line = Text("  " * event.depth)
        match event:
            case PlanEvent(title=title, stages=stages):
                line.append(f"train {title}", style="bold")
                line.append(": " + " → ".join(stages))
            case StageEvent(environment=env, promotion_id=pid):
                line.append(f"stage {env}", style="bold")
                line.append(f"  {pid}", style="dim")
            case OutcomeEvent(environment=env, status=status, reason=reason):
                mark, style = _MARK.get(status, ("•", "yellow"))
                line.append(f"{mark} stage {env}: {status}", style=f"bold {style}")
                if reason:
                    line.append(f"  {reason}", style="dim")
            case PhaseEvent(phase=phase):
                line.append("▸ ", style="cyan")
                line.append(phase.replace("_", " "), style="bold")
            case GateEvent(name=name, passed=passed, reason=reason):
                line.append("✓ " if passed else "✗ ", style="green" if passed else "bold red")
                line.append(name, style="" if passed else "red")
                line.append(f"  {reason}", style="dim")
            case StepEvent() as step:
                _append_step(line, step)
            case NoteEvent(text=note):
                line.append(f"· {note}", style="yellow")
            case _:
                line.append(str(event))
        return line


def _append_step(line: Text, step: StepEvent) -> None:
    """A step's styled line: its mark, its name, and how it ended unless it succeeded."""
    mark, style = _MARK.get(step.status, ("•", "yellow"))
    line.append(f"{mark} ", style=style)
    line.append(step.name, style="red" if step.status == "failed" else "")
    if step.status != "succeeded":
        line.append(f"  {step.status}", style=style)
    if step.code:
        line.append(f" ({step.code})", style="red")
    if step.seconds is not None:
        line.append(f"  {elapsed(step.seconds)}", style="dim")


def interactive(stream: IO[str]) -> bool:
    """A person at a terminal (not a pipe, a file, a CI log or a dumb terminal)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and os.environ.get("TERM", "") != "dumb"


def renderer(
    live_text: Callable[[datetime], str | None], stream: IO[str] | None = None
) -> Renderer:
    """Rich on a terminal, plain lines anywhere else; on stderr unless told otherwise."""
    out = stream if stream is not None else sys.stderr
    if interactive(out):
        return RichRenderer(out, live_text)
    return PlainRenderer(out)
