"""The environment chain and the apps that point to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from models.errors import BadInput, Conflict, NotFound, Refused, StagelineError
from models.names import PERSON_NAME, check_resource_name
from models.review import FreezeState
from models.workspace import (
    AppView,
    EnvironmentView,
    FreezeWindowView,
    Protection,
    ReviewerGroupView,
)
from services.base import RefusedIn, Service, _unknown
from store import deployments as deployment_repo
from store import environments as env_repo
from store import pointers as pointer_repo
from store import releases as release_repo
from store.tables import (
    App,
    AppEnvironment,
    Environment,
    FreezeWindow,
    ReviewerGroup,
    utcnow,
)
from vault.envelope import data_key_aad, new_data_key, secret_aad, wrap_data_key


def check_reviewer(name: str) -> str:
    if not PERSON_NAME.fullmatch(name.removeprefix("@")):
        raise BadInput(
            f"reviewer {name!r} is not valid: use a user name or e-mail such as 'alice' or "
            "'alice@acme.com' (a group is written '@name')"
        )
    return name


def protection_of(env: Environment) -> Protection:
    return Protection(
        required_approvals=env.required_approvals,
        reviewers=list(env.reviewers),
        allow_self_review=env.allow_self_review,
        wait_minutes=env.wait_minutes,
        approval_timeout_minutes=env.approval_timeout_minutes,
        require_signed_approvals=env.require_signed_approvals,
        require_verified_requester=env.require_verified_requester,
    )


def data_key_aad_of(env: Environment) -> bytes:
    """The associated data an environment's data key is wrapped with (its workspace and id):
    wrapping and unwrapping both build it here."""
    return data_key_aad(env.workspace_id, env.id)


def secret_aad_of(env: Environment, app_id: int | None, key: str, version: int) -> bytes:
    """The associated data sealed with a secret's value: where it belongs (workspace,
    environment, app scope, key, version). Sealing and unsealing both build it here, so they
    cannot disagree."""
    return secret_aad(env.workspace_id, env.id, app_id, key, version)


def not_pointing(app: str, environment: str, pointing: Sequence[str]) -> str | None:
    """Why `app` cannot act in `environment` (it does not point to it), or None when it can.
    `pointing`: the environments the app points to, in chain order."""
    if environment in pointing:
        return None
    return (
        f"app {app!r} does not point to environment {environment!r} "
        f"(it points to {', '.join(pointing) or 'none'})"
    )


class AppEnvironmentsChange(BaseModel):
    """What `app envs` did: the environments before and after."""

    name: str
    environments: list[str]
    before: list[str]
    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


class GroupRename(BaseModel):
    """What `group rename` did, with the environments whose reviewer lists it rewrote."""

    name: str
    renamed_from: str
    members: list[str]
    environments: list[str]


def _view(env: Environment, apps: list[str]) -> EnvironmentView:
    return EnvironmentView(
        name=env.name,
        position=env.position,
        protection=protection_of(env),
        apps=apps,
        created_at=env.created_at,
    )


class EnvironmentService(Service):
    async def create_environment(
        self,
        name: str,
        *,
        actor: str,
        after: str | None = None,
        protection: Protection | None = None,
    ) -> EnvironmentView:
        check_resource_name(name, "environment name")
        protection = protection or Protection()
        # Loaded before anything is written: without a master key, nothing is.
        key = self.key
        session = self.session
        ws = await self.workspace_id()
        if await env_repo.find_environment(session, ws, name) is not None:
            raise Conflict(f"environment {name!r} already exists; see 'stageline env show {name}'")
        await self._check_protection(ws, name, protection)
        if after is not None:
            position = (await self.environment(after)).position + 1
            await env_repo.shift_positions(session, ws, position, 1)
        else:
            position = await env_repo.next_position(session, ws)
        env = Environment(
            workspace_id=ws,
            name=name,
            position=position,
            required_approvals=protection.required_approvals,
            reviewers=protection.reviewers,
            allow_self_review=protection.allow_self_review,
            wait_minutes=protection.wait_minutes,
            approval_timeout_minutes=protection.approval_timeout_minutes,
            require_signed_approvals=protection.require_signed_approvals,
            require_verified_requester=protection.require_verified_requester,
            wrapped_data_key=b"",
            master_key_id=key.key_id,
        )
        session.add(env)
        await session.flush()
        # The data key is wrapped with an AAD naming this environment's id, so it exists
        # only after the row does.
        env.wrapped_data_key = wrap_data_key(key, new_data_key(), data_key_aad_of(env))
        await self.audit(
            actor,
            "environment.create",
            f"environment {name}",
            environment=name,
            detail={"after": after, **protection.model_dump()},
        )
        return _view(env, [])

    async def list_environments(self) -> list[EnvironmentView]:
        session = self.session
        ws = await self.workspace_id()
        names = await env_repo.app_environment_names(session, ws)
        apps = {a.id: a.name for a in await env_repo.apps(session, ws)}
        by_env: dict[str, list[str]] = {}
        for app_id, env_names in names.items():
            for env_name in env_names:
                by_env.setdefault(env_name, []).append(apps[app_id])
        return [
            _view(env, sorted(by_env.get(env.name, [])))
            for env in await env_repo.chain(session, ws)
        ]

    async def show_environment(self, name: str) -> EnvironmentView:
        env = await self.environment(name)
        return _view(env, await env_repo.apps_pointing_to(self.session, env.id))

    async def rename_environment(self, old: str, new: str, *, actor: str) -> EnvironmentView:
        check_resource_name(new, "environment name")
        with self.refusals_audited(
            "environment.rename.refused",
            f"environment {old} -> {new}",
            actor=actor,
            environment=old,
        ):
            session = self.session
            env = await self.environment(old)
            ws = await self.workspace_id()
            if await env_repo.find_environment(session, ws, new) is not None:
                raise Conflict(f"environment {new!r} already exists; pick another name")
            if await deployment_repo.environment_has_history(session, env.id):
                raise Refused(
                    f"environment {old!r} cannot be renamed: deployments and promotions refer to "
                    "it by name; create a new environment instead"
                )
            env.name = new
            await self.audit(
                actor,
                "environment.rename",
                f"environment {old} -> {new}",
                environment=new,
                detail={"from": old},
            )
            return _view(env, await env_repo.apps_pointing_to(session, env.id))

    async def delete_environment(self, name: str, *, actor: str) -> None:
        with self.refusals_audited(
            "environment.delete.refused", f"environment {name}", actor=actor, environment=name
        ):
            session = self.session
            env = await self.environment(name)
            pointing = await env_repo.apps_pointing_to(session, env.id)
            if pointing:
                raise Refused(
                    f"environment {name!r} cannot be removed: app(s) {', '.join(pointing)} point "
                    "to it"
                )
            if await deployment_repo.environment_has_history(session, env.id):
                raise Refused(
                    f"environment {name!r} cannot be removed: deployments and promotions refer "
                    "to it and are kept as history"
                )
            position = env.position
            await session.delete(env)
            await session.flush()
            await env_repo.shift_positions(session, await self.workspace_id(), position + 1, -1)
            await self.audit(actor, "environment.delete", f"environment {name}", environment=name)

    async def create_app(self, name: str, environments: list[str], *, actor: str) -> AppView:
        check_resource_name(name, "app name")
        if not environments:
            raise BadInput(f"app {name!r} needs at least one environment: add --env ENV")
        session = self.session
        ws = await self.workspace_id()
        if await env_repo.find_app(session, ws, name) is not None:
            raise Conflict(f"app {name!r} already exists")
        targets = [await self.environment(env) for env in dict.fromkeys(environments)]
        app = App(workspace_id=ws, name=name)
        session.add(app)
        await session.flush()
        for env in targets:
            session.add(AppEnvironment(app_id=app.id, environment_id=env.id))
        ordered = [e.name for e in sorted(targets, key=lambda e: e.position)]
        await self.audit(
            actor,
            "app.create",
            f"app {name}, pointing to {', '.join(ordered) or 'no environment'}",
            app=name,
            detail={"environments": ordered},
        )
        return AppView(name=name, environments=ordered, created_at=app.created_at)

    async def list_apps(self) -> list[AppView]:
        session = self.session
        ws = await self.workspace_id()
        names = await env_repo.app_environment_names(session, ws)
        return [
            AppView(name=a.name, environments=names.get(a.id, []), created_at=a.created_at)
            for a in await env_repo.apps(session, ws)
        ]

    async def delete_app(self, name: str, *, actor: str) -> None:
        with self.refusals_audited("app.delete.refused", f"app {name}", actor=actor, app=name):
            session = self.session
            app = await self.app(name)
            if await release_repo.app_has_releases(session, app.id):
                raise Refused(
                    f"app {name!r} cannot be removed: it has releases, which are immutable "
                    "and kept as history"
                )
            await env_repo.set_app_environments(session, app.id, [])
            await session.delete(app)
            await self.audit(actor, "app.delete", f"app {name}", app=name)

    async def require_app_in(
        self, app: App, env: Environment, *, error: type[StagelineError] = NotFound
    ) -> list[str]:
        """Raise `error` unless `app` points to `env`; returns the environments it points to,
        in chain order."""
        pointing = await env_repo.environments_of_app(self.session, app.id)
        problem = not_pointing(app.name, env.name, pointing)
        if problem is not None:
            raise error(problem)
        return pointing

    async def set_app_environments(
        self, name: str, environments: list[str], *, actor: str, force: bool = False
    ) -> AppEnvironmentsChange:
        """Make app `name` point to exactly `environments` (a no-op when it already does).

        An environment it stops pointing to must have nothing of the app under way (a
        promotion awaiting approval, queued or deploying; a rollback): refused. Where the app
        has a release deployed, it is refused too unless `force`: the pointer and history
        stay on record (and show again if the app points there again), but `status` stops
        showing it. The app's own variables, secrets and data there are kept likewise.
        """
        if not environments:
            raise BadInput(
                f"app {name!r} needs at least one environment: give --env ENV (repeatable)"
            )
        for env_name in environments:
            check_resource_name(env_name, "environment name")
        with self.refusals_audited(
            "app.environments.refused",
            f"app {name}",
            actor=actor,
            app=name,
            detail={"requested": list(dict.fromkeys(environments))},
        ):
            session = self.session
            app = await self.app(name)
            targets = [await self.environment(e) for e in dict.fromkeys(environments)]
            chain = list(await env_repo.chain(session, await self.workspace_id()))
            before = await env_repo.environments_of_app(session, app.id)
            after = [e.name for e in sorted(targets, key=lambda e: e.position)]
            removed = [e for e in chain if e.name in before and e.name not in after]
            problems = await self._why_not_leave(app, removed, force=force)
            if problems:
                raise RefusedIn(
                    f"app {name!r} cannot stop pointing to "
                    f"{', '.join(e.name for e in removed)}: {'; '.join(problems)}",
                    environment=removed[0].name if len(removed) == 1 else None,
                    app=name,
                )
            await env_repo.set_app_environments(session, app.id, [e.id for e in targets])
            added = [e for e in after if e not in before]
            for env_name, verb in [(e, "now points to") for e in added] + [
                (e.name, "no longer points to") for e in removed
            ]:
                await self.audit(
                    actor,
                    "app.environments",
                    f"app {name} {verb} {env_name}",
                    environment=env_name,
                    app=name,
                    detail={"before": before, "after": after, "force": force},
                )
            return AppEnvironmentsChange(
                name=name,
                environments=after,
                before=before,
                added=added,
                removed=[e.name for e in removed],
            )

    async def _why_not_leave(
        self, app: App, removed: list[Environment], *, force: bool
    ) -> list[str]:
        """Why `app` cannot stop pointing to each of `removed` (nothing when it can)."""
        session = self.session
        problems: list[str] = []
        for env in removed:
            running = await env_repo.work_under_way(session, app.id, env.id)
            if running:
                ids = ", ".join(running)
                problems.append(
                    f"{ids} {'is' if len(running) == 1 else 'are'} under way in {env.name}: "
                    f"wait for {'it' if len(running) == 1 else 'them'} to end, or reject "
                    f"('stageline reject {running[0]} --reviewer WHO'), then run this again"
                )
                continue
            pointer = await pointer_repo.current_release(session, app.id, env.id)
            if pointer is not None and not force:
                release = await release_repo.release_by_id(session, pointer.release_id)
                problems.append(
                    f"{app.name}@{release.version} is deployed in {env.name}: its record stays "
                    f"('stageline history {app.name} --env {env.name}') but 'stageline status' "
                    "would stop showing it; add --force to remove it anyway"
                )
        return problems

    # -- protection ------------------------------------------------------------------------

    async def _check_protection(self, ws: int, name: str, protection: Protection) -> None:
        for reviewer in protection.reviewers:
            check_reviewer(reviewer)
            if (
                reviewer.startswith("@")
                and await env_repo.find_group(self.session, ws, reviewer[1:]) is None
            ):
                raise NotFound(
                    f"reviewer group {reviewer!r} does not exist; create it with "
                    f"'stageline group create {reviewer[1:]} --member WHO'"
                )
        if protection.required_approvals > 0 and not protection.reviewers:
            raise BadInput(
                f"environment {name!r} requires {protection.required_approvals} approval(s) but "
                "names no reviewer; add --reviewer WHO (once per reviewer or @group)"
            )
        people = await self._expand(ws, protection.reviewers)
        if protection.required_approvals > len(people):
            raise BadInput(
                f"environment {name!r} requires {protection.required_approvals} approvals but its "
                f"reviewers are only {len(people)} person(s); name at least as many"
            )

    async def _expand(self, ws: int, reviewers: list[str]) -> list[str]:
        people: dict[str, None] = {}
        for reviewer in reviewers:
            if reviewer.startswith("@"):
                group = await env_repo.find_group(self.session, ws, reviewer[1:])
                for member in group.members if group else []:
                    people[str(member)] = None
            else:
                people[reviewer] = None
        return list(people)

    async def eligible_reviewers(self, env: Environment) -> list[str]:
        """The people who may decide on promotions into `env`, groups expanded (by name:
        `await self.eligible_reviewers(await self.environment(name))`)."""
        return await self._expand(env.workspace_id, list(env.reviewers))

    async def protect_environment(
        self,
        name: str,
        *,
        actor: str,
        required_approvals: int | None = None,
        reviewers: list[str] | None = None,
        allow_self_review: bool | None = None,
        wait_minutes: int | None = None,
        approval_timeout_minutes: int | None = None,
        require_signed_approvals: bool | None = None,
        require_verified_requester: bool | None = None,
    ) -> EnvironmentView:
        """Change protection rules; promotions already waiting keep the rules they started with.

        `require_verified_requester`: only promotions and rollbacks the stageline server
        started for someone signed in to it (their request signed with its key) pass."""
        ws = await self.workspace_id()
        env = await self.environment(name)
        current = protection_of(env)
        updates = {
            "required_approvals": required_approvals,
            "reviewers": list(dict.fromkeys(reviewers)) if reviewers is not None else None,
            "allow_self_review": allow_self_review,
            "wait_minutes": wait_minutes,
            "approval_timeout_minutes": approval_timeout_minutes,
            "require_signed_approvals": require_signed_approvals,
            "require_verified_requester": require_verified_requester,
        }
        changed = Protection.model_validate(
            {**current.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
        )
        await self._check_protection(ws, name, changed)
        for field, value in changed.model_dump().items():
            setattr(env, field, value)
        await self.audit(
            actor,
            "environment.protect",
            f"environment {name}",
            environment=name,
            detail={"before": current.model_dump(), "after": changed.model_dump()},
        )
        return _view(env, await env_repo.apps_pointing_to(self.session, env.id))

    # -- reviewer groups -------------------------------------------------------------------

    async def create_group(self, name: str, members: list[str], *, actor: str) -> ReviewerGroupView:
        check_resource_name(name, "group name")
        if not members:
            raise BadInput(f"group {name!r} needs at least one member: add --member WHO")
        for member in members:
            if member.startswith("@"):
                raise BadInput(f"group member {member!r}: groups hold people, not other groups")
            check_reviewer(member)
        ws = await self.workspace_id()
        if await env_repo.find_group(self.session, ws, name) is not None:
            raise Conflict(f"reviewer group {name!r} already exists")
        people = list(dict.fromkeys(members))
        self.session.add(ReviewerGroup(workspace_id=ws, name=name, members=people))
        await self.audit(actor, "group.create", f"group @{name}", detail={"members": people})
        return ReviewerGroupView(name=name, members=people)

    async def _group(self, name: str) -> ReviewerGroup:
        ws = await self.workspace_id()
        found = await env_repo.find_group(self.session, ws, name)
        if found is None:
            known = [g.name for g in await env_repo.groups(self.session, ws)]
            raise _unknown(
                "reviewer group", name, known, f"stageline group create {name} --member WHO"
            )
        return found

    async def rename_group(self, old: str, new: str, *, actor: str) -> GroupRename:
        """Rename a reviewer group, and every environment's `@old` with it, in one unit of work.
        Promotions already waiting keep the reviewers they started with."""
        check_resource_name(new, "group name")
        session = self.session
        ws = await self.workspace_id()
        group = await self._group(old)
        if old == new:
            raise BadInput(f"reviewer group {old!r} already has that name")
        if await env_repo.find_group(session, ws, new) is not None:
            raise Conflict(f"reviewer group {new!r} already exists; pick another name")
        group.name = new
        envs = await env_repo.environments_listing_reviewer(session, ws, f"@{old}")
        for env in envs:
            before = list(env.reviewers)
            env.reviewers = list(dict.fromkeys(f"@{new}" if r == f"@{old}" else r for r in before))
            await self.audit(
                actor,
                "environment.reviewers",
                f"environment {env.name}: reviewer @{old} is now @{new}",
                environment=env.name,
                detail={"before": before, "after": env.reviewers},
            )
        await self.audit(
            actor,
            "group.rename",
            f"group @{old} -> @{new}",
            detail={"from": old, "to": new, "environments": [e.name for e in envs]},
        )
        return GroupRename(
            name=new,
            renamed_from=old,
            members=[str(m) for m in group.members],
            environments=[e.name for e in envs],
        )

    async def delete_group(self, name: str, *, actor: str) -> ReviewerGroupView:
        """Remove a reviewer group that no environment lists among its reviewers."""
        with self.refusals_audited("group.delete.refused", f"group @{name}", actor=actor):
            session = self.session
            group = await self._group(name)
            envs = await env_repo.environments_listing_reviewer(
                session, await self.workspace_id(), f"@{name}"
            )
            if envs:
                first = envs[0]
                others = [r for r in first.reviewers if r != f"@{name}"]
                example = " ".join(f"--reviewer {r}" for r in others) or "--reviewer WHO"
                raise RefusedIn(
                    f"reviewer group {name!r} cannot be removed: environment(s) "
                    f"{', '.join(e.name for e in envs)} list @{name} among their reviewers; "
                    f"give them other reviewers first, e.g. 'stageline env protect "
                    f"{first.name} {example}'",
                    environment=first.name if len(envs) == 1 else None,
                )
            members = [str(m) for m in group.members]
            await session.delete(group)
            await self.audit(actor, "group.delete", f"group @{name}", detail={"members": members})
            return ReviewerGroupView(name=name, members=members)

    async def list_groups(self) -> list[ReviewerGroupView]:
        return [
            ReviewerGroupView(name=g.name, members=[str(m) for m in g.members])
            for g in await env_repo.groups(self.session, await self.workspace_id())
        ]

    # -- freeze windows --------------------------------------------------------------------

    async def freeze(
        self,
        name: str,
        *,
        actor: str,
        reason: str,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> FreezeWindowView:
        if not reason.strip():
            raise BadInput("a freeze needs a reason: add --reason TEXT")
        start = starts_at or utcnow()
        if ends_at is not None and ends_at <= start:
            raise BadInput(
                f"the freeze would end ({ends_at:%Y-%m-%d %H:%M} UTC) before it starts "
                f"({start:%Y-%m-%d %H:%M} UTC)"
            )
        env = await self.environment(name)
        window = FreezeWindow(
            environment_id=env.id,
            starts_at=start,
            ends_at=ends_at,
            reason=reason,
            created_by=actor,
        )
        self.session.add(window)
        await self.session.flush()
        await self.audit(
            actor,
            "environment.freeze",
            f"environment {name}",
            environment=name,
            detail={
                "window": window.id,
                "from": start.isoformat(),
                "until": ends_at.isoformat() if ends_at else None,
                "reason": reason,
            },
        )
        return _freeze_view(window, name)

    async def unfreeze(self, name: str, *, actor: str) -> list[FreezeWindowView]:
        """Lift every freeze in force now or later; returns what was lifted."""
        env = await self.environment(name)
        now = utcnow()
        lifted = []
        for window in await env_repo.freeze_windows(self.session, env.id):
            if window.lifted_at is None and (window.ends_at is None or window.ends_at > now):
                window.lifted_at, window.lifted_by = now, actor
                lifted.append(_freeze_view(window, name))
        if lifted:
            await self.audit(
                actor,
                "environment.unfreeze",
                f"environment {name}",
                environment=name,
                detail={"windows": [w.id for w in lifted]},
            )
        return lifted

    async def list_freezes(self, name: str) -> list[FreezeWindowView]:
        """The freezes of `name` in force now or later (lifted and ended ones left out)."""
        now = utcnow()
        env = await self.environment(name)
        return [
            _freeze_view(w, name)
            for w in await env_repo.freeze_windows(self.session, env.id)
            if w.lifted_at is None and (w.ends_at is None or w.ends_at > now)
        ]

    async def freeze_state(self, name: str, at: datetime | None = None) -> FreezeState:
        """Whether a freeze holds `name` now: the window in force that ends last."""
        now = at or utcnow()
        env = await self.environment(name)
        active = [
            w
            for w in await env_repo.freeze_windows(self.session, env.id)
            if w.lifted_at is None and w.starts_at <= now and (w.ends_at is None or w.ends_at > now)
        ]
        if not active:
            return FreezeState(frozen=False)
        forever = [w for w in active if w.ends_at is None]
        window = forever[0] if forever else max(active, key=lambda w: w.ends_at or now)
        return FreezeState(
            frozen=True, window_id=window.id, until=window.ends_at, reason=window.reason
        )


def _freeze_view(window: FreezeWindow, environment: str) -> FreezeWindowView:
    return FreezeWindowView(
        id=window.id,
        environment=environment,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        reason=window.reason,
        created_by=window.created_by,
        lifted_at=window.lifted_at,
        lifted_by=window.lifted_by,
    )
