"""The digits federation: a Dirichlet non-IID split of real handwritten digits over devices.

Per seed: scikit-learn's digits split stratified into train (devices), calibration and test
(`fedota.ml.digits.load_digits_data`); the train split dealt to the devices by
`dirichlet_split`; a base model trained briefly on the calibration split (180 images, about 10%
of the data, IID: the model a vendor ships before the fleet fine-tunes it); the test split (360
images) is the held-out set every round is scored on. Each trainable setup (all layers, or LoRA
adapters) runs every arm on the same split, base and schedule.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from _common import log
from _federated_plan import Plan
from _federated_sim import FLOWER, Arm, Federation, run_arm
from _federated_split import dirichlet_split, skew
from torch import nn

from fedota.ml.digits import DigitsData, DigitsMLP, accuracy, load_digits_data, train_digits
from fedota.ml.finetune import DigitsTask, FinetuneConfig
from fedota.ml.lora import LayerSelection, LoRAConfig, Trainable, make_trainable
from fedota.server.aggregation import DpParams

LAYERS = "layers:all"
FP32_REFERENCE = (
    "uplink_vs_fp32_fedavg divides by flower-fedavg's uplink: the fp32 arrays of the same "
    "trainable set from the same devices in the same round"
)


@dataclass(frozen=True)
class Setup:
    """A trainable set and the arms run on it."""

    key: str
    description: str
    trainable: Trainable
    arms: tuple[Arm, ...]


def setups(plan: Plan) -> list[Setup]:
    """All layers trained (every arm, DP included), then LoRA adapters (fewer arms)."""
    layers = (
        Arm(FLOWER),
        *(Arm(f"fedota-{u}", u) for u in plan.digits_uplinks),
        *(Arm(d.name, dp=DpParams(d.clip, d.noise_multiplier)) for d in plan.digits_dp),
    )
    lora = (Arm(FLOWER), *(Arm(f"fedota-{u}", u) for u in plan.digits_lora_uplinks))
    rank = plan.digits_lora_rank
    return [
        Setup(
            LAYERS, "every layer's weights and biases train", LayerSelection(("layers.*",)), layers
        ),
        Setup(
            f"lora:r{rank}",
            f"LoRA rank {rank} (alpha {2 * rank}) on every Linear; the base stays frozen",
            LoRAConfig(rank=rank, alpha=2.0 * rank),
            lora,
        ),
    ]


def _base(plan: Plan, data: DigitsData, seed: int) -> dict[str, torch.Tensor]:
    central = DigitsData(data.x_cal, data.y_cal, data.x_cal, data.y_cal, data.x_test, data.y_test)
    model, _ = train_digits(
        seed=seed, epochs=plan.digits_base_epochs, hidden=plan.digits_hidden, data=central
    )
    return model.state_dict()


def run_seed(plan: Plan, seed: int, chosen: Sequence[Setup]) -> dict[str, Any]:
    """One repetition: the split, the base, and every arm of every setup."""
    data = load_digits_data(seed=seed)
    parts = dirichlet_split(data.y_train, plan.digits_devices, plan.digits_alpha, seed)
    devices = [[(data.x_train[i], int(data.y_train[i])) for i in part] for part in parts]
    base = _base(plan, data, seed)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"accuracy": round(accuracy(model, data.x_test, data.y_test), 6)}

    out: dict[str, Any] = {"split": skew(data.y_train, parts), "setups": {}}
    for setup in chosen:

        def make(trainable: Trainable = setup.trainable) -> nn.Module:
            model = DigitsMLP(plan.digits_hidden)
            model.load_state_dict(base)
            make_trainable(model, trainable)
            return model

        federation = Federation(
            make_model=make,
            devices=devices,
            task=DigitsTask(),
            finetune=FinetuneConfig(
                epochs=plan.digits_epochs,
                learning_rate=plan.digits_lr,
                batch_size=plan.digits_batch,
            ),
            trainable=setup.trainable,
            rounds=plan.digits_rounds,
            clients_per_round=plan.digits_per_round,
            seed=seed,
        )
        arms: dict[str, Any] = {}
        for arm in setup.arms:
            log(f"digits seed {seed} {setup.key}: {arm.name}")
            arms[arm.name] = run_arm(federation, arm, evaluate)
        out["setups"][setup.key] = {
            "trainable_parameters": sum(p.numel() for p in make().parameters() if p.requires_grad),
            "arms": arms,
        }
    return out


def combine(plan: Plan, seeds: Mapping[int, dict[str, Any]], chosen: Sequence[Setup]) -> dict:
    """Per setup and arm: accuracy per round (mean over seeds), final accuracy, uplink bytes
    per round (absolute, and relative to Flower's fp32 FedAvg in the same round)."""
    result: dict[str, Any] = {}
    for setup in chosen:
        per_seed = {s: seeds[s]["setups"][setup.key] for s in seeds}
        params = next(iter(per_seed.values()))["trainable_parameters"]
        arms: dict[str, Any] = {}
        for arm in setup.arms:
            runs = {s: per_seed[s]["arms"][arm.name] for s in per_seed}
            flower = {s: per_seed[s]["arms"][FLOWER]["rounds"] for s in per_seed}
            arms[arm.name] = _arm_summary(plan, arm, runs, flower)
        result[setup.key] = {
            "description": setup.description,
            "trainable_parameters": params,
            "fp32_update_bytes_per_device": 4 * params,
            "uplink_reference": FP32_REFERENCE,
            "arms": arms,
        }
    return result


def _arm_summary(
    plan: Plan, arm: Arm, runs: Mapping[int, dict[str, Any]], flower: Mapping[int, list[dict]]
) -> dict[str, Any]:
    curves = np.array([[r["accuracy"] for r in run["rounds"]] for run in runs.values()])
    rounds = []
    for index in range(curves.shape[1]):
        row: dict[str, Any] = {"round": index, "accuracy": round(float(curves[:, index].mean()), 6)}
        if index:
            sent = [run["rounds"][index]["uplink_bytes"] for run in runs.values()]
            fp32 = [flower[s][index]["uplink_bytes"] for s in runs]
            row["uplink_bytes"] = round(float(np.mean(sent)), 1)
            row["uplink_vs_fp32_fedavg"] = round(float(np.sum(sent) / np.sum(fp32)), 6)
        rounds.append(row)
    total_sent = sum(r["uplink_bytes"] for run in runs.values() for r in run["rounds"][1:])
    total_fp32 = sum(r["uplink_bytes"] for s in runs for r in flower[s][1:])
    final = curves[:, -plan.final_rounds :].mean(axis=1)
    summary: dict[str, Any] = {
        "uplink": str(next(iter(runs.values()))["uplink"]),
        "final_accuracy": round(float(final.mean()), 6),
        "final_accuracy_per_seed": [round(float(v), 6) for v in final],
        "uplink_vs_fp32_fedavg": round(total_sent / total_fp32, 6),
        "rounds": rounds,
        "rejected_updates": sum(
            len(r.get("rejected", [])) for run in runs.values() for r in run["rounds"]
        ),
        "cpu_s": round(sum(run["cpu_s"] for run in runs.values()), 2),
    }
    dp = [run["dp"] for run in runs.values() if "dp" in run]
    if dp:
        summary["dp"] = dp[0]
    return summary


def run_digits(plan: Plan) -> dict[str, Any]:
    """Every seed, then the summary; `per_seed` keeps each seed's own rounds."""
    chosen = setups(plan)
    seeds = {seed: run_seed(plan, seed, chosen) for seed in plan.digits_seeds}
    widths = [64, *plan.digits_hidden, 10]
    return {
        "model": {
            "architecture": "DigitsMLP " + "-".join(str(w) for w in widths),
            "parameters": sum(a * b + b for a, b in itertools.pairwise(widths)),
        },
        "base": (
            f"trained centrally {plan.digits_base_epochs} epochs on the calibration split "
            "(180 images, IID); devices hold the train split, the test split (360) is held out"
        ),
        "devices": plan.digits_devices,
        "clients_per_round": plan.digits_per_round,
        "rounds": plan.digits_rounds,
        "alpha": plan.digits_alpha,
        "seeds": list(plan.digits_seeds),
        "final_accuracy_is": f"mean held-out accuracy of the last {plan.final_rounds} rounds, "
        "averaged over the seeds",
        "split": {str(s): seeds[s]["split"] for s in seeds},
        "setups": combine(plan, seeds, chosen),
    }


__all__ = ["FP32_REFERENCE", "LAYERS", "Setup", "combine", "run_digits", "run_seed", "setups"]
