"""A step's record is one statement, written in a unit of its own; on PostgreSQL that unit
runs without BEGIN and COMMIT (a single statement is atomic by itself), on SQLite as any
other writer. On both, what it wrote is there when the unit ends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from models.promotion import PromotionInput, StepSpec, WorkflowRef
from services.unit import Units
from store.database import Database
from store.tables import StepRun, utcnow


async def test_a_step_record_is_one_statement_and_is_kept(db: Database, web_in_dev: Units) -> None:
    units = web_in_dev
    run = WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r1")
    request = PromotionInput(app="web", version="1.0.0", target="dev", requested_by="ci")
    async with units.write() as w:
        prepared = await w.deployments.prepare_promotion(request, run)
    async with units.write() as w:
        began = await w.deployments.begin_deployment(prepared.promotion_record_id, run)

    statements: list[str] = []

    def sent(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", sent)
    try:
        spec = StepSpec(section="steps", index=0, name="deploy", kind="run", timeout_seconds=60)
        now = utcnow()
        async with units.write(one_statement=True) as w:
            await w.deployments.record_step(
                began.deployment_id, spec, 1, "succeeded", 0, "ok", now, now
            )
            raw = await (await w.session.connection()).get_raw_connection()
            if db.dialect == "postgresql":
                # No BEGIN went to the server: the INSERT ran (and committed) on its own.
                assert raw.driver_connection is not None
                assert not raw.driver_connection.is_in_transaction()
    finally:
        event.remove(engine, "before_cursor_execute", sent)
    # SQLite's writers take turns in a transaction of their own (BEGIN IMMEDIATE).
    assert statements == (["INSERT"] if db.dialect == "postgresql" else ["BEGIN", "INSERT"])
    async with db.read() as session:
        rows = (await session.scalars(select(StepRun))).all()
    assert [(r.name, r.status, r.output) for r in rows] == [("deploy", "succeeded", "ok")]
