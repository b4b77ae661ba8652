"""Secure aggregation of a campaign round, without transport: settings, seam types, judging.

With `--secure-aggregation` a round's training step runs Flower's SecAgg+ (Bell et al. 2020;
Flower's `SecAggPlusWorkflow` on the coordinator, `secaggplus_mod` on the devices): every
device masks its update, the coordinator sums the masked vectors and only the weighted mean
of the surviving devices' updates is ever unmasked. So the server cannot judge one update:

- each device clips its update to the campaign's norm bound B before masking (after its DP
  noise, if any), and SecAgg+ quantizes every coordinate in [-B, B] (a coordinate of a vector
  of norm <= B never exceeds B, so the quantizer's clipping never bites);
- the server validates the unmasked mean instead (tensors, finite, norm <= B) and fails the
  round, with the reason, when it is unusable;
- weights: a device weighs its update by its example count up to `WEIGHT_CAP` (SecAgg+'s
  `max_weight`: weight x update must stay inside the quantizer's range), or 1 under DP.

    params = SecureParams.for_round(selected=3, bound=10.0, weighted=True)
    result = fleet.secure_exchange(contents, params, timeout)   # FleetLink, see run.py
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedota.server.aggregation import ModelSpec, UpdateLimits, validate_update
from fedota.server.campaigns import store
from fedota.storage.models import ParticipationStatus

# Flower's SecAgg+ wire format masks integers modulo 2**32 (its largest supported modulus).
MODULUS = 2**32
# The most a device's example count weighs in a secure round (SecAgg+'s max_weight).
WEIGHT_CAP = 10_000
# Round config keys the devices read in a secure round.
BOUND_KEY = "secure-bound"
WEIGHT_CAP_KEY = "secure-weight-cap"
NAMES_KEY = "tensor-names"
# SecAgg+'s four exchanges, in order (the names a dropped device's reason gives).
STAGES = ("setup", "share keys", "collect masked vectors", "unmask")
COLLECT = 2


@dataclass(frozen=True)
class SecureParams:
    """One round's SecAgg+ settings, chosen from the number of selected devices.

    Attributes:
        selected: devices asked to take part.
        threshold: shares needed to rebuild a device's secrets: a strict majority of the
            selected (at least 2), so the round survives up to selected - threshold dropouts.
        bound: the update norm bound B, also SecAgg+'s clipping range.
        quantization_range: integers per coordinate; the largest with selected x range below
            the modulus, so the masked sum never wraps.
        weight_cap: SecAgg+'s max_weight (1: every device weighs alike, as DP needs).
    """

    selected: int
    threshold: int
    bound: float
    quantization_range: int
    weight_cap: int
    modulus: int = MODULUS

    @classmethod
    def for_round(cls, selected: int, bound: float, weighted: bool) -> SecureParams:
        """Raises: ValueError: fewer than 2 devices, or a bound that is not positive."""
        if selected < 2:
            raise ValueError(f"secure aggregation needs at least 2 devices, got {selected}")
        if not (bound > 0 and math.isfinite(bound)):
            raise ValueError(f"the secure aggregation bound must be positive, got {bound}")
        return cls(
            selected=selected,
            threshold=max(2, selected // 2 + 1),
            bound=float(bound),
            quantization_range=(MODULUS - 1) // (selected + 1),
            weight_cap=WEIGHT_CAP if weighted else 1,
        )

    def quantization_error(self) -> float:
        """A bound on the error per coordinate of the unmasked mean: stochastic rounding moves
        each device's weighted value by less than one step, and the mean divides the sum by
        the total weight, at least 1 / weight_cap per device."""
        step = 2 * self.bound / self.quantization_range
        return step * self.weight_cap


@dataclass(frozen=True)
class NodeOutcome:
    """One selected node's part in a secure round.

    Attributes:
        included: its masked update is in the sum (it answered the masked-vector stage).
        stage: the stage it dropped at (None when it took part throughout).
        error: what it answered when it dropped ("" for no answer in time).
        revoked: it was left out before masking, revoked during the round.
        weight: its weight in the mean (0 when not included).
        masked_bytes: bytes of masked vectors it sent.
        metrics: its training metrics (loss, accuracy, examples, steps, memory).
    """

    included: bool
    stage: str | None = None
    error: str = ""
    revoked: bool = False
    weight: float = 0.0
    masked_bytes: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SecureResult:
    """What a secure round gave: the weighted mean of the included updates, or why not.

    Attributes:
        mean: tensor name -> the unmasked weighted mean update (None when the protocol
            stopped).
        nodes: node id -> its outcome.
        failure: why the protocol stopped ("" when it completed).
    """

    mean: dict[str, np.ndarray] | None
    nodes: Mapping[int, NodeOutcome]
    failure: str = ""

    @property
    def total_weight(self) -> float:
        return sum(n.weight for n in self.nodes.values() if n.included)


def participation(
    device_id: str, node: NodeOutcome | None, round_timeout: float, keys: Sequence[str]
) -> store.Participation:
    """The participation row of a device in a secure round (its metrics among `keys`)."""
    failed = ParticipationStatus.FAILED
    if node is None:
        return store.Participation(device_id, failed, reason="secure aggregation never reached it")
    metrics = {k: float(v) for k, v in node.metrics.items() if k in keys}
    examples = int(node.metrics.get("num-examples", 0))
    if node.included:
        return store.Participation(
            device_id, ParticipationStatus.ACCEPTED, examples, node.masked_bytes, "", metrics
        )
    if node.revoked:
        reason = "the device was revoked during the round; it was left out before masking"
    elif node.stage is None:  # the protocol stopped before this device's turn went wrong
        reason = "secure aggregation stopped before its update was masked"
    else:
        said = (
            f"the device answered: {node.error}"
            if node.error
            else (f"no reply within {round_timeout:g}s")
        )
        reason = f"dropped out of secure aggregation at '{node.stage}': {said}"
    return store.Participation(device_id, failed, examples, node.masked_bytes, reason, metrics)


def unusable(mean: Mapping[str, np.ndarray], model: ModelSpec, params: SecureParams) -> str | None:
    """Why the unmasked mean cannot step the model (None: it can): tensors, finite values and
    norm <= the bound plus what quantization may add."""
    slack = params.quantization_error() * math.sqrt(model.numel)
    verdict = validate_update(mean, 1.0, model, UpdateLimits(params.bound + slack))
    if verdict.accepted:
        return None
    assert verdict.reason is not None
    return f"{verdict.reason.value}: {verdict.detail}"


__all__ = [
    "BOUND_KEY",
    "NAMES_KEY",
    "STAGES",
    "WEIGHT_CAP",
    "WEIGHT_CAP_KEY",
    "NodeOutcome",
    "SecureParams",
    "SecureResult",
    "participation",
    "unusable",
]
