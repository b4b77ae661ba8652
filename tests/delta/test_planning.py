"""Budgets per mode, and the orchestrator keeping lossy choices within them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
from delta_helpers import adam_like

from fedota.delta import Tensor, apply, diff
from fedota.delta.codecs import base as registry
from fedota.delta.codecs import registered
from fedota.delta.codecs.base import Budget, Encoded
from fedota.delta.planning import fp16_budget, plan_budgets


def sq(a: Tensor, b: Tensor) -> float:
    d = a.to_float32().astype(np.float64) - b.to_float32()
    return float(d @ d)


def test_the_fp16_budget_is_the_cost_of_rounding_to_fp16(rng: np.random.Generator) -> None:
    values = rng.normal(0, 0.02, 1000).astype(np.float32)
    rounded = values.astype(np.float16).astype(np.float32)
    expected = float(((values.astype(np.float64) - rounded) ** 2).sum())
    budget = fp16_budget(Tensor("F32", (1000,), values))
    assert budget.max_error_sq == pytest.approx(expected, rel=1e-12)
    assert not budget.lossless


@pytest.mark.parametrize(
    "tensor",
    [
        Tensor("F16", (2,), np.array([1.0, 2.0], np.float16)),
        Tensor("BF16", (2,), np.array([0x3F80, 0x4000], np.uint16)),
        Tensor("F32", (2,), np.array([1.0, np.nan], np.float32)),
        Tensor("F32", (2,), np.array([1.0, np.inf], np.float32)),
        Tensor("F32", (2,), np.array([1.0, 1e6], np.float32)),  # fp16 overflows
        Tensor("F32", (2,), np.array([1.0, 0.5], np.float32)),  # exact in fp16: nothing to spend
        Tensor("I8", (2,), np.array([1, 2], np.int8)),
    ],
    ids=["f16", "bf16", "nan", "inf", "overflow", "exact", "int"],
)
def test_tensors_without_a_finite_fp16_cost_stay_lossless(tensor: Tensor) -> None:
    assert fp16_budget(tensor).lossless


def test_only_same_dtype_and_shape_float_tensors_get_a_budget(rng: np.random.Generator) -> None:
    old, new = adam_like(rng, (8, 8))
    base = {"w": old, "r": old, "i": Tensor("I32", (1,), np.ones(1, np.int32))}
    target = {
        "w": new,
        "r": Tensor("F32", (64,), new.data),
        "i": Tensor("I32", (1,), np.zeros(1, np.int32)),
        "n": new,
    }
    assert set(plan_budgets(base, target, max_error="fp16")) == {"w"}
    assert plan_budgets(base, target, lossless=True) == {}
    assert plan_budgets(base, target) == {}
    assert plan_budgets(base, target, max_error="fp16", lossy_codecs=False) == {}


class DropDelta:
    """A test lossy codec: releases the base itself (an empty payload), at the cost of the
    whole delta as error."""

    codec_id: ClassVar[int] = 250
    name: ClassVar[str] = "drop-delta"
    lossy: ClassVar[bool] = True

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        if base is None or budget.lossless or base.dtype not in ("F32", "F16", "BF16"):
            return None
        return Encoded(b"", base, sq(base, target))

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        assert base is not None
        return base


@pytest.fixture
def drop_delta(monkeypatch: pytest.MonkeyPatch) -> Iterator[DropDelta]:
    codec = DropDelta()
    monkeypatch.setitem(registry._REGISTRY, codec.codec_id, codec)
    yield codec


def test_fp16_mode_spends_each_tensor_budget_and_no_more(
    drop_delta: DropDelta, rng: np.random.Generator
) -> None:
    tiny_old, tiny_new = adam_like(rng, (32, 32), scale=1e-5)  # change below fp16 rounding
    big_old, big_new = adam_like(rng, (32, 32), scale=1e-1)  # change far above it
    base, target = {"tiny": tiny_old, "big": big_old}, {"tiny": tiny_new, "big": big_new}
    patch = diff(base, target, max_error="fp16", codecs=["raw", "bitdiff", "drop-delta"])
    chosen = {e.name: e.codec_id for e in patch.entries}
    assert chosen == {"tiny": DropDelta.codec_id, "big": 2}
    assert patch.target is not None
    assert sq(patch.target["tiny"], tiny_new) <= fp16_budget(tiny_new).max_error_sq
    assert patch.target["big"].data.tobytes() == big_new.data.tobytes()
    applied = apply(base, patch.to_bytes())
    assert applied["tiny"].data.tobytes() == tiny_old.data.tobytes()


def test_lossless_mode_never_offers_a_lossy_codec(
    drop_delta: DropDelta, rng: np.random.Generator
) -> None:
    old, new = adam_like(rng, (4, 4), scale=1e-6)
    patch = diff({"w": old}, {"w": new}, lossless=True, codecs=["drop-delta"])
    assert patch.entries[0].codec_id == 0  # raw: the fall-back, since nothing else applies


LOSSY = [c.name for c in registered() if c.lossy]


@pytest.mark.skipif(not LOSSY, reason="no lossy codec registered yet")
def test_real_lossy_codecs_meet_both_budgets(rng: np.random.Generator) -> None:
    base, target = {}, {}
    for index in range(4):
        old, new = adam_like(rng, (64, 64), scale=10.0 ** -(index + 1))
        base[f"w{index}"], target[f"w{index}"] = old, new
    fp16 = diff(base, target, max_error="fp16")
    assert fp16.target is not None
    for name in target:
        assert sq(fp16.target[name], target[name]) <= fp16_budget(target[name]).max_error_sq
    rel = diff(base, target, max_rel_error=0.01)
    assert rel.target is not None
    error = sum(sq(rel.target[n], target[n]) for n in target)
    energy = sum(sq(target[n], base[n]) for n in target)
    assert error <= 0.01**2 * energy * (1 + 1e-9)


def _rows_energy(base: Tensor, target: Tensor) -> np.ndarray:
    rows = base.shape[0] if len(base.shape) >= 2 else 1
    change = target.to_float32().astype(np.float64) - base.to_float32().astype(np.float64)
    return np.sum(change.reshape(rows, -1) ** 2, axis=1)


@pytest.mark.parametrize("mode", [{"max_error": "fp16"}, {"max_rel_error": 0.01}])
def test_budgets_carry_each_rows_change_so_the_codec_need_not_scan_again(
    mode: dict[str, object], rng: np.random.Generator
) -> None:
    pairs = {"matrix": adam_like(rng, (24, 16)), "vector": adam_like(rng, (40,))}
    base = {name: pair[0] for name, pair in pairs.items()}
    target = {name: pair[1] for name, pair in pairs.items()}
    budgets = plan_budgets(base, target, **mode)  # type: ignore[arg-type]
    for name in pairs:
        change = budgets[name].change
        assert change is not None
        expected = _rows_energy(base[name], target[name])
        assert change.energy == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mode", [{"max_error": "fp16"}, {"max_rel_error": 0.01}])
def test_a_subnormal_value_leaves_the_scan_to_the_codec(
    mode: dict[str, object], rng: np.random.Generator
) -> None:
    """The lossy codecs refuse subnormal values (their release could not reproduce them): a
    budget then carries no energy, the codec's own scan finds the value, and the tensor is
    carried exactly."""
    old, new = adam_like(rng, (8, 8))
    values = new.to_float32().copy()
    values[27] = np.float32(1e-40)
    base, target = {"w": old}, {"w": Tensor("F32", (8, 8), values)}
    budgets = plan_budgets(base, target, **mode)  # type: ignore[arg-type]
    assert all(b.change is None for b in budgets.values())
    patch = diff(base, target, **mode)  # type: ignore[arg-type]
    assert patch.target is not None
    assert np.array_equal(patch.target["w"].data, target["w"].data)
