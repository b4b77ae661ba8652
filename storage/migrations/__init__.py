"""Alembic migrations of the coordinator schema."""
