"""A deterministic generated text corpus a tiny LM can learn in seconds.

Lines of four kinds: templated sentences, two-digit additions with their sums, counting
runs and repeated patterns. Same seed, same bytes, on every machine (no data is downloaded).
"""

from __future__ import annotations

import random

_SUBJECTS = ("the device", "a sensor", "the gateway", "our fleet", "the camera", "a phone")
_VERBS = ("reports", "downloads", "applies", "verifies", "caches", "measures")
_OBJECTS = ("a signed patch", "the temperature", "new weights", "an update", "the heartbeat")
_TAILS = ("every hour", "after reboot", "when idle", "at night", "twice a day")
_PATTERNS = ("abc", "xyz", "0110", "fedota ", "ping pong ")


def generate_corpus(lines: int = 2000, *, seed: int = 0) -> bytes:
    """`lines` newline-terminated lines of generated text.

    Raises:
        ValueError: lines < 1.
    """
    if lines < 1:
        raise ValueError(f"lines must be at least 1, got {lines}")
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        kind = rng.randrange(4)
        if kind == 0:
            out.append(
                f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
                f"{rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
            )
        elif kind == 1:
            a, b = rng.randrange(100), rng.randrange(100)
            out.append(f"{a}+{b}={a + b}")
        elif kind == 2:
            start = rng.randrange(1, 50)
            out.append(" ".join(str(i) for i in range(start, start + rng.randrange(3, 8))))
        else:
            out.append(rng.choice(_PATTERNS) * rng.randrange(2, 5))
    return ("\n".join(out) + "\n").encode("ascii")


__all__ = ["generate_corpus"]
