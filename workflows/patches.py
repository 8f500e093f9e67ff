"""The workflows' code versions (`workflow.patched` ids) and when they are decided.

A run started since UP_FRONT_PATCH records one marker, that one, at the very start of the
run: before its first local activity. It stands for every patch below, which such a run then
takes without a marker of its own. Runs recorded before it decide each patch where the code
first asks, as they always did, so their histories replay.

Why at the start: a `workflow.patched` call that follows a local activity can land in the
next workflow task while the activity's marker closed the task before it (a query arriving
as the activity finished did that). Replaying that history resolves the activity inside the
first task, where the call finds no marker, and the replay fails with "Non-deprecated patch
marker encountered ... no corresponding change command": a stuck workflow after eviction, or
a failed query. A marker taken before any local activity cannot be split off that way.

A later change gets a new id decided in `Patches.start` as well, never a
`workflow.patched` call after a local activity.
"""

from __future__ import annotations

from temporalio import workflow

# Supersede and preempt signals are checked against the database before they count.
VERIFY_INTERRUPTIONS_PATCH = "verify-interruption-signals"
# A run whose record an earlier task attempt already ended ends as recorded.
ENDED_AS_RECORDED_PATCH = "ended-as-recorded"
# Not deployed (or not rolled back): the workflow ends Failed (`workflows.outcomes`).
OUTCOME_PATCH = "outcomes-end-as-failures"
# Rollbacks check they have somewhere to go before they queue.
CHECK_PATCH = "rollback-checked-before-queue"
# One local activity, one transaction, per phase: a promotion's queue, freeze and start of
# the deployment (`take_turn`) where they were three, and its end (`end_promotion`) where it
# was three; a rollback's check, queue and plan in one, its close and leave in one.
ONE_TRANSACTION_PATCH = "one-transaction-per-phase"
# Every patch above, decided by one marker at the start of the run.
UP_FRONT_PATCH = "patches-up-front"


class Patches:
    """One run's code version: `start()` first thing in the run (or in a handler that runs
    before it), then `patched(id)` wherever the code branches."""

    def __init__(self) -> None:
        self._up_front: bool | None = None

    def start(self) -> None:
        if self._up_front is None:
            self._up_front = workflow.patched(UP_FRONT_PATCH)

    def patched(self, patch_id: str) -> bool:
        self.start()  # a signal handler may ask before the run has started
        return bool(self._up_front) or workflow.patched(patch_id)
