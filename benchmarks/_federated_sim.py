"""An in-process federation, round by round, over fedota's real device and server code.

    federation = Federation(make_model, devices, task, finetune, trainable, rounds=30, ...)
    result = run_arm(federation, Arm("fedota-int8", uplink="int8"), evaluate)

Not Flower's simulation engine: the benchmark measures the algorithms, so each round calls the
code a deployment runs, without the transport. A fedota arm does what a campaign does
(`fedota.server.campaigns.run`): the round plan from `TrainingSettings`, each selected device's
`run_round` (local training, client DP, uplink compression with error feedback; the residual
kept per device across rounds, as the device's `ResidualStore` does), its reply as the Flower
`RecordDict` the ClientApp sends (`reply_content`), offered to the aggregation `Round`
(`offer_reply`: decode, validate, aggregate), then `Round.finish`. The Flower arm trains with the
same `finetune` on the same devices and sends its trained arrays, which Flower's own
`flwr.serverapp.strategy.FedAvg.aggregate_train` averages.

Every arm uses the same schedule of selected devices (`schedule`) and the same local seeds, so
the arms differ only in what the device sends and how the server combines it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
from torch import nn

from fedota.client.training import run_round
from fedota.client.training.records import reply_content
from fedota.ml.finetune import Examples, FinetuneConfig, Task, finetune
from fedota.ml.lora import Trainable, load_trainable_state, trainable_state
from fedota.server.aggregation import DpParams, ModelSpec, Round, TrainingSettings
from fedota.server.aggregation.privacy import campaign_epsilon
from fedota.server.aggregation.records import offer_reply

FLOWER = "flower-fedavg"
Arrays = dict[str, np.ndarray]
Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass(frozen=True)
class Arm:
    """One way of running the federation: Flower's FedAvg, or fedota with an uplink and DP."""

    name: str
    uplink: str = "none"
    dp: DpParams | None = None

    @property
    def flower(self) -> bool:
        return self.name == FLOWER


@dataclass(frozen=True)
class Federation:
    """The devices, the model and the local training every arm shares.

    Attributes:
        make_model: a fresh model with its trainable set made, the same on every call.
        devices: each device's examples.
        task: how examples become batches and a loss.
        finetune: local training (its seed is replaced per round, as a campaign does).
        trainable: what trains (sent to devices in the round plan).
        rounds: federated rounds.
        clients_per_round: devices selected per round.
        seed: the schedule's and the local seeds' root.
    """

    make_model: Callable[[], nn.Module]
    devices: Sequence[Examples[Any]]
    task: Task[Any]
    finetune: FinetuneConfig
    trainable: Trainable
    rounds: int
    clients_per_round: int
    seed: int


def schedule(devices: int, per_round: int, rounds: int, seed: int) -> list[list[int]]:
    """The devices selected in each round (uniform without replacement, seeded), sorted.

    Raises:
        ValueError: per_round outside 1..devices.
    """
    if not 1 <= per_round <= devices:
        raise ValueError(f"clients per round must lie in 1..{devices}, got {per_round}")
    rng = np.random.default_rng([seed, 7])
    return [sorted(rng.choice(devices, per_round, replace=False).tolist()) for _ in range(rounds)]


def run_arm(federation: Federation, arm: Arm, evaluate: Evaluate) -> dict[str, Any]:
    """Run every round of one arm; per round the held-out metrics and the uplink bytes.

    Round 0 is the starting model (no training). Raises what training raises
    (fedota.ml.finetune.TrainingDiverged, ...) and NotEnoughUpdates when a round accepts none.
    """
    started = time.process_time()
    model = federation.make_model()
    arrays = {name: t.numpy().copy() for name, t in trainable_state(model).items()}
    rounds: list[dict[str, Any]] = [{"round": 0, **evaluate(model)}]
    residuals: dict[int, Arrays] = {}
    state: dict[str, Any] | None = None
    picks = schedule(
        len(federation.devices), federation.clients_per_round, federation.rounds, federation.seed
    )
    for number, selected in enumerate(picks, start=1):
        config = dataclasses.replace(federation.finetune, seed=federation.seed * 1000 + number)
        if arm.flower:
            arrays, sent = _flower_round(federation, model, arrays, selected, config, number)
            extra: dict[str, Any] = {}
        else:
            arrays, state, sent, extra = _fedota_round(
                federation, arm, model, arrays, state, selected, config, number, residuals
            )
        load_trainable_state(model, arrays)
        rounds.append({"round": number, **evaluate(model), **sent, **extra})
    result: dict[str, Any] = {
        "uplink": arm.uplink if not arm.flower else "fp32 arrays (Flower)",
        "rounds": rounds,
        "cpu_s": round(time.process_time() - started, 2),
    }
    if arm.dp is not None:
        spent = campaign_epsilon(
            arm.dp,
            rounds=federation.rounds,
            clients_per_round=federation.clients_per_round,
            eligible_devices=len(federation.devices),
        )
        result["dp"] = {
            "clip": arm.dp.clip,
            "noise_multiplier": arm.dp.noise_multiplier,
            "epsilon": round(spent.epsilon, 3),
            "delta": spent.delta,
            "sampling_rate": round(spent.sampling_rate, 4),
            "accountant": "RDP, Poisson-sampled Gaussian, device level (campaign_epsilon)",
        }
    return result


