"""The device's side of a secure round: Flower's SecAgg+ mod around fedota's training.

In a campaign with secure aggregation, every train message carries SecAgg+'s config record;
the ClientApp passes it to Flower's `secaggplus_mod`, which runs the key exchange itself and,
at its masked-vector stage, calls fedota's training with the round content in Flower's legacy
`FitIns` form. This module converts that content to the usual round content and the device's
update to the `FitRes` form the mod masks: the update is clipped to the campaign's bound (after
DP noise, if any) and sent uncompressed, as SecAgg+ quantizes and masks it itself; its weight
is the device's example count up to the campaign's cap (1 under DP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

from fedota.client.training.privacy import clip_update
from fedota.ml.finetune import TrainMetrics

# Keys the coordinator adds to a secure round's config (fedota.server.campaigns.secure).
BOUND_KEY = "secure-bound"
WEIGHT_CAP_KEY = "secure-weight-cap"
NAMES_KEY = "tensor-names"
ARRAYS_RECORD, CONFIG_RECORD = "arrays", "config"


class SecureRequestError(ValueError):
    """A secure round's content lacks what the device needs, or holds it malformed."""


def is_secure(message: Message) -> bool:
    """Whether a train message is a step of SecAgg+ (it carries SecAgg+'s config record)."""
    return message.has_content() and RECORD_KEY_CONFIGS in message.content.config_records


def round_content(content: RecordDict) -> tuple[RecordDict, float, int]:
    """The usual round content ("arrays" by name, "config") of a secure round's FitIns
    content, with the norm bound and the weight cap.

    Raises:
        SecureRequestError: no FitIns, no names or a count that differs from the arrays', a
            bound or cap out of range.
    """
    try:
        fitins = compat.recorddict_to_fitins(content, keep_input=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise SecureRequestError(f"the secure round carries no round content ({exc})") from None
    config = dict(fitins.config)
    names = str(config.get(NAMES_KEY, "")).split(",")
    arrays = parameters_to_ndarrays(fitins.parameters)
    if len(names) != len(arrays) or not all(names):
        raise SecureRequestError(f"{len(names)} tensor names for {len(arrays)} arrays")
    bound, cap = config.get(BOUND_KEY), config.get(WEIGHT_CAP_KEY)
    if not isinstance(bound, float) or not (bound > 0 and math.isfinite(bound)):
        raise SecureRequestError(f"{BOUND_KEY} must be a positive number, got {bound!r}")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise SecureRequestError(f"{WEIGHT_CAP_KEY} must be a positive integer, got {cap!r}")
    record = ArrayRecord(
        {name: Array(np.asarray(a)) for name, a in zip(names, arrays, strict=True)}
    )
    plain = RecordDict({ARRAYS_RECORD: record, CONFIG_RECORD: ConfigRecord(config)})  # type: ignore[arg-type]
    return plain, bound, cap


def fitres_content(
    update: Mapping[str, np.ndarray],
    names: Sequence[str],
    bound: float,
    cap: int,
    metrics: TrainMetrics,
) -> RecordDict:
    """The FitRes content `secaggplus_mod` masks: the update clipped to `bound` (tensors in the
    order of `names`, the round's) weighted by min(examples, cap), with training metrics.

    Raises:
        ValueError: the update holds NaN or infinite values, or lacks one of `names`.
    """
    missing = [name for name in names if name not in update]
    if missing:
        raise ValueError(f"the update lacks {', '.join(missing[:3])}")
    clipped = clip_update({name: update[name] for name in names}, bound)
    # float64: SecAgg+ scales and quantizes in the arrays' dtype, and float32 would keep only
    # 24 of the quantizer's ~30 bits.
    exact = [np.asarray(clipped[name], dtype=np.float64) for name in names]
    weight = max(1, min(int(metrics.examples), cap))
    fitres = FitRes(
        Status(Code.OK, "ok"),
        ndarrays_to_parameters(exact),
        weight,
        {
            "num-examples": int(metrics.examples),
            "train-loss": float(metrics.loss),
            "train-accuracy": float(metrics.accuracy),
            "steps": int(metrics.steps),
            "peak-memory-bytes": int(metrics.peak_memory_bytes),
        },
    )
    return compat.fitres_to_recorddict(fitres, keep_input=True)


__all__ = ["SecureRequestError", "fitres_content", "is_secure", "round_content"]
