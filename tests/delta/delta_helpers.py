"""What the delta tests share: hypothesis strategies for tensors and models, bit-level equality,
and small realistic models (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from hypothesis import strategies as st

from fedota.delta import PatchFormatError, Tensor
from fedota.delta.codecs.base import Codec
from fedota.delta.tensor import STORAGE, from_float32, storage_words

# Every dtype the issue names, plus I32 (integer planes wider than a byte).
DTYPES = ("F32", "F16", "BF16", "I8", "U8", "I4", "I32")
Model = dict[str, Tensor]


def tensor_from_bytes(dtype: str, shape: tuple[int, ...], raw: bytes) -> Tensor:
    """A tensor whose storage is exactly `raw` (any bit pattern: NaN, Inf, -0.0 included)."""
    storage = STORAGE[dtype]
    return Tensor(dtype, shape, np.frombuffer(raw, storage).copy())


def same_bits(a: Tensor, b: Tensor) -> bool:
    return (a.dtype, a.shape) == (b.dtype, b.shape) and a.data.tobytes() == b.data.tobytes()


def assert_models_equal(actual: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """Same names, dtypes, shapes and bits."""
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert same_bits(actual[name], expected[name]), f"{name} differs"


shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)


@st.composite
def tensors(
    draw: st.DrawFn, dtype: str | None = None, shape: tuple[int, ...] | None = None
) -> Tensor:
    """A tensor of arbitrary bits; floats are often NaN/Inf/-0.0 or ordinary values."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    shape = draw(shapes) if shape is None else shape
    size = storage_words(dtype, shape) * STORAGE[dtype].itemsize
    raw = bytearray(draw(st.binary(min_size=size, max_size=size)))
    tensor = tensor_from_bytes(dtype, shape, bytes(raw))
    if dtype in ("F32", "F16") and tensor.data.size and draw(st.booleans()):
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-3], dtype=STORAGE[dtype])
        picks = draw(
            st.lists(st.integers(0, 5), min_size=tensor.data.size, max_size=tensor.data.size)
        )
        values = np.array(
            [specials[p] if p < 4 else np.float32(i * 0.01) for i, p in enumerate(picks)],
            dtype=STORAGE[dtype],
        )
        tensor = Tensor(dtype, shape, values)
    return tensor


@st.composite
def changed(draw: st.DrawFn, base: Tensor) -> Tensor:
    """A target for `base` of the same dtype and shape: equal, a few words changed, every word
    nudged by a few units (a fine-tune), or unrelated bits."""
    kind = draw(st.sampled_from(["same", "few", "nudge", "random"]))
    words = base.data.view(f"<u{base.data.itemsize}").copy()
    if kind == "few" and words.size:
        for index in draw(st.lists(st.integers(0, words.size - 1), max_size=3)):
            words[index] ^= np.array(draw(st.integers(1, 255)), dtype=words.dtype)
    elif kind == "nudge" and words.size:
        steps = draw(st.lists(st.integers(-3, 3), min_size=words.size, max_size=words.size))
        words = words + np.array(steps, dtype=np.int64).astype(words.dtype)
    elif kind == "random":
        return draw(tensors(base.dtype, base.shape))
    return Tensor(base.dtype, base.shape, words.view(STORAGE[base.dtype]))


@st.composite
def model_pairs(draw: st.DrawFn) -> tuple[Model, Model]:
    """(base, target): shared tensors changed in place, plus added, removed, reshaped and
    dtype-changed ones."""
    names = draw(st.lists(st.text("abcxyz._é", min_size=0, max_size=6), max_size=6, unique=True))
    base: Model = {}
    target: Model = {}
    for name in names:
        role = draw(st.sampled_from(["changed", "changed", "added", "removed", "reshaped"]))
        old = draw(tensors())
        if role == "added":
            target[name] = old
        elif role == "removed":
            base[name] = old
        elif role == "reshaped":
            base[name] = old
            target[name] = draw(tensors())
        else:
            base[name] = old
            target[name] = draw(changed(old))
    return base, target


def adam_like(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """A fp32 weight N(0, 0.02) and its fine-tuned version (delta ~ N(0, scale * |w|))."""
    base = rng.normal(0, 0.02, shape).astype(np.float32).reshape(-1)
    target = (base + rng.normal(0, 1, base.size) * scale * np.abs(base)).astype(np.float32)
    return Tensor("F32", shape, base), Tensor("F32", shape, target)


def as_dtype(dtype: str, values: np.ndarray) -> Tensor:
    """float32 values rounded to a float dtype's storage."""
    return Tensor(dtype, values.shape, from_float32(dtype, values.reshape(-1)))


def low_rank_fine_tune(
    rng: np.random.Generator, rows: int = 192, cols: int = 128, dtype: str = "F32"
) -> tuple[Tensor, Tensor]:
    """A weight and an Adam-like update of it: ~1e-3 relative, a per-row scale, and a rank-6
    component holding 80% of the delta's energy (gradients are sums of outer products; on a
    real MiniLM fine-tune the top 32 singular values of a 384x384 delta hold 85%)."""
    base = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    low = rng.normal(size=(rows, 6)) @ rng.normal(size=(6, cols)) / math.sqrt(6)
    delta = (2 * low + rng.normal(size=(rows, cols))) * np.exp(rng.normal(0, 0.3, (rows, 1)))
    target = (base + 3e-5 * delta).astype(np.float32)
    return as_dtype(dtype, base), as_dtype(dtype, target)


def decode_or_format_error(codec: Codec, base: Tensor, payload: bytes) -> None:
    """Decoding a malformed F32 payload either raises PatchFormatError or gives a well-formed
    tensor (a mutation may land on a value, not on structure); nothing else may escape."""
    try:
        result = codec.decode(base, "F32", base.shape, payload)
    except PatchFormatError:
        return
    assert result.dtype == "F32" and result.shape == base.shape


def mutation(payload: bytes, data: st.DataObject) -> bytes:
    """`payload` with one to four bytes overwritten at positions hypothesis draws."""
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    return bytes(mutated)


def assert_truncations_refused(codec: Codec, base: Tensor, payload: bytes) -> None:
    """Every prefix of an F32 payload (about a hundred, evenly spread) is a PatchFormatError."""
    for cut in range(0, len(payload), max(1, len(payload) // 97)):
        try:
            codec.decode(base, "F32", base.shape, payload[:cut])
        except PatchFormatError:
            continue
        raise AssertionError(f"{codec.name} decoded a payload cut to {cut} of {len(payload)} bytes")
