"""Releases: immutable snapshots of an app version and its validated pipeline."""

from __future__ import annotations

import hashlib

from models.errors import Conflict
from models.names import check_version
from models.pipeline import Pipeline, parse_pipeline
from models.workspace import ReleaseView
from services.base import Service
from store import releases as release_repo
from store.tables import App, Release


def _view(app: App, release: Release) -> ReleaseView:
    refs = Pipeline.model_validate(release.pipeline).references()
    return ReleaseView(
        app=app.name,
        version=release.version,
        artifact=release.artifact,
        pipeline_digest=release.pipeline_digest,
        references=sorted(map(str, refs)),
        created_by=release.created_by,
        created_at=release.created_at,
    )


class ReleaseService(Service):
    async def create_release(
        self,
        app: str,
        version: str,
        pipeline_text: str,
        *,
        actor: str,
        source: str = "pipeline file",
        artifact: str | None = None,
    ) -> ReleaseView:
        check_version(version)
        # Validate before touching the database: a bad file changes nothing.
        pipeline = parse_pipeline(pipeline_text, source)
        digest = hashlib.sha256(pipeline_text.encode()).hexdigest()
        session = self.session
        app_row = await self.app(app)
        existing = await release_repo.find_release(session, app_row.id, version)
        if existing is not None:
            raise Conflict(
                f"release {app}@{version} already exists and releases are immutable; "
                "create a new version instead"
            )
        release = Release(
            app_id=app_row.id,
            version=version,
            artifact=artifact,
            pipeline=pipeline.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            pipeline_source=pipeline_text,
            pipeline_digest=digest,
            created_by=actor,
        )
        session.add(release)
        await session.flush()
        await self.audit(
            actor,
            "release.create",
            f"{app}@{version}",
            app=app,
            detail={"artifact": artifact, "pipeline_digest": digest},
        )
        return _view(app_row, release)

    async def list_releases(self, app: str) -> list[ReleaseView]:
        app_row = await self.app(app)
        return [_view(app_row, r) for r in await release_repo.releases(self.session, app_row.id)]
