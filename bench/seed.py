"""Bulk data for the scale measurements, written straight into the tables."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select

from models.settings import Settings
from services.unit import Units
from store.database import Database
from store.tables import (
    App,
    AppEnvironment,
    CurrentRelease,
    Deployment,
    Environment,
    Release,
    Secret,
    Variable,
    utcnow,
)
from vault.envelope import data_key_aad, seal, secret_aad, unwrap_data_key
from vault.keys import KeyProvider

PIPELINE = {"steps": [{"name": "noop", "run": ["true"]}]}


async def environment_with_entries(
    db: Database, settings: Settings, key: KeyProvider, name: str, count: int
) -> None:
    """`count` entries in one environment: half variables, half encrypted secrets."""
    async with Units(db, settings, key).write() as w:
        await w.environments.create_environment(name, actor="bench")
    async with db.write() as session:
        env = await session.scalar(select(Environment).where(Environment.name == name))
        assert env is not None
        data_key = unwrap_data_key(
            key, env.wrapped_data_key, data_key_aad(env.workspace_id, env.id), name
        )
        now = utcnow()
        variables = [
            {
                "environment_id": env.id,
                "app_id": None,
                "scope": "env",
                "key": f"VAR_{i}",
                "version": 1,
                "value": f"value-{i}",
                "created_by": "bench",
                "created_at": now,
            }
            for i in range(count // 2)
        ]
        secrets = [
            {
                "environment_id": env.id,
                "app_id": None,
                "scope": "env",
                "key": f"SECRET_{i}",
                "version": 1,
                "kind": "api-key",
                "created_by": "bench",
                "created_at": now,
                "ciphertext": seal(
                    data_key,
                    os.urandom(24).hex().encode(),
                    secret_aad(env.workspace_id, env.id, None, f"SECRET_{i}", 1),
                ),
            }
            for i in range(count - count // 2)
        ]
        if variables:
            await session.execute(insert(Variable), variables)
        if secrets:
            await session.execute(insert(Secret), secrets)


async def status_at_scale(
    db: Database, settings: Settings, key: KeyProvider, apps: int, history: int
) -> None:
    """`apps` apps in dev, staging and production, each with `history` deployments per
    environment and a current release."""
    async with Units(db, settings, key).write() as w:
        for name in ("dev", "staging", "production"):
            await w.environments.create_environment(name, actor="bench")
        workspace_id = await w.workspace_id()
    async with db.write() as session:
        env_ids = [e.id for e in (await session.scalars(select(Environment))).all()]
        now = utcnow()
        app_rows = [
            {"workspace_id": workspace_id, "name": f"app-{i:04d}", "created_at": now}
            for i in range(apps)
        ]
        await session.execute(insert(App), app_rows)
        app_ids = list((await session.scalars(select(App.id).order_by(App.id))).all())
        await session.execute(
            insert(AppEnvironment),
            [{"app_id": a, "environment_id": e} for a in app_ids for e in env_ids],
        )
        await session.execute(
            insert(Release),
            [
                {
                    "app_id": a,
                    "version": f"1.0.{n}",
                    "artifact": None,
                    "pipeline": PIPELINE,
                    "pipeline_source": "",
                    "pipeline_digest": "-",
                    "created_by": "bench",
                    "created_at": now,
                }
                for a in app_ids
                for n in range(history)
            ],
        )
        releases = {
            (a, v): r
            for r, a, v in (
                await session.execute(select(Release.id, Release.app_id, Release.version))
            ).all()
        }
        rows: list[dict[str, Any]] = []
        for a in app_ids:
            for e in env_ids:
                for n in range(history):
                    at = now - timedelta(hours=history - n)
                    rows.append(
                        {
                            "app_id": a,
                            "environment_id": e,
                            "release_id": releases[(a, f"1.0.{n}")],
                            "previous_release_id": None,
                            "kind": "promotion",
                            "promotion_id": None,
                            "restores_deployment_id": None,
                            "workflow_id": f"promote-{a}-{n}-{e}",
                            "run_id": "bench",
                            "requested_by": "bench",
                            "source": "cli",
                            "status": "deployed",
                            "reason": None,
                            "config": {},
                            "started_at": at,
                            "finished_at": at,
                            "verified_at": at,
                        }
                    )
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Deployment), rows[start : start + 5000])
        last = {
            (a, e): d
            for d, a, e in (
                await session.execute(
                    select(Deployment.id, Deployment.app_id, Deployment.environment_id).where(
                        Deployment.workflow_id.like(f"promote-%-{history - 1}-%")
                    )
                )
            ).all()
        }
        await session.execute(
            insert(CurrentRelease),
            [
                {
                    "app_id": a,
                    "environment_id": e,
                    "release_id": releases[(a, f"1.0.{history - 1}")],
                    "deployment_id": last[(a, e)],
                    "since": now,
                }
                for a in app_ids
                for e in env_ids
            ],
        )
