"""Benchmark of the on-device runtime (issue 4): quantized variants, local serving, sliding window.

    python benchmarks/inference.py [--quick] [--skip-minilm] [--output FILE]

Prints one JSON object on stdout (progress on stderr). Per model (the digits classifier, the
byte LM, all-MiniLM-L6-v2 from the `bench` extra) and variant (fp32, int8, int4; mcu-int8 for
digits): weight memory, peak RSS of a fresh process, accuracy / perplexity / embedding cosine
against fp32, single-request latency, throughput at 1, 4 and 16 concurrent clients through the
real local inference server (gRPC on a Unix socket, clients in another process) with dynamic
batching and one request at a time, and generation tokens/s at batch 1 and batched on one
thread. Sliding window: KV-cache memory and perplexity at 4x the window, window vs full.
See benchmarks/README.md for what each figure means.

This file is the CLI and the run; beside it: _inference_plan (sizes), _inference_models (the
models and their quality, in this process), _inference_child (one variant in a fresh process:
memory, speed, serving), _inference_served (loading a variant as the daemon does),
_inference_load (the client processes), _inference_window (sliding window),
_inference_memory (tensor bytes, RSS), _inference_summary (comparisons and `targets`).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import emit, log, machine, peak_rss_bytes
from _delta_minilm import heldout_sentences, minilm_missing
from _inference_child import run_child
from _inference_models import digits_part, lm_quality, speed_part, train_small_lm
from _inference_plan import DIGITS_VARIANTS, VARIANTS, Plan
from _inference_summary import (
    batching,
    build_targets,
    generation_speedups,
    minilm_quality,
    summary,
)
from _inference_window import window_part

from fedota.ml.lm import fast, generate_corpus
from fedota.ml.quant import kernel_status
from fedota.ml.quant.kernels import int4_operands
from fedota.ml.quant.native import native_status

__all__ = ["Plan", "build_targets", "main", "minilm_part", "run"]


def _spec(
    plan: Plan, model: str, variant: str, path: Path | None, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": model,
        "variant": variant,
        "path": None if path is None else str(path),
        "plan": plan.to_dict(),
        "payload": payload,
    }


def digits_run(plan: Plan, work: Path) -> dict[str, Any]:
    """Accuracy and sizes here; memory, speed and serving per variant in children."""
    log("digits: train, quantize (int8, int4, mcu-int8), accuracy")
    record, files, rows = digits_part(plan, work)
    payload = {"rows": rows.astype(float).tolist()}
    for variant in DIGITS_VARIANTS:
        log(f"digits {variant}: child process")
        spec = _spec(plan, "digits", variant, files[variant], payload)
        record["variants"][variant]["process"] = run_child(spec, work)
    return record


def lm_run(plan: Plan, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trained LM's perplexity per variant and the sliding window; the speed model's
    variants in children."""
    log("lm: training the small LM from scratch")
    trained, info = train_small_lm(plan)
    record: dict[str, Any] = {"trained": {**info, **lm_quality(trained, plan)}}
    log("sliding window: perplexity and KV memory at 4x the window")
    window = window_part(trained, plan)
    log("lm speed model: variants and checkpoints")
    speed, files = speed_part(plan, work)
    lines = generate_corpus(64, seed=7).decode().splitlines()
    payload = {"prompts": [line[:24] for line in lines if line][:32]}
    for variant in VARIANTS:
        log(f"lm {variant}: child process")
        spec = _spec(plan, "lm", variant, files[variant], payload)
        speed["variants"][variant]["process"] = run_child(spec, work)
    speed["speedup_vs_fp32"] = generation_speedups(speed["variants"])
    record["speed_model"] = speed
    return record, window


def minilm_part(plan: Plan, work: Path) -> dict[str, Any]:
    """MiniLM per variant in children, cosines here; `skipped` with the reason without it."""
    if plan.skip_minilm:
        return {"skipped": "--skip-minilm"}
    missing = minilm_missing()
    if missing is not None:
        return {"skipped": missing}
    sentences = heldout_sentences(plan.minilm_sentences, np.random.default_rng(plan.seed))
    record: dict[str, Any] = {
        "sentences": len(sentences),
        "batch": plan.minilm_batch,
        "held_out": "generated sentences, none of them among the calibration sentences",
        "variants": {},
    }
    payload = {"texts": sentences[:64], "heldout": sentences}
    for variant in VARIANTS:
        log(f"minilm {variant}: child process")
        spec = _spec(plan, "minilm", variant, None, payload)
        record["variants"][variant] = {"process": run_child(spec, work)}
    minilm_quality(record, work)
    return record


def _kernels() -> dict[str, str]:
    """Whether the C kernels built here ("native") or the torch fall-backs run, and why; and
    what the int4 kernel multiplies ("bf16" with AVX512-BF16, else "fp32")."""
    kernel_status()
    fast.library()
    return {**native_status(), "int4_operands": int4_operands()}


def run(plan: Plan) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict."""
    started = time.perf_counter()
    torch.set_num_threads(1)  # training and quality here; the children set their own
    work = Path(tempfile.mkdtemp(prefix="fi-bench-", dir="/tmp"))  # short socket paths
    try:
        result: dict[str, Any] = {
            "benchmark": "inference",
            "schema": 1,
            "quick": plan.quick,
            "plan": plan.to_dict(),
            "machine": machine(),
            "kernels": _kernels(),
        }
        result["digits"] = digits_run(plan, work)
        result["lm"], result["sliding_window"] = lm_run(plan, work)
        result["minilm"] = minilm_part(plan, work)
        result["batching"] = batching(result, plan)
        result["summary"] = summary(result, plan)
        result["targets"] = build_targets(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under five minutes")
    parser.add_argument("--skip-minilm", action="store_true", help="digits and LM only")
    parser.add_argument("--output", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    if args.skip_minilm:
        plan = dataclasses.replace(plan, skip_minilm=True)
    command = " ".join(["benchmarks/inference.py", *argv])
    emit({"command": command, **run(plan)}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
