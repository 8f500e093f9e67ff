"""Plain variables, per environment (and optionally per app within it)."""

from __future__ import annotations

from models.errors import BadInput
from models.names import check_key
from models.workspace import VariableView
from services.config_entries import DeletedKey, KeyedEntries
from store.tables import Variable

MAX_VARIABLE_CHARS = 64 * 1024


class VariableService(KeyedEntries[Variable]):
    table = Variable
    kind = "variable"
    prefix = "vars"

    def _tombstone(self, newest: Variable) -> Variable:
        return Variable(value="")

    async def set_variable(
        self, environment: str, key: str, value: str, *, actor: str, app: str | None = None
    ) -> VariableView:
        check_key(key, "variable name")
        if len(value) > MAX_VARIABLE_CHARS:
            raise BadInput(f"variable {key!r} is longer than {MAX_VARIABLE_CHARS} characters")
        slot = await self._next_slot(environment, key, app)
        row = Variable(
            environment_id=slot.env.id,
            app_id=slot.app_id,
            scope=slot.scope,
            key=key,
            version=slot.version,
            value=value,
            created_by=actor,
        )
        await self._store(row, slot, actor=actor, app=app)
        return VariableView(
            environment=slot.env.name,
            app=app,
            key=key,
            value=value,
            version=slot.version,
            created_by=actor,
            created_at=row.created_at,
        )

    async def list_variables(self, environment: str, app: str | None = None) -> list[VariableView]:
        """The variables an app sees in an environment (without one: the environment's)."""
        env, rows = await self._current(environment, app)
        return [
            VariableView(
                environment=env.name,
                app=owner,
                key=r.key,
                value=r.value,
                version=r.version,
                created_by=r.created_by,
                created_at=r.created_at,
            )
            for r, owner in rows
        ]

    async def delete_variable(
        self, environment: str, key: str, *, actor: str, app: str | None = None
    ) -> DeletedKey:
        """Delete a variable: a tombstone version, so it is absent from now on while the
        versions that deployments recorded stay. Deleting it again changes nothing."""
        return await self._delete(environment, key, actor=actor, app=app)
