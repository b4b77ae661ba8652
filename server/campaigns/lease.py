"""A running ServerApp's sign of life, so the coordinator notices a dead one in seconds.

Flower marks a run whose ServerApp died as failed only after its heartbeat patience (two
30-second intervals in 1.42), and a run whose SuperExec died with it may stay `running`. The
ServerApp therefore renews a lease file (`<lease_dir>/<campaign>.json`: its run id and pid)
every `interval` seconds from a thread; the runner reads the file's age (`read_lease`) and
treats a lease older than its timeout as a dead ServerApp.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fedota.server.files import write_atomic


@dataclass(frozen=True)
class LeaseState:
    """The last sign of life: which run wrote it and how many seconds ago."""

    run_id: int
    pid: int
    age: float


def lease_path(directory: Path, campaign_id: str) -> Path:
    return Path(directory) / f"{campaign_id}.json"


def read_lease(directory: Path, campaign_id: str, now: float | None = None) -> LeaseState | None:
    """The campaign's lease, or None when there is none (or it is unreadable)."""
    path = lease_path(directory, campaign_id)
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        data = json.loads(path.read_bytes())
        return LeaseState(int(data["run_id"]), int(data["pid"]), max(age, 0.0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Lease:
    """Renews the campaign's lease every `interval` seconds until `stop()`.

    Raises (start):
        OSError: the lease directory cannot be written.
    """

    def __init__(self, directory: Path, campaign_id: str, run_id: int, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"the lease interval must be positive, got {interval}")
        self._path = lease_path(directory, campaign_id)
        self._body = json.dumps({"run_id": run_id, "pid": os.getpid()}).encode()
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self._path, self._body)
        self._thread = threading.Thread(target=self._renew, name="campaign-lease", daemon=True)
        self._thread.start()

    def stop(self, remove: bool = True) -> None:
        """Stop renewing; remove the file (a finished run holds no lease)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._interval + 1)
            self._thread = None
        if remove:
            self._path.unlink(missing_ok=True)

    def _renew(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                os.utime(self._path)
            except FileNotFoundError:
                write_atomic(self._path, self._body)
            except OSError:
                pass  # the next renewal tries again; the runner judges by age


__all__ = ["Lease", "LeaseState", "lease_path", "read_lease"]
