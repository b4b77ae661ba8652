"""Helpers shared by the benchmarks: JSON out, progress to stderr, timing per core, peak memory.

Every benchmark prints exactly one JSON object to stdout (progress goes to stderr) and carries a
`targets` block mapping each goal of its issue to `{"value": ..., "goal": ..., "met": ...}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MB = 1_000_000  # throughput and sizes are reported in decimal megabytes


def log(message: str) -> None:
    """Progress line on stderr (stdout carries only the JSON object)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any], output: Path | None = None) -> None:
    """Print the result as one JSON object on stdout, and write it to `output` if given.

    Raises:
        ValueError: the result holds a NaN or an infinity (not valid JSON).
        OSError: `output` cannot be written.
    """
    text = json.dumps(result, indent=2, sort_keys=False, allow_nan=False)
    if output is not None:
        output.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes.

    Linux: VmHWM from /proc/self/status, the peak of this program's own address space;
    ru_maxrss there can still hold the parent's size when a child was forked from a big
    process before exec. Elsewhere: ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def machine() -> dict[str, Any]:
    """What the figures were measured on, with one core's SHA-256 speed as a yardstick: the
    same code's MB/s figures differ by 20% between hosts of this kind, and scale with it."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "sha256_mb_s_per_core": sha256_speed(),
    }


def sha256_speed(nbytes: int = 1 << 25) -> float:
    """SHA-256 throughput of one core over `nbytes` of zeros (best of three), in MB/s."""
    data = bytes(nbytes)
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        hashlib.sha256(data).digest()
        best = min(best, time.process_time() - started)
    return rate(nbytes, best)


@dataclass(frozen=True)
class Timing:
    """CPU seconds (all threads of this process) and wall seconds of one measured call."""

    cpu_s: float
    wall_s: float

    def mb_s_per_core(self, nbytes: int) -> float:
        """Throughput of `nbytes` per CPU second: what one core sustains."""
        return rate(nbytes, self.cpu_s)


@contextmanager
def timed() -> Iterator[list[Timing]]:
    """Time the body: `with timed() as t: ...` then `t[0]` is its Timing."""
    box: list[Timing] = []
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        yield box
    finally:
        box.append(Timing(time.process_time() - cpu, time.perf_counter() - wall))


def best_of(repeats: int, call: Callable[[], T], *, max_seconds: float = 10.0) -> tuple[T, Timing]:
    """Run `call` up to `repeats` times, stopping early once `max_seconds` of wall time are spent
    (it always runs once): its last result and the least-CPU timing."""
    best: Timing | None = None
    spent = 0.0
    result: T
    for _ in range(max(1, repeats)):
        with timed() as box:
            result = call()
        spent += box[0].wall_s
        if best is None or box[0].cpu_s < best.cpu_s:
            best = box[0]
        if spent >= max_seconds:
            break
    assert best is not None
    return result, best


def rate(nbytes: int, seconds: float) -> float:
    """Decimal MB per second, rounded; a zero duration (below the clock's tick) counts as 1 µs."""
    return round(nbytes / MB / max(seconds, 1e-6), 1)


def ratio(part: int, whole: int) -> float:
    """`part / whole` to six decimals.

    Raises:
        ValueError: `whole` is not positive.
    """
    if whole <= 0:
        raise ValueError(f"a ratio needs a positive whole, got {whole}")
    return round(part / whole, 6)


def target(value: float | bool | None, goal: float | bool, *, at_most: bool = True) -> dict:
    """One entry of a `targets` block; `met` is false when the value could not be measured.

    `at_most` says the value must not exceed the goal (sizes, errors); False means it must reach
    it (throughputs). A boolean goal is met by an equal value.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        met = False
    elif isinstance(goal, bool):
        met = value == goal
    else:
        met = value <= goal if at_most else value >= goal
    return {"value": value, "goal": goal, "met": bool(met)}


__all__ = [
    "MB",
    "Timing",
    "best_of",
    "emit",
    "log",
    "machine",
    "peak_rss_bytes",
    "rate",
    "ratio",
    "target",
    "timed",
]
