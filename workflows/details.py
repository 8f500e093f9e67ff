"""What the Temporal UI shows of a running workflow without a query: one-line summaries
given at start, and "current details" (Markdown) that follow the phase, the approvals and
the steps. Pure functions of the status, so workflows call them freely on every change.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.promotion import Phase, PromotionStatus, StepProgress, TrainStatus

_STEP_MARK = {
    "pending": "○",
    "running": "▶",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "-",
}


def promotion_summary(app: str, version: str, target: str) -> str:
    return f"{app} {version} -> {target}"


def rollback_summary(app: str, environment: str, to_version: str | None) -> str:
    return f"roll back {app} in {environment} to {to_version or 'the previous release'}"


def train_summary(app: str, version: str, through: str) -> str:
    return f"train {app} {version} through {through}"


def _steps(steps: list[StepProgress]) -> list[str]:
    if not steps:
        return []
    lines = ["", "**Steps**", ""]
    for s in steps:
        line = f"- {_STEP_MARK.get(s.status, '?')} {s.section}/{s.name}: {s.status}"
        if s.status == "failed" and s.exit_code is not None:
            line += f" (exit {s.exit_code})"
        lines.append(line)
    return lines


def promotion_details(status: PromotionStatus, kind: str = "promotion") -> str:
    """Markdown for a promotion's (or a rollback's) current details."""
    lines = [_head(status, kind), "", f"**Phase:** {status.phase.value.replace('_', ' ')}"]
    if status.gates:
        lines.append(
            "**Gates:** " + " · ".join(f"{'✓' if g.passed else '✗'} {g.name}" for g in status.gates)
        )
    lines += _approvals(status)
    lines += _holds(status)
    if status.override:
        lines.append(f"**Override:** {status.override}")
    if status.refusals:
        lines.append(f"**Refused decisions:** {len(status.refusals)} (see the status query)")
    lines += _steps(status.steps)
    if status.reason:
        lines += ["", f"**Reason:** {status.reason}"]
    return "\n".join(lines)


def _head(status: PromotionStatus, kind: str) -> str:
    """What moves where, and who asked."""
    if kind == "rollback":
        head = f"**roll back {status.app} in {status.environment}**"
        if status.version:
            head += f" to {status.version}"
    else:
        head = f"**{status.app} {status.version} -> {status.environment}**"
    if status.requested_by:
        head += f", requested by {status.requested_by}"
    if status.on_behalf_of:
        head += f" for {status.on_behalf_of}"
    if status.requested_by and status.requester_verified:
        head += " (verified: signed in to the stageline server)"
    return head


def _approvals(status: PromotionStatus) -> list[str]:
    if not status.approvals_required:
        return []
    approvals = f"**Approvals:** {len(status.approvals)} of {status.approvals_required}"
    if status.approvals:
        approvals += f" ({', '.join(status.approvals)})"
    if status.signed_approvals_required:
        approvals += ", signed decisions only"
    lines = [approvals]
    if status.phase == Phase.AWAITING_APPROVAL:
        lines.append(
            "**May still approve:** " + (", ".join(status.may_approve) or "nobody eligible")
        )
    return lines


def _holds(status: PromotionStatus) -> list[str]:
    """What holds the promotion back: the queue, the wait timer, a freeze."""
    lines: list[str] = []
    if status.waiting_for:
        lines.append(f"**Queued behind:** {status.waiting_for}")
    if status.not_before is not None and status.phase == Phase.WAITING:
        lines.append(f"**Wait timer until:** {status.not_before.isoformat(timespec='seconds')}")
    if status.frozen_until is not None:
        lines.append(f"**Frozen until:** {status.frozen_until.isoformat(timespec='seconds')}")
    return lines


def train_details(status: TrainStatus) -> str:
    lines = [f"**train {status.app} {status.version} through {status.through}**", ""]
    for stage in status.stages:
        status_text = stage.status.replace("_", " ")
        lines.append(f"- {stage.environment}: {status_text} ({stage.promotion_id})")
    if status.refusals:
        lines += ["", f"**Refused decisions:** {len(status.refusals)} (see the status query)"]
    return "\n".join(lines)
