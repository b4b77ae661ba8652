"""What the end-to-end tests share: polling with a deadline, and the operator's device listing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fedota.cli._local_fleet import LocalCoordinator, run_admin


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `predicate` until it holds; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def list_devices(coordinator: LocalCoordinator) -> list[dict[str, Any]]:
    """`fedota admin devices list --json`."""
    return json.loads(run_admin(coordinator, "devices", "list", "--json"))  # type: ignore[no-any-return]
