"""Property: apply(base, diff(base, target)) is diff's released target bit for bit, for every
dtype, shape (0-d and empty included), added/removed/reshaped tensor, special float and codec;
and a lossless diff releases the requested target itself."""

from __future__ import annotations

import numpy as np
import pytest
from delta_helpers import DTYPES, Model, assert_models_equal, changed, model_pairs, tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedota.delta import Patch, Tensor, apply, diff, model_hash
from fedota.delta.codecs import registered

LOSSLESS = [c.name for c in registered() if not c.lossy]
LOSSY = [c.name for c in registered() if c.lossy]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def roundtrip(base: Model, target: Model, **options: object) -> Patch:
    """Diff, serialize, parse, apply: the applied model must be the released one."""
    patch = diff(base, target, **options)
    assert patch.target is not None
    applied = apply(base, Patch.from_bytes(patch.to_bytes()))
    assert_models_equal(applied, patch.target)
    assert model_hash(applied) == patch.target_hash == model_hash(patch.target)
    assert patch.base_hash == model_hash(base)
    return patch


@pytest.mark.parametrize("codec", [None, *LOSSLESS])
@PROPERTY
@given(pair=model_pairs())
def test_lossless_releases_the_target_itself(codec: str | None, pair: tuple[Model, Model]) -> None:
    base, target = pair
    patch = roundtrip(base, target, lossless=True, codecs=None if codec is None else [codec])
    assert patch.target is not None
    assert_models_equal(patch.target, target)


@pytest.mark.parametrize("codec", [None, *LOSSLESS, *LOSSY])
@pytest.mark.parametrize("mode", [{"max_error": "fp16"}, {"max_rel_error": 0.05}])
@PROPERTY
@given(pair=model_pairs())
def test_lossy_modes_release_what_apply_computes(
    codec: str | None, mode: dict[str, object], pair: tuple[Model, Model]
) -> None:
    if "max_rel_error" in mode and not LOSSY:
        pytest.skip("no lossy codec registered yet")
    base, target = pair
    roundtrip(base, target, codecs=None if codec is None else [codec], **mode)


@pytest.mark.parametrize("dtype", DTYPES)
@PROPERTY
@given(data=st.data())
def test_every_dtype_and_codec_on_one_tensor(dtype: str, data: st.DataObject) -> None:
    old = data.draw(tensors(dtype))
    new = data.draw(changed(old))
    for codec in LOSSLESS:
        patch = roundtrip({"w": old}, {"w": new}, lossless=True, codecs=[codec])
        assert patch.target is not None
        assert_models_equal(patch.target, {"w": new})


def test_each_codec_is_chosen_where_it_wins(rng: np.random.Generator) -> None:
    dense_old = rng.normal(0, 0.02, 4096).astype(np.float32)
    dense_new = (dense_old * np.float32(1.001)).astype(np.float32)
    sparse_new = dense_old.copy()
    sparse_new[[5, 700, 3000]] += np.float32(0.5)
    base = {
        "dense": Tensor("F32", (64, 64), dense_old),
        "sparse": Tensor("F32", (64, 64), dense_old),
        "zeroed": Tensor("F32", (64, 64), dense_old),
    }
    target = {
        "dense": Tensor("F32", (64, 64), dense_new),
        "sparse": Tensor("F32", (64, 64), sparse_new),
        "zeroed": Tensor("F32", (64, 64), np.zeros(4096, np.float32)),
        "noise": Tensor("F32", (8,), rng.normal(size=8).astype(np.float32)),
    }
    patch = roundtrip(base, target, lossless=True, codecs=["raw", "zstd", "bitdiff", "sparse"])
    chosen = {e.name: e.codec_id for e in patch.entries}
    assert chosen == {"dense": 2, "sparse": 3, "zeroed": 1, "noise": 0}


@PROPERTY
@given(pair=model_pairs())
def test_a_patch_is_never_larger_than_the_target_shipped_raw(pair: tuple[Model, Model]) -> None:
    base, target = pair
    patch = diff(base, target, lossless=True)
    for entry, payload in zip(patch.entries, patch.payloads, strict=True):
        if entry.has_payload:
            assert len(payload) <= target[entry.name].nbytes


def test_unchanged_and_removed_tensors_carry_no_payload(rng: np.random.Generator) -> None:
    same = Tensor("BF16", (3,), np.array([1, 2, 3], np.uint16))
    base = {"same": same, "gone": Tensor("I8", (2,), np.array([1, -1], np.int8))}
    patch = roundtrip(base, {"same": same}, lossless=True)
    ops = {e.name: (e.op.name, e.payload_len) for e in patch.entries}
    assert ops == {"gone": ("REMOVED", 0), "same": ("UNCHANGED", 0)}


def test_nan_payloads_and_negative_zero_survive_bit_for_bit() -> None:
    quiet, signalling, payload = 0x7FC00000, 0x7F800001, 0xFFC01234
    old = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    new = np.array([quiet, signalling, payload, 0x80000000], np.uint32).view(np.float32)
    for codec in LOSSLESS:
        patch = roundtrip(
            {"w": Tensor("F32", (4,), old)}, {"w": Tensor("F32", (4,), new)}, codecs=[codec]
        )
        assert patch.target is not None
        assert patch.target["w"].data.view(np.uint32).tolist() == new.view(np.uint32).tolist()


def test_modes_are_exclusive_and_checked() -> None:
    model = {"w": Tensor("F32", (1,), np.ones(1, np.float32))}
    with pytest.raises(ValueError, match="one of"):
        diff(model, model, lossless=True, max_error="fp16")
    with pytest.raises(ValueError, match="fp16"):
        diff(model, model, max_error="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        diff(model, model, max_rel_error=-1.0)
    with pytest.raises(ValueError, match="unknown codec"):
        diff(model, model, codecs=["nope"])
