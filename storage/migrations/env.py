"""The Alembic environment, driven by `fedota.storage.migrate` (there is no alembic.ini).

`migrate` hands over an open connection already inside the transaction that holds the migration
lock, so this module never opens a connection or commits of its own.
"""

from __future__ import annotations

from alembic import context

from fedota.storage.models import Base


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError(
            "run migrations through fedota.storage.migrate, which passes a connection"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # Batch mode makes a future ALTER work on SQLite (copy and move); PostgreSQL gets ALTERs.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_online()
