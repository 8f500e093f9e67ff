"""App data per environment: threads, sources, memory, artifacts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from models.errors import BadInput, NotFound, Refused
from services.base import Service
from store import data as data_repo
from store import environments as env_repo

DataKind = Literal["threads", "sources", "memory", "artifacts"]
DATA_KINDS: tuple[DataKind, ...] = ("threads", "sources", "memory", "artifacts")
MAX_VALUE_BYTES = 1024 * 1024


class DataItem(BaseModel):
    namespace: str
    kind: DataKind
    key: str
    value: str
    updated_by: str


class DataSharingView(BaseModel):
    """Whether an app shares one kind of data across its environments, and where it lives."""

    app: str
    kind: DataKind
    shared: bool
    # "shared/<app>" when shared; else each environment's own "<env>/<app>".
    namespaces: dict[str, str]


def check_kind(kind: str) -> DataKind:
    if kind not in DATA_KINDS:
        raise BadInput(f"data kind {kind!r} is not known; use one of {', '.join(DATA_KINDS)}")
    return kind


def check_data_key(key: str) -> str:
    if not key or len(key) > 255 or any(ord(c) < 32 for c in key):
        raise BadInput(f"data key {key!r} is not valid: 1-255 printable characters")
    return key


class DataService(Service):
    async def namespaces(self, environment: str, app: str) -> dict[str, str]:
        """The namespace of each kind for `app` in `environment`, as steps receive them."""
        session = self.session
        env = await self.environment(environment)
        app_row = await self.app(app)
        return await data_repo.namespaces(session, env, app_row, DATA_KINDS)

    async def put(
        self, environment: str, app: str, kind: str, key: str, value: str, *, actor: str
    ) -> DataItem:
        kind_ = check_kind(kind)
        check_data_key(key)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise BadInput(f"data value for {key!r} is larger than 1 MiB")
        session = self.session
        env = await self.environment(environment)
        app_row = await self.app(app)
        await self.work.environments.require_app_in(app_row, env)
        ns = await data_repo.put(session, env, app_row, kind_, key, value, actor)
        # The value itself stays out of the audit log: data may be private.
        await self.audit(
            actor,
            "data.put",
            f"{app} {kind_} {key!r} in {environment}",
            environment=env.name,
            app=app,
            detail={"namespace": ns, "bytes": len(value.encode())},
        )
        return DataItem(namespace=ns, kind=kind_, key=key, value=value, updated_by=actor)

    async def entries(self, environment: str, app: str, kind: str) -> list[DataItem]:
        kind_ = check_kind(kind)
        session = self.session
        env = await self.environment(environment)
        app_row = await self.app(app)
        return [
            DataItem(
                namespace=r.namespace,
                kind=kind_,
                key=r.key,
                value=r.value,
                updated_by=r.updated_by,
            )
            for r in await data_repo.records(session, env, app_row, kind_)
        ]

    async def get(self, environment: str, app: str, kind: str, key: str) -> DataItem:
        found = [i for i in await self.entries(environment, app, kind) if i.key == key]
        if not found:
            raise NotFound(f"no {kind} entry {key!r} for {app} in {environment}")
        return found[0]

    async def share(self, app: str, kind: str, shared: bool, *, actor: str) -> DataSharingView:
        kind_ = check_kind(kind)
        session = self.session
        app_row = await self.app(app)
        await data_repo.set_sharing(session, app_row, kind_, shared)
        await session.flush()
        ws = app_row.workspace_id
        pointing = set(await env_repo.environments_of_app(session, app_row.id))
        namespaces = {
            env.name: await data_repo.namespace(session, env, app_row, kind_)
            for env in await env_repo.chain(session, ws)
            if env.name in pointing
        }
        await self.audit(
            actor,
            "data.share" if shared else "data.unshare",
            f"{app} {kind_} in {', '.join(namespaces) or 'no environment'}",
            app=app,
            detail={"kind": kind_, "namespaces": namespaces},
        )
        return DataSharingView(app=app, kind=kind_, shared=shared, namespaces=namespaces)

    async def copy(
        self,
        app: str,
        kind: str,
        source: str,
        target: str,
        *,
        actor: str,
        keys: list[str] | None = None,
    ) -> int:
        """Copy entries from one environment's namespace into another's: explicit, audited."""
        kind_ = check_kind(kind)
        if source == target:
            raise BadInput("copy needs two different environments")
        with self.refusals_audited(
            "data.copy.refused",
            f"{app} {kind_}: {source} -> {target}",
            actor=actor,
            environment=target,
            app=app,
            detail={"from": source, "to": target, "keys": keys},
        ):
            session = self.session
            app_row = await self.app(app)
            src = await self.environment(source)
            dst = await self.environment(target)
            await self.work.environments.require_app_in(app_row, dst)
            if await data_repo.is_shared(session, app_row, kind_):
                raise Refused(f"{app}'s {kind_} are shared by all environments; nothing to copy")
            entries = [
                r
                for r in await data_repo.records(session, src, app_row, kind_)
                if keys is None or r.key in keys
            ]
            for entry in entries:
                await data_repo.put(session, dst, app_row, kind_, entry.key, entry.value, actor)
            await self.audit(
                actor,
                "data.copy",
                f"{app} {kind_}: {source} -> {target}",
                environment=target,
                app=app,
                detail={"from": source, "to": target, "entries": len(entries), "keys": keys},
            )
            return len(entries)
