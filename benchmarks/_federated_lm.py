"""The LM federation: the byte LM fine-tuned with LoRA on a quantized base, per-device text.

The base ByteLM is pre-trained centrally on `fedota.ml.lm.generate_corpus` (generic generated
text), quantized (int8 by default: what a device runs), and LoRA adapters train on each
device's own lines (`_federated_text`). Every arm, Flower's FedAvg included, trains the same
adapters on the same quantized base with the same local steps; perplexity is scored on held-out
lines of the whole fleet (every kind of line alike), one line per window after BOS, as the
devices train.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from _common import log
from _federated_digits import FP32_REFERENCE
from _federated_plan import Plan
from _federated_sim import FLOWER, Arm, Federation, run_arm
from _federated_text import device_texts, mixtures, population_text
from torch import nn

from fedota.ml.finetune import FinetuneConfig, LanguageTask, evaluate
from fedota.ml.lm import ByteLM, LMConfig, generate_corpus, train_lm
from fedota.ml.lora import LoRAConfig, make_trainable
from fedota.ml.quant import quantize_model


def lm_config(plan: Plan) -> LMConfig:
    """The federated LM's shape (small enough for `--quick`)."""
    return LMConfig(
        d_model=plan.lm_d_model,
        n_layers=plan.lm_layers,
        n_heads=plan.lm_heads,
        d_ff=4 * plan.lm_d_model,
        max_seq_len=plan.lm_max_seq_len,
    )


def run_lm(plan: Plan) -> dict[str, Any]:
    """Pre-train, quantize, then every arm's rounds: perplexity and uplink bytes per round."""
    config = lm_config(plan)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.lm_seed)
        base = ByteLM(config)
    log(f"lm: pre-training d={config.d_model} for {plan.lm_pretrain_steps} steps")
    corpus = generate_corpus(plan.lm_pretrain_lines, seed=plan.lm_seed)
    train_lm(base, corpus, steps=plan.lm_pretrain_steps, seq_len=plan.lm_seq_len, seed=plan.lm_seed)
    frozen = quantize_model(base, plan.lm_base) if plan.lm_base != "fp32" else base
    texts = device_texts(plan.lm_devices, plan.lm_lines_per_device, plan.lm_alpha, plan.lm_seed)
    held_out = population_text(plan.lm_held_out_lines, plan.lm_seed + 1, plan.lm_devices)
    task = LanguageTask(seq_len=plan.lm_seq_len)
    trainable = LoRAConfig(rank=plan.lm_lora_rank, alpha=2.0 * plan.lm_lora_rank)

    def make() -> nn.Module:
        model = copy.deepcopy(frozen)
        make_trainable(model, trainable)
        return model

    def score(model: nn.Module) -> dict[str, float]:
        return {"perplexity": round(evaluate(model, held_out, task).perplexity, 4)}

    federation = Federation(
        make_model=make,
        devices=texts,
        task=task,
        finetune=FinetuneConfig(
            learning_rate=plan.lm_lr, batch_size=plan.lm_batch, max_steps=plan.lm_local_steps
        ),
        trainable=trainable,
        rounds=plan.lm_rounds,
        clients_per_round=plan.lm_per_round,
        seed=plan.lm_seed,
    )
    arms = [Arm(FLOWER), *(Arm(f"fedota-{u}", u) for u in plan.lm_uplinks)]
    results: dict[str, Any] = {}
    for arm in arms:
        log(f"lm: {arm.name}")
        results[arm.name] = run_arm(federation, arm, score)
    flower = results[FLOWER]["rounds"]
    for run in results.values():
        for row, reference in zip(run["rounds"][1:], flower[1:], strict=True):
            row["uplink_vs_fp32_fedavg"] = round(row["uplink_bytes"] / reference["uplink_bytes"], 6)
        sent = sum(r["uplink_bytes"] for r in run["rounds"][1:])
        run["uplink_vs_fp32_fedavg"] = round(sent / sum(r["uplink_bytes"] for r in flower[1:]), 6)
        run["final_perplexity"] = run["rounds"][-1]["perplexity"]
    adapters = sum(p.numel() for p in make().parameters() if p.requires_grad)
    return {
        "model": {
            "config": config.to_dict(),
            "base": plan.lm_base,
            "pretrain": {
                "corpus": "fedota.ml.lm.generate_corpus",
                "lines": plan.lm_pretrain_lines,
                "steps": plan.lm_pretrain_steps,
            },
        },
        "trainable": f"LoRA rank {plan.lm_lora_rank} on every Linear of the {plan.lm_base} base",
        "trainable_parameters": adapters,
        "fp32_update_bytes_per_device": 4 * adapters,
        "uplink_reference": FP32_REFERENCE,
        "devices": plan.lm_devices,
        "clients_per_round": plan.lm_per_round,
        "rounds": plan.lm_rounds,
        "device_mixtures": np.round(
            mixtures(plan.lm_devices, plan.lm_alpha, plan.lm_seed), 3
        ).tolist(),
        "held_out_lines": plan.lm_held_out_lines,
        "base_perplexity": {
            "fp32": round(evaluate(base, held_out, task).perplexity, 4),
            plan.lm_base: round(evaluate(frozen, held_out, task).perplexity, 4),
        },
        "arms": results,
    }


__all__ = ["lm_config", "run_lm"]
