"""From the children's records to the comparisons: speed-ups vs fp32, embedding cosines,
dynamic batching vs one at a time, a per-variant summary table, and the `targets` block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _common import target
from _inference_plan import Plan

# The batching target is measured on generation with the model: the workload a device
# batches (continuous batching of decode steps), at every variant (the smallest gain counts).
BATCHING_WORKLOAD = "lm.generate (speed model, continuous batching), smallest over fp32/int8/int4"


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def generation_speedups(variants: dict[str, Any]) -> dict[str, Any]:
    """Decode tokens per CPU second of each variant over fp32's, at batch 1 and batched."""
    out: dict[str, Any] = {}
    for run in ("batch_1", "batched"):
        fp32 = _get(variants, "fp32", "process", "in_process", run, "tokens_per_cpu_s")
        out[run] = {
            v: _ratio(_get(r, "process", "in_process", run, "tokens_per_cpu_s"), fp32)
            for v, r in variants.items()
        }
    return out


def minilm_quality(record: dict[str, Any], work: Path) -> None:
    """Cosine of each variant's embeddings to fp32's (the children saved them), and the
    throughput ratio at the plan's batch; written into `record`."""
    reference_path = work / "minilm-fp32.npy"
    if not reference_path.exists():
        return
    reference = np.load(reference_path).astype(np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    fp32_rate = _get(record, "variants", "fp32", "process", "in_process", "sentences_per_cpu_s")
    for variant, entry in record["variants"].items():
        path = work / f"minilm-{variant}.npy"
        if not path.exists():
            continue
        vectors = np.load(path).astype(np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cosine = np.sum(reference * vectors, axis=1)
        entry["cosine_to_fp32"] = {
            "mean": round(float(cosine.mean()), 6),
            "min": round(float(cosine.min()), 6),
        }
        rate = _get(entry, "process", "in_process", "sentences_per_cpu_s")
        entry["speedup_vs_fp32"] = _ratio(rate, fp32_rate)


def batching(result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Batched over one-at-a-time throughput at the most clients, per model and variant:
    per server CPU second (`per_server_cpu_s`) and per wall second (`wall`)."""
    top = str(max(plan.concurrency))
    models = {
        "lm": _get(result, "lm", "speed_model", "variants"),
        "minilm": _get(result, "minilm", "variants"),
        "digits": _get(result, "digits", "variants"),
    }
    gains: dict[str, Any] = {}
    for name, variants in models.items():
        for variant, entry in (variants or {}).items():
            on = _get(entry, "process", "serving", "batched", "levels", top)
            off = _get(entry, "process", "serving", "one_at_a_time", "levels", top)
            if on is None or off is None:
                continue
            gains.setdefault(name, {})[variant] = {
                "per_server_cpu_s": _ratio(
                    on["items_per_server_cpu_s"], off["items_per_server_cpu_s"]
                ),
                "wall": _ratio(on["items_per_s"], off["items_per_s"]),
            }
    lm = gains.get("lm", {})
    measured = [g["per_server_cpu_s"] for g in lm.values() if g["per_server_cpu_s"] is not None]
    wall = [g["wall"] for g in lm.values() if g["wall"] is not None]
    return {
        "clients": int(top),
        "items": {"lm": "generated tokens", "minilm": "sentences", "digits": "rows"},
        "speedup": gains,
        "target_workload": BATCHING_WORKLOAD,
        "target_value": min(measured) if len(measured) == 3 else None,
        "target_wall_value": min(wall) if len(wall) == 3 else None,
    }


def summary(result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """One row per model and variant: memory, quality, latency and throughput."""
    top = str(max(plan.concurrency))
    rows: dict[str, Any] = {}
    parts = {
        "digits": _get(result, "digits", "variants"),
        "lm": _get(result, "lm", "speed_model", "variants"),
        "minilm": _get(result, "minilm", "variants"),
    }
    quality = _get(result, "lm", "trained", "variants") or {}
    for name, variants in parts.items():
        for variant, entry in (variants or {}).items():
            process = entry.get("process", {})
            served = process.get("serving", {})
            row = {
                "weight_bytes": process.get("weight_bytes", entry.get("weight_bytes")),
                "peak_rss_mb": process.get("peak_rss_mb"),
                "server_latency_ms_1_client": _get(served, "batched", "levels", "1", "latency_ms"),
                "throughput_per_s": {
                    mode: {
                        c: _get(served, mode, "levels", c, "items_per_s")
                        for c in map(str, plan.concurrency)
                    }
                    for mode in ("batched", "one_at_a_time")
                },
            }
            if name == "digits":
                row["accuracy_retention"] = entry.get("accuracy_retention")
            elif name == "lm":
                row["ppl_retention"] = _get(quality, variant, "ppl_retention")
                row["tokens_per_cpu_s"] = {
                    run: _get(process, "in_process", run, "tokens_per_cpu_s")
                    for run in ("batch_1", "batched")
                }
            else:
                row["cosine_mean"] = _get(entry, "cosine_to_fp32", "mean")
                row["sentences_per_cpu_s"] = _get(process, "in_process", "sentences_per_cpu_s")
            row["batching_gain_at_top"] = _get(
                result, "batching", "speedup", name, variant, "per_server_cpu_s"
            )
            rows[f"{name}.{variant}"] = row
    rows["_clients_at_top"] = int(top)
    return rows


def _at_least(value: Any, goal: float) -> dict[str, Any]:
    return target(value, goal, at_most=False)


def build_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, each {"value", "goal", "met"} (met false when not measured)."""
    digits = _get(result, "digits", "variants") or {}
    lm = _get(result, "lm", "trained", "variants") or {}
    speed = _get(result, "lm", "speed_model") or {}
    minilm = result.get("minilm", {})
    allowance = _get(speed, "variants", "int4", "process", "int4_after_run") or {}
    int4_bytes = target(allowance.get("held_bytes"), allowance.get("allowed_bytes") or 0)
    int4_bytes.update(
        measured_on="speed model: every int4 layer's tensors after a generation run",
        fp32_weight_bytes=allowance.get("fp32_weight_bytes"),
        scale_bytes=allowance.get("scale_bytes"),
    )
    speedups = speed.get("speedup_vs_fp32", {}).get("batch_1", {})
    targets: dict[str, Any] = {
        "digits_int8_accuracy_retention": _at_least(
            _get(digits, "int8", "accuracy_retention"), 0.99
        ),
        "digits_int4_accuracy_retention": _at_least(
            _get(digits, "int4", "accuracy_retention"), 0.98
        ),
        "digits_mcu_int8_accuracy_retention": _at_least(
            _get(digits, "mcu-int8", "accuracy_retention"), 0.98
        ),
        "lm_int8_ppl_retention": _at_least(_get(lm, "int8", "ppl_retention"), 0.99),
        "lm_int4_ppl_retention": _at_least(_get(lm, "int4", "ppl_retention"), 0.98),
        "int4_weight_bytes": int4_bytes,
        "int8_generation_speedup_batch_1": _at_least(speedups.get("int8"), 2.5),
        "int4_generation_speedup_batch_1": _at_least(speedups.get("int4"), 1.0),
    }
    if "skipped" in minilm:
        note = f"MiniLM not measured: {minilm['skipped']}"
        for key, goal in (("minilm_int8_speedup", 2.0), ("minilm_int8_mean_cosine", 0.99)):
            targets[key] = {"value": None, "goal": goal, "met": False, "note": note}
    else:
        targets["minilm_int8_speedup"] = _at_least(
            _get(minilm, "variants", "int8", "speedup_vs_fp32"), 2.0
        )
        targets["minilm_int8_mean_cosine"] = _at_least(
            _get(minilm, "variants", "int8", "cosine_to_fp32", "mean"), 0.99
        )
    batch = result.get("batching", {})
    targets["dynamic_batching_speedup"] = {
        **_at_least(batch.get("target_value"), 4.0),
        "clients": batch.get("clients"),
        "measured_on": BATCHING_WORKLOAD,
        "per_variant": {v: g["per_server_cpu_s"] for v, g in _get(batch, "speedup", "lm").items()}
        if _get(batch, "speedup", "lm")
        else None,
        "wall_value": batch.get("target_wall_value"),
    }
    targets["sliding_window_kv_cut"] = {
        **_at_least(_get(result, "sliding_window", "kv_cut_min"), 0.60),
        "measured_on": "peak KV blocks of one sequence to 4x the window, smaller cut of two models",
    }
    return targets


__all__ = [
    "BATCHING_WORKLOAD",
    "batching",
    "build_targets",
    "generation_speedups",
    "minilm_quality",
    "summary",
]
