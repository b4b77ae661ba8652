"""Per-device text for the federated LM: each device writes its own mixture of kinds of lines.

    texts = device_texts(devices=10, lines=80, alpha=0.5, seed=0)   # one list of lines per device
    held_out = population_text(lines=300, seed=1)                  # every kind alike, new seed

Six kinds of generated lines (sensor readings, log messages, voice commands, arithmetic, JSON
status records, counting runs), none of them the base model's pre-training corpus
(`fedota.ml.lm.generate_corpus`) though some share its words. A device's mixture of kinds is drawn
from Dir(alpha): with alpha = 0.5 most devices write mostly one or two kinds, as a thermostat
logs readings and a phone hears commands. Each device also has its own sensor and host names.
Same seed, same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

_ROOMS = ("kitchen", "garage", "office", "bedroom", "hall", "cellar")
_LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
_EVENTS = (
    "patch applied to slot b",
    "heartbeat sent",
    "signature verified",
    "rollback to slot a",
    "download resumed at chunk",
    "model swapped without dropping requests",
)
_ACTIONS = ("turn on", "turn off", "dim", "open", "close", "lock")
_THINGS = ("the lights", "the heater", "the door", "the blinds", "the fan", "the garage")
_STATES = ("idle", "training", "updating", "serving", "offline")


def _sensor(rng: random.Random, device: int) -> str:
    return (
        f"sensor-{device:02d} {rng.choice(_ROOMS)} temp={rng.uniform(15, 30):.1f}C "
        f"hum={rng.randrange(20, 80)}%"
    )


def _log(rng: random.Random, device: int) -> str:
    return (
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d} {rng.choice(_LEVELS)} "
        f"node{device} {rng.choice(_EVENTS)} {rng.randrange(1, 99)}"
    )


def _command(rng: random.Random, device: int) -> str:
    return f"please {rng.choice(_ACTIONS)} {rng.choice(_THINGS)} in the {rng.choice(_ROOMS)}"


def _sum(rng: random.Random, device: int) -> str:
    a, b = rng.randrange(100), rng.randrange(100)
    return f"{a}+{b}={a + b}"


def _status(rng: random.Random, device: int) -> str:
    return (
        f'{{"id": {device}, "state": "{rng.choice(_STATES)}", '
        f'"battery": {rng.randrange(101)}, "ok": {rng.choice(("true", "false"))}}}'
    )


def _count(rng: random.Random, device: int) -> str:
    start = rng.randrange(1, 90)
    return ",".join(str(i) for i in range(start, start + rng.randrange(3, 9)))


KINDS: tuple[Callable[[random.Random, int], str], ...] = (
    _sensor,
    _log,
    _command,
    _sum,
    _status,
    _count,
)


def mixtures(devices: int, alpha: float, seed: int) -> np.ndarray:
    """Each device's probabilities over KINDS (rows sum to 1), drawn from Dir(alpha).

    Raises:
        ValueError: devices < 1 or alpha not positive.
    """
    if devices < 1 or not alpha > 0:
        raise ValueError(f"need devices >= 1 and alpha > 0, got {devices} and {alpha}")
    return np.random.default_rng([seed, 11]).dirichlet(np.full(len(KINDS), alpha), size=devices)


def device_texts(devices: int, lines: int, alpha: float, seed: int) -> list[list[str]]:
    """`lines` lines per device, of kinds drawn from the device's mixture."""
    weights = mixtures(devices, alpha, seed)
    texts = []
    for device in range(devices):
        rng = random.Random(seed * 100_003 + device)
        kinds = rng.choices(KINDS, weights=weights[device].tolist(), k=lines)
        texts.append([kind(rng, device) for kind in kinds])
    return texts


def population_text(lines: int, seed: int, devices: int = 10) -> list[str]:
    """Held-out lines of the whole fleet: every kind equally likely, devices' names mixed."""
    rng = random.Random(seed * 7_919 + 1)
    return [rng.choice(KINDS)(rng, rng.randrange(devices)) for _ in range(lines)]


__all__ = ["KINDS", "device_texts", "mixtures", "population_text"]
