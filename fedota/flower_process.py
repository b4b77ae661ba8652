"""Flower's own programs as supervised children: their environment, their process tree, restarts.

Shared by the coordinator (its SuperLink) and the device daemon (its SuperNode), which may not
import each other. Flower's servers start their SuperExec in a new session and the SuperExec starts
the app processes, so one process group does not hold them all: the tree is read from /proc
(children by parent pid, plus every process that names a member with `--parent-pid`, which is how
Flower's helpers find the process they serve; they outlive a parent killed with SIGKILL by up to
their poll interval).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Read at most this much of a log's tail to explain why a process ended.
_TAIL_BYTES = 16 * 1024


def flower_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every Flower process of fedota runs with.

    Telemetry and update checks off (nothing phones home), `FLWR_HOME` our own directory, and
    this interpreter's bin/ first on PATH: Flower finds `flower-superexec` and the app runners
    by name, and they must come from the same installation as fedota.
    """
    env = dict(os.environ)
    env.update(
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_HOME=str(home),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _proc_table() -> dict[int, tuple[int, list[str], str]]:
    """pid -> (parent pid, argv, state letter) for every process we can read."""
    table: dict[int, tuple[int, list[str], str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The command name in parentheses may hold spaces; the fields after it do not.
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), [a.decode(errors="replace") for a in argv], fields[0])
    return table


def _parent_pid_arg(argv: Sequence[str]) -> int | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == "--parent-pid" and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return None


def process_tree(root: int) -> set[int]:
    """`root` (alive or not) and every live process that belongs to it: its descendants and the
    Flower helpers that serve one of them (`--parent-pid`), transitively. Zombies count as gone."""
    table = _proc_table()
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, argv, state) in table.items():
            if pid in members or state == "Z":
                continue
            if ppid in members or _parent_pid_arg(argv) in members:
                members.add(pid)
                grew = True
    return {pid for pid in members if pid in table and table[pid][2] != "Z"}


def alive(pids: set[int]) -> set[int]:
    """The members of `pids` that still run (not gone, not zombies)."""
    table = _proc_table()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


