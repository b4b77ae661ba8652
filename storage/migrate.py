"""Schema migrations through Alembic. PLACEHOLDER until the Alembic environment lands."""

from __future__ import annotations

from fedota.storage.db import Database
from fedota.storage.models import Base


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    db = Database(url)
    try:
        Base.metadata.create_all(db.engine)
    finally:
        db.dispose()
