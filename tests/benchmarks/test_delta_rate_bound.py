"""benchmarks/_delta_bound.py: the Shannon lower bound beside the fp16 patch's residual bits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from bench_support import benchmark_module

from fedota.delta import diff


@pytest.fixture(scope="module")
def bound() -> Iterator[ModuleType]:
    with benchmark_module("_delta_bound.py") as module:
        yield module


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[dict, dict]]:
    # A synthetic dense fine-tune whose 128-wide matrices get low-rank factors at fp16 budgets.
    with benchmark_module("_delta_data.py") as data:
        plan = data.Plan(quick=True, vocab=256, hidden=128, layers=1, positions=64, adam_steps=10)
        _, base, target = data.synthetic_datasets(plan)["dense_adamw"]
        yield base, target


def test_gaussian_residual_bound_is_half_log_of_the_variance_ratio(bound: ModuleType) -> None:
    # A Gaussian meets its Shannon lower bound: R(D) = log2(sigma^2 / D) / 2, 2 bits at D = s^2/16.
    residual = np.random.default_rng(1).normal(0.0, 3e-4, 400_000)
    levels = np.zeros(residual.size)
    bits = bound._bound_bits(residual, levels, (3e-4) ** 2 / 16) / residual.size
    assert math.isclose(bits, 2.0, abs_tol=0.02)


def test_contexts_condition_the_bound(bound: ModuleType) -> None:
    # Two halves of different spread: telling them apart by the prediction's level lowers it.
    rng = np.random.default_rng(2)
    wide, narrow = rng.normal(0, 4e-4, 200_000), rng.normal(0, 1e-4, 200_000)
    residual = np.concatenate([wide, narrow])
    budget = (5e-5) ** 2
    apart = np.concatenate([np.full(wide.size, 3.0), np.zeros(narrow.size)])
    together = bound._bound_bits(residual, np.zeros(residual.size), budget)
    expected = (math.log2(4e-4 / 5e-5) + math.log2(1e-4 / 5e-5)) / 2  # 3 and 1 bits, halved
    conditioned = bound._bound_bits(residual, apart, budget) / residual.size
    assert math.isclose(conditioned, expected, abs_tol=0.02)
    assert together / residual.size > conditioned + 0.1


def test_fp16_patch_codes_no_residual_under_its_bound(
    bound: ModuleType, pair: tuple[dict, dict]
) -> None:
    base, target = pair
    patch = diff(base, target, max_error="fp16").to_bytes()
    figures = bound.rate_bound(base, target, patch)
    assert figures["tensors"] >= 1
    bits = figures["bits_per_weight"]
    assert math.isclose(bits["coded"], bits["factors_and_header"] + bits["residual"], rel_tol=1e-3)
    assert 0 < bits["residual_bound"] < bits["residual"]
    total = sum(t.data.nbytes for t in target.values())
    assert figures["ratio"] == round(len(patch) / total, 6)
    assert 0 < figures["ratio_at_bound"] < figures["ratio"]


def test_a_patch_without_factors_is_skipped(bound: ModuleType, pair: tuple[dict, dict]) -> None:
    base, target = pair
    patch = diff(base, target).to_bytes()  # lossless: no lossy codec, no factors
    assert "skipped" in bound.rate_bound(base, target, patch)
