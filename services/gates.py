"""Promotion gates: small rules, each with a pass/fail and a reason, run as one ordered policy.

A gate never raises for a business reason; it reports. The policy runs every gate, so a
refusal names everything that is wrong at once, not one thing per attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import MissingConfiguration
from models.pipeline import Pipeline
from models.promotion import GateResult
from models.review import SignatureCheck
from models.status import DeploymentKind, DeploymentStatus
from services.environments import not_pointing
from store import deployments as deployment_repo
from store import releases as release_repo
from store.tables import App, CurrentRelease, Deployment, Environment, Promotion, Release


@dataclass(frozen=True)
class GateContext:
    session: AsyncSession
    app: App
    target: Environment
    release: Release
    pipeline: Pipeline
    # The environments this app points to, in chain order.
    app_chain: list[Environment]
    preflight: Callable[[], Awaitable[None]]
    # The app's promotions into the target that are under way (loaded once: the release-order
    # gate reads them, and a promotion that passes supersedes the older ones).
    in_progress: Sequence[Promotion]
    # The app's release pointer in the target (None: nothing deployed there yet), loaded once.
    pointer: CurrentRelease | None
    # The run asking (its own promotion record never counts against it) and whether the
    # requester chose --force.
    workflow_id: str = ""
    force: bool = False
    # Whether the stageline server signed the request for its requester, and why (not).
    requester: SignatureCheck | None = None


Gate = Callable[[GateContext], Awaitable[GateResult]]


async def app_points_to_target(ctx: GateContext) -> GateResult:
    problem = not_pointing(ctx.app.name, ctx.target.name, [e.name for e in ctx.app_chain])
    return GateResult(
        name="app-points-to-target",
        passed=problem is None,
        reason=problem or f"app {ctx.app.name} points to {ctx.target.name}",
    )


async def release_exists(ctx: GateContext) -> GateResult:
    return GateResult(
        name="release-exists",
        passed=True,
        reason=f"release {ctx.app.name}@{ctx.release.version} exists",
    )


def _verified_in(history: list[Deployment], release_id: int) -> Deployment | None:
    """The latest verified deployment of the release, unless it was rolled out since."""
    verified: Deployment | None = None
    for deployment in history:
        if (
            deployment.release_id == release_id
            and deployment.status == DeploymentStatus.DEPLOYED
            and deployment.verified_at is not None
        ):
            verified = deployment
        elif (
            verified is not None
            and deployment.kind in (DeploymentKind.ROLLBACK, DeploymentKind.COMPENSATION)
            and deployment.previous_release_id == release_id
            and deployment.status in (DeploymentStatus.DEPLOYED, DeploymentStatus.RUNNING)
        ):
            verified = None
    return verified


def previous_stage(ctx: GateContext) -> Environment | None:
    chain = [e.id for e in ctx.app_chain]
    if ctx.target.id not in chain or chain.index(ctx.target.id) == 0:
        return None
    return ctx.app_chain[chain.index(ctx.target.id) - 1]


async def verified_in_previous_stage(ctx: GateContext) -> Deployment | None:
    """The deployment that verified this release in the stage before the target, if any."""
    previous = previous_stage(ctx)
    if previous is None:
        return None
    history = list(await deployment_repo.deployments_in(ctx.session, ctx.app.id, previous.id))
    return _verified_in(history, ctx.release.id)


async def no_skipped_stage(ctx: GateContext) -> GateResult:
    previous = previous_stage(ctx)
    if previous is None:
        return GateResult(
            name="stage-order",
            passed=True,
            reason=f"{ctx.target.name} is the first stage of {ctx.app.name}",
        )
    if await verified_in_previous_stage(ctx) is not None:
        return GateResult(
            name="stage-order",
            passed=True,
            reason=f"{ctx.release.version} was deployed and verified in {previous.name}",
        )
    history = await deployment_repo.deployments_in(ctx.session, ctx.app.id, previous.id)
    ever = any(d.release_id == ctx.release.id and d.verified_at is not None for d in history)
    why = "was rolled back out of" if ever else "has not been deployed and verified in"
    return GateResult(
        name="stage-order",
        passed=False,
        reason=f"{ctx.app.name}@{ctx.release.version} {why} {previous.name}, the stage before "
        f"{ctx.target.name}; promote it to {previous.name} first",
    )


def _newer(release: Release, other: Release) -> bool:
    """Newer means created later: release ids follow creation order, whatever the version
    strings say (a 1.0.1 hotfix made after 2.0.0 is newer than 2.0.0)."""
    return other.id > release.id


async def release_order(ctx: GateContext) -> GateResult:
    """A re-run of an older release's promotion (an old CI job run again) must not replace a
    newer release or supersede a newer release's promotion unless asked to with --force."""
    newer: list[str] = []
    pointer = ctx.pointer
    if pointer is not None:
        current = await release_repo.release_by_id(ctx.session, pointer.release_id)
        if _newer(ctx.release, current):
            newer.append(f"{ctx.app.name}@{current.version} is deployed there")
    for promotion in ctx.in_progress:
        if promotion.workflow_id == ctx.workflow_id:
            continue
        other = await release_repo.release_by_id(ctx.session, promotion.release_id)
        if _newer(ctx.release, other):
            newer.append(f"{ctx.app.name}@{other.version} is being promoted there")
    if not newer:
        return GateResult(
            name="release-order",
            passed=True,
            reason=f"no release newer than {ctx.release.version} is deployed or being promoted "
            f"in {ctx.target.name}",
        )
    what = "; ".join(dict.fromkeys(newer))
    if ctx.force:
        return GateResult(
            name="release-order",
            passed=True,
            reason=f"--force: {what}, created after {ctx.release.version}; replacing it as asked",
        )
    return GateResult(
        name="release-order",
        passed=False,
        reason=f"{what}, created after {ctx.app.name}@{ctx.release.version}; promoting the older "
        "release would replace it; pass --force to do that on purpose (or, if it ran there "
        f"before, 'stageline rollback {ctx.app.name} --env {ctx.target.name} "
        f"--to {ctx.release.version}')",
    )