def terminate_tree(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process and its whole tree, wait up to `grace` seconds, SIGKILL what is left,
    and reap the root. Safe to call on a process that already ended."""
    members = process_tree(process.pid)
    _signal_all(members, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
        # Helpers reparented to init when the root died are still found through --parent-pid.
        members = alive(members | process_tree(process.pid))
        if not members:
            break
    else:
        members = alive(members | process_tree(process.pid))
        _signal_all(members, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def _signal_all(pids: set[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class Phase(enum.Enum):
    """Where a supervised process is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    WAITING = "waiting"  # ended; restarts after a delay
    FAILED = "failed"  # ended for a reason a restart cannot fix
    STOPPED = "stopped"


@dataclass(frozen=True)
class Verdict:
    """What an ended process means: `retry_after` None restarts with backoff, a number restarts
    after that many seconds, and `fatal` does not restart. `reason` is one readable sentence."""

    reason: str
    retry_after: float | None = None
    fatal: bool = False
    # A stable name for the kind of ending, for callers that branch on it (e.g. "not-registered").
    kind: str = "crashed"


@dataclass(frozen=True)
class SupervisorState:
    """A snapshot of one supervised process."""

    phase: Phase
    reason: str = ""
    kind: str = ""
    pid: int | None = None
    restarts: int = 0


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts, and how long `stop()` lets a tree end before SIGKILL.

    Raises (on construction):
        ValueError: non-positive delays, or a cap below the first delay.
    """

    first_delay: float = 1.0
    max_delay: float = 60.0
    # A process that ran this long before ending starts the backoff over.
    stable_after: float = 60.0
    stop_grace: float = 10.0
    poll_interval: float = 0.2

    def __post_init__(self) -> None:
        if min(self.first_delay, self.max_delay, self.stop_grace, self.poll_interval) <= 0:
            raise ValueError("restart delays, stop grace and poll interval must be positive")
        if self.max_delay < self.first_delay:
            raise ValueError(f"max_delay {self.max_delay} is below first_delay {self.first_delay}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with half jitter: in [d/2, d], d = first * 2**attempt, capped."""
        bound = min(self.max_delay, self.first_delay * 2.0 ** min(attempt, 32))
        return rng.uniform(bound / 2, bound)


@dataclass
class Launch:
    """One way to start the process: argv, environment, working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path


class ProcessSupervisor:
    """Keeps one child process tree running: starts it, restarts it when it ends (with backoff, or
    as `classify` says), and stops the whole tree. Thread-safe; `stop()` from any thread."""

    def __init__(
        self,
        name: str,
        launch: Callable[[], Launch],
        classify: Callable[[int, str], Verdict],
        *,
        ready: Callable[[], bool] | None = None,
        policy: RestartPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._launch = launch
        self._classify = classify
        self._ready = ready
        self._policy = policy or RestartPolicy()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._state = SupervisorState(Phase.STOPPED)
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> SupervisorState:
        with self._lock:
            return self._state

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start supervising (returns at once; see `wait_for`).

        Raises:
            RuntimeError: already started.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.name} is already supervised")
            self._state = SupervisorState(Phase.STARTING)
            self._thread = threading.Thread(target=self._run, name=f"supervise-{self.name}")
            self._thread.daemon = True
            self._thread.start()

    def wait_for(
        self, predicate: Callable[[SupervisorState], bool], timeout: float
    ) -> SupervisorState:
        """Block until `predicate(state)` holds or `timeout` seconds pass; returns the state."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._state):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._state

    def stop(self) -> None:
        """Stop the tree (SIGTERM, then SIGKILL after the grace) and the supervision; idempotent."""
        self._stopping.set()
        with self._changed:
            process = self._process
            self._changed.notify_all()
        if process is not None:
            terminate_tree(process, self._policy.stop_grace)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._policy.stop_grace + 5)
        self._set(SupervisorState(Phase.STOPPED, restarts=self._state.restarts))

    def _set(self, state: SupervisorState) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def _run(self) -> None:
        attempt = 0
        restarts = 0
        while not self._stopping.is_set():
            try:
                launch = self._launch()
                process, offset = self._spawn(launch)
            except Exception as exc:  # any launch failure is reported, not raised
                verdict = Verdict(f"cannot start {self.name}: {exc}", fatal=True, kind="launch")
                self._set(SupervisorState(Phase.FAILED, verdict.reason, verdict.kind))
                log.error("%s", verdict.reason)
                return
            started = time.monotonic()
            self._set(SupervisorState(Phase.STARTING, pid=process.pid, restarts=restarts))
            code = self._watch(process)
            if self._stopping.is_set():
                return
            terminate_tree(process, self._policy.stop_grace)
            verdict = self._classify(code, _read_tail(launch.log_path, offset))
            log.warning(
                "%s (pid %d) ended with %s: %s", self.name, process.pid, code, verdict.reason
            )
            if verdict.fatal:
                self._set(
                    SupervisorState(Phase.FAILED, verdict.reason, verdict.kind, None, restarts)
                )
                return
            if time.monotonic() - started >= self._policy.stable_after:
                attempt = 0
            delay = verdict.retry_after
            if delay is None:
                delay = self._policy.delay(attempt, self._rng)
                attempt += 1
            self._set(SupervisorState(Phase.WAITING, verdict.reason, verdict.kind, None, restarts))
            if self._stopping.wait(delay):
                return
            restarts += 1

    def _spawn(self, launch: Launch) -> tuple[subprocess.Popen[bytes], int]:
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(launch.log_path, "ab") as output:
            offset = output.tell()
            process = subprocess.Popen(
                # Ends with this process even when it is killed outright (see die_with_parent).
                [
                    sys.executable,
                    "-m",
                    "fedota.die_with_parent",
                    str(os.getpid()),
                    "--",
                    *launch.argv,
                ],
                env=launch.env,
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._process = process
        return process, offset

    def _watch(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the process to end (or for stop); marks RUNNING once it is ready."""
        ready_seen = self._ready is None
        if ready_seen:
            self._mark_running(process)
        while not self._stopping.is_set():
            try:
                return process.wait(timeout=self._policy.poll_interval)
            except subprocess.TimeoutExpired:
                pass
            if not ready_seen and self._ready is not None and self._probe():
                ready_seen = True
                self._mark_running(process)
        return process.poll() or 0

    def _probe(self) -> bool:
        try:
            return bool(self._ready and self._ready())
        except Exception:  # a probe that fails means "not ready yet"
            return False

    def _mark_running(self, process: subprocess.Popen[bytes]) -> None:
        with self._changed:
            self._state = SupervisorState(
                Phase.RUNNING, pid=process.pid, restarts=self._state.restarts
            )
            self._changed.notify_all()


def _read_tail(path: Path, offset: int) -> str:
    """What the process wrote to its log since `offset` (its last 16 KiB at most)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(offset, end - _TAIL_BYTES))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def last_line(text: str, *needles: str) -> str:
    """The last line of `text` containing one of `needles` (stripped), or ""."""
    for line in reversed(text.splitlines()):
        if any(n in line for n in needles):
            return line.strip()
    return ""


__all__ = [
    "Launch",
    "Phase",
    "ProcessSupervisor",
    "RestartPolicy",
    "SupervisorState",
    "Verdict",
    "alive",
    "flower_environment",
    "last_line",
    "process_tree",
    "terminate_tree",
]
