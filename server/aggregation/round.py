"""One round on the server: decode, validate and aggregate each reply, then step the model.

    round_ = Round(strategy, global_arrays, limits)
    verdict = round_.offer("device-7", payload, examples=120)   # accepted, or rejected + why
    outcome = round_.finish(state)                              # new arrays, who, why, bytes

The round records every update it is offered: who was accepted (weight, norm), who was
rejected and why, and the uplink bytes received, which is what the campaign stores per round.
It never raises for a bad update; only `finish` raises, when the strategy cannot combine what
was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedota.delta.uplink import DEFAULT_UPLINK_LIMITS, UplinkFormatError, UplinkLimits, decode
from fedota.server.aggregation.base import Strategy
from fedota.server.aggregation.validation import (
    Arrays,
    ModelSpec,
    RejectReason,
    UpdateLimits,
    Verdict,
    validate_update,
)


@dataclass(frozen=True)
class Accepted:
    """An update that went into the aggregate."""

    client: str
    examples: float
    norm: float
    uplink_bytes: int


@dataclass(frozen=True)
class Rejected:
    """An update left out, and why (`reason.value` is what storage and the CLI show)."""

    client: str
    reason: RejectReason
    detail: str
    uplink_bytes: int


@dataclass(frozen=True)
class RoundOutcome:
    """What a round produced: the next global arrays and strategy state, and its records."""

    arrays: dict[str, np.ndarray]
    state: dict[str, Any] | None
    accepted: tuple[Accepted, ...]
    rejected: tuple[Rejected, ...]
    uplink_bytes: int = field(default=0)

    @property
    def examples(self) -> float:
        return sum(a.examples for a in self.accepted)


class Round:
    """Collects one round's replies for a strategy, starting from `global_arrays`.

    `weight_by_examples=False` weighs every accepted update alike (what client-level DP's
    sensitivity assumes: one device moves the mean by at most clip / n).
    """

    def __init__(
        self,
        strategy: Strategy,
        global_arrays: Arrays,
        limits: UpdateLimits,
        *,
        weight_by_examples: bool = True,
        uplink_limits: UplinkLimits = DEFAULT_UPLINK_LIMITS,
    ) -> None:
        self._strategy = strategy
        self._global = global_arrays
        self._spec = ModelSpec.of(global_arrays)
        self._limits = limits
        self._uplink_limits = uplink_limits
        self._by_examples = weight_by_examples
        self._accumulator = strategy.start_round(self._spec)
        self._accepted: list[Accepted] = []
        self._rejected: list[Rejected] = []
        self._seen: set[str] = set()

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def state_nbytes(self) -> int:
        """Bytes of update state the round holds (streaming strategies: independent of n)."""
        return self._accumulator.state_nbytes

    def offer(self, client: str, update: bytes | Arrays, examples: float) -> Verdict:
        """Decode (an uplink payload) and validate one client's update; aggregate it if sound.

        The verdict is recorded; the same client offering twice in a round is rejected.
        """
        size = len(update) if isinstance(update, bytes | bytearray | memoryview) else 0
        verdict = self._judge(client, update, examples)
        if verdict.accepted:
            self._seen.add(client)
            self._accepted.append(Accepted(client, examples, verdict.norm or 0.0, size))
        else:
            assert verdict.reason is not None
            self._rejected.append(Rejected(client, verdict.reason, verdict.detail, size))
        return verdict

    def reject(self, client: str, reason: RejectReason, detail: str) -> Verdict:
        """Record a reply rejected before its update could be read (e.g. no payload in it)."""
        verdict = Verdict(reason, detail)
        self._rejected.append(Rejected(client, reason, detail, 0))
        return verdict

    def finish(self, state: Mapping[str, Any] | None = None) -> RoundOutcome:
        """The next global arrays from the accepted updates, with the round's records.

        Raises:
            NotEnoughUpdates: fewer accepted updates than the strategy needs (none at all for
                FedAvg); the records are still in `records()`.
        """
        delta = self._accumulator.result()
        arrays, new_state = self._strategy.step(self._global, delta, state)
        accepted, rejected = self.records()
        return RoundOutcome(
            arrays, new_state, accepted, rejected, sum(r.uplink_bytes for r in accepted + rejected)
        )

    def records(self) -> tuple[tuple[Accepted, ...], tuple[Rejected, ...]]:
        """Who was accepted and who was rejected so far."""
        return tuple(self._accepted), tuple(self._rejected)

    def _judge(self, client: str, update: bytes | Arrays, examples: float) -> Verdict:
        if client in self._seen:
            return Verdict(RejectReason.DUPLICATE, f"{client} already sent an update this round")
        capacity = self._accumulator.capacity
        if capacity is not None and self._accumulator.count >= capacity:
            return Verdict(RejectReason.ROUND_FULL, f"the round holds its {capacity} updates")
        if isinstance(update, bytes | bytearray | memoryview):
            try:
                update = decode(bytes(update), self._spec.shapes, limits=self._uplink_limits)
            except UplinkFormatError as exc:
                return Verdict(RejectReason.UNDECODABLE, str(exc))
        verdict = validate_update(update, examples, self._spec, self._limits)
        if verdict.accepted:
            self._accumulator.add(update, examples if self._by_examples else 1.0)
        return verdict


__all__ = ["Accepted", "Rejected", "Round", "RoundOutcome"]
