"""Who caused a change; each change records its one audit row through `fedota.storage.audit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fedota.storage import audit as audit_log
from fedota.storage.models import ActorType


@dataclass(frozen=True)
class Actor:
    """Who caused a change: an operator, a device, or the coordinator itself."""

    type: ActorType
    id: str

    @classmethod
    def system(cls) -> Actor:
        """The coordinator acting on its own (bootstrap, timers)."""
        return cls(ActorType.SYSTEM, "coordinator")


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add the audit row for a change to the caller's transaction.

    Raises:
        ValueError: a malformed action or an over-long id (a programming error).
    """
    audit_log.record(
        session,
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )
