"""Benchmark of fedota's federated training against Flower's FedAvg: accuracy, uplink, memory.

    python benchmarks/federated.py [--quick] [--skip-lm] [--skip-memory] [--output FILE]

Prints one JSON object on stdout (progress on stderr). An in-process federation runs fedota's
device round (`run_round`: training, DP, compressed uplink with error feedback) and server round
(`Round`: decode, validate, FedAvg) round by round, beside Flower's own FedAvg aggregation on the
same devices, schedule and local training: on real handwritten digits split non-IID (Dirichlet
alpha 0.5) and on the byte LM fine-tuned with LoRA on a quantized base over per-device text.
Client peak training memory of the quantized base + LoRA against fp32 full fine-tuning is
measured in child processes. See benchmarks/README.md for what each figure means.

This file is the CLI, the run and the `targets` block; beside it: _federated_plan (sizes),
_federated_split (Dirichlet split), _federated_text (per-device text), _federated_sim (the
round loop over fedota and Flower code), _federated_digits, _federated_lm, _federated_memory.
"""

from __future__ import annotations

import os

# Before numpy loads (children inherit it): OpenBLAS's threads spin while two busy cores are
# shared, and one float64 dot of 32 k values (the update norms fedota computes) then took
# 10 ms instead of 5 us, billing other processes' load to the fedota arms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from _common import emit, log, machine, peak_rss_bytes, target
from _federated_digits import LAYERS, run_digits
from _federated_lm import run_lm
from _federated_memory import measure
from _federated_plan import Plan
from _federated_sim import FLOWER

__all__ = ["Plan", "build_targets", "main", "run"]


def build_targets(result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The issue's four goals, measured on the digits' all-layers setup and the memory part."""
    arms = result["digits"]["setups"][LAYERS]["arms"]
    flower, none = arms[FLOWER], arms["fedota-none"]
    compressed = arms[f"fedota-{plan.compressed_uplink}"]
    gaps = [
        abs(a["accuracy"] - b["accuracy"]) * 100
        for a, b in zip(none["rounds"], flower["rounds"], strict=True)
    ]
    drop = (none["final_accuracy"] - compressed["final_accuracy"]) * 100
    memory = result.get("memory", {}).get("workloads", {})
    ratio = memory.get(f"batch_{plan.memory_target_batch}", {}).get("ratio_vs_fp32_full", {})
    worst = [r["training_peak_bytes"] for r in ratio.values() if r.get("training_peak_bytes")]
    memory_value = max(worst) if len(worst) == len(ratio) and worst else None
    targets = {
        "fedavg_match_points": target(round(max(gaps), 4), 1.0),
        "compressed_uplink_fraction": target(compressed["uplink_vs_fp32_fedavg"], 0.03),
        "compressed_accuracy_drop_points": target(round(drop, 4), 0.5),
        "lora_memory_ratio": target(memory_value, 0.40),
    }
    targets["fedavg_match_points"]["note"] = (
        "largest |fedota none - Flower FedAvg| held-out accuracy at the same round, any round"
    )
    targets["compressed_uplink_fraction"]["note"] = (
        f"{plan.compressed_uplink} uplink bytes over Flower FedAvg's fp32 uplink of the same "
        f"trainable set ({LAYERS}), summed over every round"
    )
    targets["compressed_accuracy_drop_points"]["note"] = (
        f"final accuracy of fedota none minus {plan.compressed_uplink}"
    )
    targets["lora_memory_ratio"]["note"] = (
        "the larger of int8 and int4 base + LoRA over fp32 full fine-tuning of the runtime "
        "issue's LM, process peak RSS while training above the RSS after imports and a warm-up "
        "step on a tiny model, batch "
        f"{plan.memory_target_batch} x {plan.memory_seq_len} bytes"
    )
    if memory_value is None:
        targets["lora_memory_ratio"]["note"] += " (not measured)"
    return targets


def run(plan: Plan, *, skip_lm: bool = False, skip_memory: bool = False) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict."""
    started = time.perf_counter()
    torch.set_num_threads(1)  # the same arithmetic on every run (and fair on a shared machine)
    # dp_accounting logs each RDP order it skips for a small sigma: noise on stderr, not news.
    logging.getLogger("absl").setLevel(logging.ERROR)
    result: dict[str, Any] = {
        "benchmark": "federated",
        "schema": 1,
        "quick": plan.quick,
        "plan": asdict(plan),
        "machine": machine(),
    }
    log("digits: Dirichlet split, every arm of every trainable setup")
    result["digits"] = run_digits(plan)
    result["lm"] = {"skipped": "--skip-lm"} if skip_lm else run_lm(plan)
    if skip_memory:
        result["memory"] = {"skipped": "--skip-memory"}
    else:
        log("memory: fp32 full fine-tuning, int8 and int4 base + LoRA, each in its own process")
        result["memory"] = {
            "model": plan.memory_lm,
            "target_batch": plan.memory_target_batch,
            "workloads": {
                f"batch_{batch}": measure(
                    plan.memory_lm,
                    steps=plan.memory_steps,
                    batch=batch,
                    seq_len=plan.memory_seq_len,
                    lora_rank=plan.memory_lora_rank,
                )
                for batch in plan.memory_batches
            },
        }
    result["targets"] = build_targets(result, plan)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under five minutes")
    parser.add_argument("--skip-lm", action="store_true", help="leave out the LM federation")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory part")
    parser.add_argument("--output", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    command = " ".join(["benchmarks/federated.py", *argv])
    emit(
        {"command": command, **run(plan, skip_lm=args.skip_lm, skip_memory=args.skip_memory)},
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
