"""The audit log: one row per state change, written in the same transaction as the change itself.

Because the row joins the caller's transaction, a change and its audit entry commit or roll back
together: there is never a change without its row, nor a row for a change that did not happen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fedota.storage.models import ActorType, AuditEvent
from fedota.storage.types import utcnow

# A dotted verb, e.g. `device.enroll`, `enrollment_token.create`.
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_ID_MAX = 40
_TARGET_TYPE_MAX = 32
_ACTION_MAX = 63


def record(
    session: Session,
    *,
    actor_type: ActorType | str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit row to the session's current transaction (no flush, no commit of its own).

    `details` is copied, so changing the caller's mapping later does not change the row.

    Raises:
        ValueError: `actor_type` is not an ActorType, `action` is not a dotted lowercase verb, or a
            field is longer than its column (checked here so both backends refuse it alike).
        TypeError: `details` cannot be stored as JSON.
    """
    actor = ActorType(actor_type)
    if len(action) > _ACTION_MAX or _ACTION.fullmatch(action) is None:
        raise ValueError(
            f"audit action must be a dotted lowercase verb such as 'device.accept', "
            f"of at most {_ACTION_MAX} characters, got {action!r}"
        )
    for name, value, limit in (
        ("actor_id", actor_id, _ID_MAX),
        ("target_id", target_id, _ID_MAX),
        ("target_type", target_type, _TARGET_TYPE_MAX),
    ):
        if len(value) > limit:
            raise ValueError(f"audit {name} is at most {limit} characters, got {len(value)}")
    if not target_type:
        raise ValueError("audit target_type must not be empty")
    # A round trip through JSON both copies the mapping deeply and refuses what cannot be stored.
    copied: dict[str, Any] = json.loads(json.dumps(dict(details or {}), allow_nan=False))
    event = AuditEvent(
        at=utcnow(),
        actor_type=actor,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=copied,
    )
    session.add(event)
    return event


__all__ = ["record"]
