"""Alembic migrations of the coordinator schema, run through `fedota.storage.migrate`.

Adding a revision (there is no alembic.ini): change the models, migrate a scratch database to the
current head, then `fedota.storage.migrate.make_revision(url, "what changed")` writes
`versions/NNNN_what_changed.py`. Review it by hand before committing: every constraint named
(`op.f(...)`), enum columns as a String plus their named CHECK, no imports from fedota (a migration
is frozen text), and a downgrade that undoes it. `tests/storage/test_migrations_schema.py` then
checks that the migrations build exactly the models' schema on SQLite and PostgreSQL.
"""
