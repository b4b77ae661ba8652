"""One federated round on the device, without any transport: train, privatize, compress.

    model = load_quantized_state(...)                  # the active slot's model, int8/int4
    make_trainable(model, plan.trainable)              # adapters or layers, once per campaign
    result = run_round(model, global_arrays, examples, DigitsTask(), plan, residual=saved)
    send(result.payload, result.metrics); store.save(campaign, result.residual)

Order (each step's input is the previous step's output): the round's starting values are
loaded into the trainable parameters; local training gives the update (trained - start);
client-side DP clips it and adds noise; error feedback adds the last residual and the uplink
codec compresses it. Everything after DP is post-processing of a private value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fedota.client.training.privacy import ClientDp, global_norm, privatize
from fedota.client.training.uplink import compress_with_feedback
from fedota.delta.uplink import UplinkSpec, fp32_bytes
from fedota.ml.finetune import Examples, RoundPlan, Task, TrainMetrics, finetune
from fedota.ml.lora import load_trainable_state


@dataclass(frozen=True)
class RoundResult:
    """What the device sends (payload, metrics) and keeps (residual) after a round.

    Attributes:
        update_norm: L2 norm of the update before DP and compression.
        fp32_bytes: what the update would take uncompressed (for the uplink ratio).
    """

    payload: bytes
    metrics: TrainMetrics
    residual: dict[str, np.ndarray]
    update_norm: float
    fp32_bytes: int

    @property
    def uplink_bytes(self) -> int:
        return len(self.payload)


def run_round(
    model: nn.Module,
    global_arrays: Mapping[str, Any],
    examples: Examples[Any],
    task: Task[Any],
    plan: RoundPlan,
    *,
    residual: Mapping[str, np.ndarray] | None = None,
    rng: np.random.Generator | None = None,
) -> RoundResult:
    """Train the model from the round's starting values and produce the compressed update.

    Raises:
        ValueError: the global arrays do not fit the model's trainable parameters, or the
            plan's uplink is malformed.
        fedota.ml.finetune.NoExamples / TrainingDiverged / NoTrainableParameters: from training.
    """
    spec = UplinkSpec.parse(plan.uplink)
    load_trainable_state(model, global_arrays)
    trained = finetune(model, examples, task, plan.finetune)
    update = trained.update
    norm = global_norm(update)
    if plan.dp_clip is not None:
        update = privatize(update, ClientDp(plan.dp_clip, plan.dp_noise), rng)
    compressed = compress_with_feedback(update, spec, residual)
    return RoundResult(
        compressed.payload, trained.metrics, compressed.residual, norm, fp32_bytes(update)
    )


__all__ = ["RoundResult", "run_round"]