def _fedota_round(
    federation: Federation,
    arm: Arm,
    model: nn.Module,
    arrays: Arrays,
    state: dict[str, Any] | None,
    selected: Sequence[int],
    config: FinetuneConfig,
    number: int,
    residuals: dict[int, Arrays],
) -> tuple[Arrays, dict[str, Any] | None, dict[str, int], dict[str, Any]]:
    settings = TrainingSettings(
        strategy="fedavg",
        finetune=config,
        trainable=federation.trainable,
        uplink=arm.uplink,
        dp=arm.dp,
    )
    plan = settings.round_plan()
    round_ = Round(
        settings.build_strategy(),
        arrays,
        settings.update_limits(ModelSpec.of(arrays)),
        weight_by_examples=settings.weight_by_examples,
    )
    fp32 = 0
    norms = []
    for device in selected:
        result = run_round(
            model,
            arrays,
            federation.devices[device],
            federation.task,
            plan,
            residual=residuals.get(device),
            rng=np.random.default_rng([federation.seed, number, device]),
        )
        residuals[device] = result.residual
        fp32 += result.fp32_bytes
        norms.append(result.update_norm)
        offer_reply(round_, f"device-{device}", reply_content(result))
    outcome = round_.finish(state)
    sent = {"uplink_bytes": outcome.uplink_bytes, "fp32_bytes": fp32}
    extra = {
        "accepted": len(outcome.accepted),
        "rejected": [f"{r.client}: {r.reason.value}" for r in outcome.rejected],
        "mean_update_norm": round(float(np.mean(norms)), 5),
    }
    return outcome.arrays, outcome.state, sent, extra


def _flower_round(
    federation: Federation,
    model: nn.Module,
    arrays: Arrays,
    selected: Sequence[int],
    config: FinetuneConfig,
    number: int,
) -> tuple[Arrays, dict[str, int]]:
    replies = []
    sent = 0
    for device in selected:
        load_trainable_state(model, arrays)
        trained = finetune(model, federation.devices[device], federation.task, config)
        weights = {n: t.numpy().copy() for n, t in trainable_state(model).items()}
        sent += sum(a.nbytes for a in weights.values())
        content = RecordDict(
            {
                "arrays": ArrayRecord({n: Array(a) for n, a in weights.items()}),
                "metrics": MetricRecord({"num-examples": trained.metrics.examples}),
            }
        )
        replies.append(Message(content, metadata=_reply_metadata(device, number)))
    logging.getLogger("flwr").setLevel(logging.WARNING)  # its per-round INFO lines
    aggregated, _ = FlowerFedAvg().aggregate_train(number, replies)
    if aggregated is None:
        raise RuntimeError(f"Flower's FedAvg aggregated nothing in round {number}")
    new = {name: aggregated[name].numpy().astype(np.float32) for name in arrays}
    return new, {"uplink_bytes": sent, "fp32_bytes": sent}


def _reply_metadata(device: int, number: int) -> Metadata:
    # A reply as the SuperLink would deliver it (the grid sets these outside a simulation).
    return Metadata(
        run_id=1,
        message_id=f"reply-{number}-{device}",
        src_node_id=device + 1,
        dst_node_id=0,
        reply_to_message_id=f"train-{number}-{device}",
        group_id=str(number),
        created_at=time.time(),
        ttl=3600.0,
        message_type="train",
    )


__all__ = ["FLOWER", "Arm", "Evaluate", "Federation", "run_arm", "schedule"]