async def preflight(ctx: GateContext) -> GateResult:
    try:
        await ctx.preflight()
    except MissingConfiguration as exc:
        return GateResult(name="preflight", passed=False, reason=exc.message)
    refs = sorted(map(str, ctx.pipeline.references()))
    return GateResult(
        name="preflight",
        passed=True,
        reason=f"{ctx.target.name} provides {', '.join(refs) or 'everything needed'}",
    )


def unverified_requester_refusal(environment: str, check: SignatureCheck | None) -> str | None:
    """Why an environment that accepts only verified requesters refuses this request, or
    None when the stageline server signed it. A promotion's gate and a rollback's check say
    the same."""
    if check is not None and check.verified:
        return None
    why = check.reason if check is not None else "its requester was not checked"
    return (
        f"{environment} accepts only requests made through the stageline server (signed in); "
        f"start it with the CLI in remote mode or the console ({why})"
    )


async def verified_requester(ctx: GateContext) -> GateResult:
    """Only where the target requires it (`require_verified_requester`)."""
    refusal = unverified_requester_refusal(ctx.target.name, ctx.requester)
    return GateResult(
        name="verified-requester",
        passed=refusal is None,
        reason=refusal or (ctx.requester.reason if ctx.requester else ""),
    )


POLICY: list[Gate] = [
    app_points_to_target,
    release_exists,
    no_skipped_stage,
    release_order,
    preflight,
]


async def evaluate(ctx: GateContext) -> list[GateResult]:
    # An environment that does not require a verified requester shows no gate for it.
    policy = [verified_requester, *POLICY] if ctx.target.require_verified_requester else POLICY
    return [await gate(ctx) for gate in policy]
