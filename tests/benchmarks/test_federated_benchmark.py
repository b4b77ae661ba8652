"""benchmarks/federated.py run tiny in-process: the JSON schema, the Dirichlet split, the relations
between arms that must hold (compression shrinks the uplink, no compression is Flower's FedAvg),
determinism, and the memory child. No timing thresholds."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from bench_support import benchmark_module

TARGETS = (
    "fedavg_match_points",
    "compressed_uplink_fraction",
    "compressed_accuracy_drop_points",
    "lora_memory_ratio",
)
TINY_LM = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_seq_len": 64}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_module("federated.py") as module:
        yield module


@pytest.fixture(scope="module")
def tiny(bench: ModuleType) -> Any:
    return dataclasses.replace(
        bench.Plan.quick_plan(),
        digits_seeds=(0,),
        digits_devices=6,
        digits_per_round=3,
        digits_rounds=3,
        digits_hidden=(32,),
        digits_base_epochs=2,
        digits_epochs=1,
        lm_d_model=32,
        lm_layers=1,
        lm_heads=2,
        lm_max_seq_len=64,
        lm_seq_len=32,
        lm_pretrain_steps=5,
        lm_pretrain_lines=100,
        lm_devices=4,
        lm_per_round=2,
        lm_rounds=2,
        lm_lines_per_device=12,
        lm_held_out_lines=20,
        lm_local_steps=2,
        lm_batch=4,
    )


@pytest.fixture(scope="module")
def result(bench: ModuleType, tiny: Any) -> dict[str, Any]:
    out = bench.run(tiny, skip_memory=True)
    json.dumps(out, allow_nan=False)  # what `emit` prints must be valid JSON
    return out


def _module(name: str) -> ModuleType:
    return sys.modules[name]


# ------------------------------------------------------------------------------------- split


def test_dirichlet_split_covers_every_example_once_and_is_non_iid(bench: ModuleType) -> None:
    split = _module("_federated_split")
    labels = np.repeat(np.arange(10), 60)
    parts = split.dirichlet_split(labels, 12, 0.5, seed=3, min_examples=5)
    merged = np.concatenate(parts)
    assert len(parts) == 12
    assert sorted(merged.tolist()) == list(range(len(labels)))
    assert min(len(p) for p in parts) >= 5
    non_iid = split.skew(labels, parts)["mean_total_variation"]
    iid = split.skew(labels, np.array_split(np.random.default_rng(0).permutation(600), 12))
    assert non_iid > 0.3 > iid["mean_total_variation"]
    assert split.skew(labels, parts)["mean_classes_for_90pct"] < 9


def test_dirichlet_split_is_seeded(bench: ModuleType) -> None:
    split = _module("_federated_split")
    labels = np.repeat(np.arange(10), 30)
    same = [split.dirichlet_split(labels, 5, 0.5, seed=1) for _ in range(2)]
    other = split.dirichlet_split(labels, 5, 0.5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(*same, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(same[0], other, strict=True))


@pytest.mark.parametrize(
    ("devices", "alpha", "min_examples"), [(1, 0.5, 1), (5, 0.0, 1), (50, 0.5, 10)]
)
def test_dirichlet_split_refuses_bad_arguments(
    bench: ModuleType, devices: int, alpha: float, min_examples: int
) -> None:
    split = _module("_federated_split")
    with pytest.raises(ValueError):
        split.dirichlet_split(np.arange(100) % 10, devices, alpha, 0, min_examples=min_examples)


def test_schedule_is_seeded_and_checked(bench: ModuleType) -> None:
    sim = _module("_federated_sim")
    first = sim.schedule(10, 4, 5, seed=0)
    assert first == sim.schedule(10, 4, 5, seed=0)
    assert all(len(set(r)) == 4 and all(0 <= d < 10 for d in r) for r in first)
    assert first != sim.schedule(10, 4, 5, seed=1)
    with pytest.raises(ValueError):
        sim.schedule(3, 4, 1, seed=0)


def test_device_texts_differ_per_device_and_repeat_per_seed(bench: ModuleType) -> None:
    text = _module("_federated_text")
    first = text.device_texts(6, 30, 0.5, seed=0)
    assert first == text.device_texts(6, 30, 0.5, seed=0)
    assert first != text.device_texts(6, 30, 0.5, seed=1)
    mix = text.mixtures(6, 0.5, seed=0)
    assert np.allclose(mix.sum(axis=1), 1.0)
    assert mix.max(axis=1).mean() > 1 / len(text.KINDS) + 0.2  # each device leans to its kinds


# ------------------------------------------------------------------------------- the run


def test_schema_and_targets(result: dict[str, Any], tiny: Any) -> None:
    assert result["benchmark"] == "federated" and result["quick"] is True
    assert set(result["targets"]) == set(TARGETS)
    for entry in result["targets"].values():
        assert {"value", "goal", "met"} <= set(entry)
        assert isinstance(entry["met"], bool)
    memory = result["targets"]["lora_memory_ratio"]
    assert memory["value"] is None and memory["met"] is False  # --skip-memory: not measured
    assert result["memory"] == {"skipped": "--skip-memory"}
    compressed = result["digits"]["setups"]["layers:all"]["arms"][
        f"fedota-{tiny.compressed_uplink}"
    ]
    assert (
        result["targets"]["compressed_uplink_fraction"]["value"]
        == (compressed["uplink_vs_fp32_fedavg"])
    )


def test_every_arm_reports_every_round(result: dict[str, Any], tiny: Any) -> None:
    for setup in result["digits"]["setups"].values():
        for name, arm in setup["arms"].items():
            assert [r["round"] for r in arm["rounds"]] == list(range(tiny.digits_rounds + 1)), name
            assert all(0.0 <= r["accuracy"] <= 1.0 for r in arm["rounds"])
            assert all(r["uplink_bytes"] > 0 for r in arm["rounds"][1:])
            assert arm["rejected_updates"] == 0
    for arm in result["lm"]["arms"].values():
        assert len(arm["rounds"]) == tiny.lm_rounds + 1
        assert all(math.isfinite(r["perplexity"]) and r["perplexity"] > 1 for r in arm["rounds"])


def test_compression_shrinks_the_uplink_in_every_round(result: dict[str, Any]) -> None:
    arms = result["digits"]["setups"]["layers:all"]["arms"]
    rounds = {name: arm["rounds"][1:] for name, arm in arms.items()}
    for index in range(len(rounds["fedota-none"])):
        bytes_ = {name: rows[index]["uplink_bytes"] for name, rows in rounds.items()}
        fp32 = bytes_["flower-fedavg"]
        assert fp32 <= bytes_["fedota-none"] < 1.05 * fp32  # dense fp32 plus the format's header
        assert bytes_["fedota-int8"] < 0.3 * bytes_["fedota-none"]
        assert bytes_["fedota-topk:0.01+int8"] < bytes_["fedota-topk:0.01"] < bytes_["fedota-int8"]
        assert bytes_["fedota-topk:0.01+int8"] < bytes_["fedota-topk:0.05+int8"]
    lm = result["lm"]["arms"]
    assert lm["fedota-int8"]["uplink_vs_fp32_fedavg"] < lm["fedota-none"]["uplink_vs_fp32_fedavg"]


def test_no_compression_is_flowers_fedavg(result: dict[str, Any]) -> None:
    """Same devices, schedule and local training: the same model up to float rounding."""
    arms = result["digits"]["setups"]["layers:all"]["arms"]
    for a, b in zip(arms["fedota-none"]["rounds"], arms["flower-fedavg"]["rounds"], strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
    assert result["targets"]["fedavg_match_points"]["met"] is True
    lm = result["lm"]["arms"]
    for a, b in zip(lm["fedota-none"]["rounds"], lm["flower-fedavg"]["rounds"], strict=True):
        assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-3)


def test_dp_arms_report_their_epsilon(result: dict[str, Any], tiny: Any) -> None:
    arms = result["digits"]["setups"]["layers:all"]["arms"]
    eps = {d.name: arms[d.name]["dp"]["epsilon"] for d in tiny.digits_dp}
    assert all(e > 0 for e in eps.values())
    # More noise, less privacy spent.
    ordered = sorted(tiny.digits_dp, key=lambda d: d.noise_multiplier)
    assert eps[ordered[0].name] > eps[ordered[-1].name]


def test_identical_seeds_give_identical_results(bench: ModuleType, tiny: Any) -> None:
    digits = _module("_federated_digits")
    chosen = digits.setups(tiny)[:1]
    runs = [digits.run_seed(tiny, 0, chosen) for _ in range(2)]
    for run in runs:
        for arm in run["setups"]["layers:all"]["arms"].values():
            arm.pop("cpu_s")
    assert runs[0] == runs[1]


# ---------------------------------------------------------------------------------- memory


def test_memory_child_quantized_lora_holds_less_than_fp32_full(bench: ModuleType) -> None:
    memory = _module("_federated_memory")
    spec = {"lm": TINY_LM, "steps": 1, "batch": 2, "seq_len": 32, "lora_rank": 2}
    runs = {v: memory.child(v, spec) for v in memory.VARIANTS}
    full = runs["fp32-full"]
    assert full["steps"] == 1 and full["training_peak_bytes"] is not None
    for name in ("int8-lora", "int4-lora"):
        run = runs[name]
        assert run["trainable_parameters"] < full["trainable_parameters"] / 5
        assert run["model_tensor_bytes"] < full["model_tensor_bytes"]
        assert run["meter_peak_bytes"] < full["meter_peak_bytes"]


def test_memory_measure_runs_children_and_reports_ratios(bench: ModuleType) -> None:
    memory = _module("_federated_memory")
    out = memory.measure(TINY_LM, steps=1, batch=2, seq_len=32, lora_rank=2)
    assert set(out["variants"]) == set(memory.VARIANTS)
    assert all("error" not in v for v in out["variants"].values()), out["variants"]
    for ratios in out["ratio_vs_fp32_full"].values():
        assert 0 < ratios["meter_peak_bytes"] < 1
        assert ratios["training_peak_bytes"] is not None
