"""Alembic environment: runs on the connection that store.database hands it, so migrations
apply automatically on first use; `alembic -x url=...` works for maintainers too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from store.tables import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url is None:
        raise SystemExit("pass the database with: alembic -x url=sqlite:///path.db upgrade head")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
