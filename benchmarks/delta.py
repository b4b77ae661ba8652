"""Benchmark of fedota.delta: patch size per codec and mode beside zstd and ZipNN; speed; memory.

    python benchmarks/delta.py [--quick] [--skip-minilm] [--output FILE]

Prints one JSON object on stdout (progress on stderr). Datasets: synthetic transformer checkpoints
changed by a simulated AdamW fine-tune, a LoRA merge, a partial fine-tune and an unrelated model
(the encoder's fall-back), and the real all-MiniLM-L6-v2 (`bench` extra) fine-tuned a few AdamW
steps on generated sentence pairs. Before anything is timed, each mode's diff and apply run once
on a tiny model (`warmup_s`), so the first call's loading of compiled kernels is not measured.
See benchmarks/README.md for what each figure means.

This file is the CLI, the run and the `targets` block; the rest lives beside it:
_delta_data (plan, models, synthetic datasets), _delta_minilm (the real model),
_delta_baselines (zstd, ZipNN, entropy), _delta_library (the seam to fedota.delta, warm-up),
_delta_measure (modes, codecs, memory children, one dataset).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import emit, log, machine, peak_rss_bytes, target
from _delta_data import Plan, synthetic_datasets
from _delta_library import MODES, load_library, warm_up
from _delta_measure import child, run_dataset, run_minilm

__all__ = ["Plan", "build_targets", "main", "run", "run_minilm"]


def _flags(node: Any, keys: tuple[str, ...]) -> list[bool]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in keys and isinstance(v, bool)]
        return found + [f for v in node.values() for f in _flags(v, keys)]
    return []


def build_targets(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The issue's goals, measured on MiniLM when it ran, else on the synthetic dense fine-tune."""
    minilm = result["minilm"]
    name = (
        "minilm"
        if isinstance(minilm.get("modes"), dict) and "lossless" in minilm["modes"]
        else "synthetic.dense_adamw"
    )
    data = minilm if name == "minilm" else result["synthetic"]["dense_adamw"]
    modes = data["modes"] if "skipped" not in data["modes"] else {}
    auto = {m: modes.get(m, {}).get("auto", {}) for m in MODES}
    speeds = {
        k: [a[k] for a in auto.values() if k in a]
        for k in ("diff_mb_s_per_core", "apply_mb_s_per_core")
    }
    largest = [
        d["largest_patch_vs_target_file"]
        for d in [minilm, *result["synthetic"].values()]
        if "largest_patch_vs_target_file" in d
    ]
    exact = _flags(result, ("bit_exact", "output_bit_exact", "released_is_trained"))
    emb = data.get("embedding_deviation")
    targets = {
        "lossless_ratio": target(auto["lossless"].get("ratio"), 0.30),
        "bit_exact": target(all(exact) if exact else None, True),
        "fp16_ratio": target(auto["max_error_fp16"].get("ratio"), 0.04),
        "fp16_embedding_deviation_vs_fp16_cast": (
            target(emb["max_error_fp16"], emb["fp16_cast"])
            if emb and "max_error_fp16" in emb
            else {"value": None, "goal": None, "met": False, "note": "needs the MiniLM part"}
        ),
        "rel_0.01_ratio": target(auto["max_rel_error_0.01"].get("ratio"), 0.095),
        "apply_mb_s_per_core": target(
            min(speeds["apply_mb_s_per_core"], default=None), 200.0, at_most=False
        ),
        "diff_mb_s_per_core": target(
            min(speeds["diff_mb_s_per_core"], default=None), 100.0, at_most=False
        ),
        "never_larger_than_target": target(max(largest, default=None), 1.0),
    }
    return name, targets


def run(plan: Plan, *, skip_minilm: bool = False) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict."""
    started = time.perf_counter()
    lib, why_not = load_library()
    warmup_s = None
    if lib is not None:
        log("warm-up: each mode's diff and apply on a tiny model")
        warmup_s = warm_up(lib)
    result: dict[str, Any] = {
        "benchmark": "delta",
        "schema": 1,
        "quick": plan.quick,
        "plan": asdict(plan),
        "machine": machine(),
        "library": {"codecs": lib.codec_names(), "streaming_apply": lib.streaming_apply is not None}
        if lib
        else {"skipped": why_not},
        "warmup_s": warmup_s,
        "synthetic": {},
    }
    for name, (description, base, trained) in synthetic_datasets(plan).items():
        log(f"synthetic {name}: {description}")
        result["synthetic"][name] = run_dataset(
            lib, why_not, description, base, trained, plan, full=name != "unrelated"
        )[0]
    result["minilm"] = (
        {"skipped": "--skip-minilm"} if skip_minilm else run_minilm(lib, why_not, plan)
    )
    result["targets_measured_on"], result["targets"] = build_targets(result)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under five minutes")
    parser.add_argument("--skip-minilm", action="store_true", help="synthetic datasets only")
    parser.add_argument("--output", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    command = " ".join(["benchmarks/delta.py", *argv])
    emit({"command": command, **run(plan, skip_minilm=args.skip_minilm)}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
