"""Durable state: tables, migrations, the engine, and the repositories that query them.

The queries every promotion or rollback runs are module-level statements with bound
parameters (`bindparam`), built once: building a SELECT and its cache key cost about as
much CPU as running it on SQLite (0.23 against 0.12 ms for a ticket lookup)."""
