"""Durable state: tables, migrations, the engine, and the repositories that query them."""
