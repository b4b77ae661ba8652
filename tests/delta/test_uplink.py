"""The uplink wire format: error bounds, size, and payloads that must fail cleanly."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedota.delta.uplink import (
    BLOCK,
    UplinkFormatError,
    UplinkLimits,
    UplinkSpec,
    decode,
    encode,
    fp32_bytes,
)

SPECS = ["none", "int8", "topk:0.01", "topk:0.05+int8"]


def _update(rng: np.random.Generator, n: int = 100_000) -> dict[str, np.ndarray]:
    """A 100k-parameter update: a matrix, a bias and a scalar-like tensor."""
    rows = 390
    matrix = rng.normal(0, 0.01, size=(rows, 256)).astype(np.float32)
    bias = rng.normal(0, 0.05, size=(n - rows * 256 - 1,)).astype(np.float32)
    return {"layers.0.weight": matrix, "layers.0.bias": bias, "scale": np.ones(1, np.float32)}


def _shapes(update: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: a.shape for name, a in update.items()}


@pytest.mark.parametrize("text", SPECS)
def test_decode_gives_exactly_what_encode_says_the_server_sees(
    rng: np.random.Generator, text: str
) -> None:
    update = _update(rng)
    sent = encode(update, UplinkSpec.parse(text))
    seen = decode(sent.payload, _shapes(update))
    assert sorted(seen) == sorted(update)
    for name in update:
        assert seen[name].dtype == np.float32 and seen[name].shape == update[name].shape
        np.testing.assert_array_equal(seen[name], sent.decoded[name])


def test_dense_fp32_is_lossless(rng: np.random.Generator) -> None:
    update = _update(rng)
    seen = decode(encode(update, UplinkSpec()).payload)
    for name in update:
        np.testing.assert_array_equal(seen[name], update[name])


def test_int8_error_is_within_half_a_step_of_each_block(rng: np.random.Generator) -> None:
    update = _update(rng)
    seen = decode(encode(update, UplinkSpec(int8=True)).payload)
    for name, values in update.items():
        flat = values.reshape(-1)
        padded = np.zeros(-(-flat.size // BLOCK) * BLOCK, np.float32)
        padded[: flat.size] = flat
        step = np.repeat(np.abs(padded.reshape(-1, BLOCK)).max(axis=1) / 127, BLOCK)[: flat.size]
        error = np.abs(seen[name].reshape(-1) - flat)
        assert np.all(error <= step / 2 * (1 + 1e-5) + 1e-12)


def test_topk_keeps_the_largest_values_exactly_and_zeroes_the_rest(
    rng: np.random.Generator,
) -> None:
    update = _update(rng)
    seen = decode(encode(update, UplinkSpec(topk=0.01)).payload)
    for name, values in update.items():
        flat, got = values.reshape(-1), seen[name].reshape(-1)
        kept = got != 0
        assert np.count_nonzero(kept) == max(1, int(np.ceil(0.01 * flat.size)))
        np.testing.assert_array_equal(got[kept], flat[kept])
        if np.any(~kept):
            assert np.abs(flat[~kept]).max() <= np.abs(flat[kept]).min()


@pytest.mark.parametrize(
    ("text", "ratio"), [("topk:0.01", 0.03), ("topk:0.01+int8", 0.03), ("int8", 0.26)]
)
def test_compressed_bytes_against_fp32_on_a_100k_update(
    rng: np.random.Generator, text: str, ratio: float
) -> None:
    update = _update(rng)
    payload = encode(update, UplinkSpec.parse(text)).payload
    assert sum(a.size for a in update.values()) == 100_000
    assert len(payload) <= ratio * fp32_bytes(update)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("none", UplinkSpec()),
        ("int8", UplinkSpec(int8=True)),
        ("topk:0.01", UplinkSpec(topk=0.01)),
        ("TOPK:0.01+int8", UplinkSpec(int8=True, topk=0.01)),
        ("int8+topk:0.5", UplinkSpec(int8=True, topk=0.5)),
    ],
)
def test_spec_parsing(text: str, spec: UplinkSpec) -> None:
    assert UplinkSpec.parse(text) == spec
    assert UplinkSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    ["", "int4", "topk", "topk:", "topk:0", "topk:1.5", "topk:nan", "int8+int8", "none+int8"],
)
def test_bad_spec_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        UplinkSpec.parse(text)


def test_non_finite_update_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode({"w": np.array([1.0, np.nan], np.float32)}, UplinkSpec(int8=True))


# ---- malformed payloads: an UplinkFormatError, never another exception or a large allocation


@pytest.fixture
def sample() -> tuple[bytes, dict[str, tuple[int, ...]]]:
    update = {
        "a": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30),
        "b": np.arange(7, dtype=np.float32),
    }
    return encode(update, UplinkSpec(int8=True, topk=0.1)).payload, _shapes(update)


def test_every_truncation_is_refused(sample: tuple[bytes, dict]) -> None:
    payload, shapes = sample
    for cut in range(len(payload)):
        with pytest.raises(UplinkFormatError):
            decode(payload[:cut], shapes)


def test_trailing_bytes_are_refused(sample: tuple[bytes, dict]) -> None:
    with pytest.raises(UplinkFormatError, match="after the last tensor"):
        decode(sample[0] + b"\0", sample[1])


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(0, b"XXXX", "magic"), (4, b"\x09", "version"), (5, struct.pack("<I", 3), "tensors")],
)
def test_bad_header_fields(
    sample: tuple[bytes, dict], offset: int, value: bytes, message: str
) -> None:
    payload = bytearray(sample[0])
    payload[offset : offset + len(value)] = value
    with pytest.raises(UplinkFormatError, match=message):
        decode(bytes(payload), sample[1])


def test_shapes_other_than_expected_are_refused(sample: tuple[bytes, dict]) -> None:
    with pytest.raises(UplinkFormatError, match="not expected"):
        decode(sample[0], {"a": (30, 20), "b": (7,)})
    with pytest.raises(UplinkFormatError, match="not expected"):
        decode(sample[0], {"a": (20, 30), "c": (7,)})


def _one_tensor(dims: tuple[int, ...], mode: int, body: bytes, name: bytes = b"w") -> bytes:
    head = struct.pack("<4sBI", b"FDUP", 1, 1) + struct.pack("<H", len(name)) + name
    shape = bytes([len(dims)]) + b"".join(struct.pack("<Q", d) for d in dims)
    return head + shape + struct.pack("<BQ", mode, len(body)) + body


@pytest.mark.parametrize(
    "payload",
    [
        _one_tensor((1 << 40,), 0, b""),  # a tensor past the element limit
        _one_tensor((1 << 20, 1 << 20), 0, b""),  # dims whose product is past it
        _one_tensor((10,), 0, b"\0" * 39),  # dense fp32 of the wrong length
        _one_tensor((10,), 1, b"\0" * 10),  # int8 without its scale
        _one_tensor((10,), 7, b""),  # unknown mode
        _one_tensor((10,), 2, struct.pack("<QQQ", 11, 0, 0)),  # more kept values than elements
        _one_tensor((10,), 2, struct.pack("<QQQ", 1, 1 << 40, 0)),  # huge varint section
        _one_tensor((10,), 2, struct.pack("<QQQ", 1, 1, 1 << 40)),  # frame past the end
        _one_tensor((10,), 0, b"", name=b"\xff\xfe"),  # a name that is not UTF-8
    ],
)
def test_hostile_headers_fail_cleanly_without_allocating(payload: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(UplinkFormatError):
            decode(payload, limits=UplinkLimits(max_elements=1 << 24))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_sparse_positions_past_the_tensor_are_refused() -> None:
    from fedota.delta.codecs import _zstd
    from fedota.delta.codecs.sparse import encode_varints

    varints = encode_varints(np.array([3, 20], dtype=np.uint64))  # positions 3 and 24 of 10
    frame = _zstd.compress(varints)
    body = struct.pack("<QQQ", 2, len(varints), len(frame)) + frame + b"\0" * 8
    with pytest.raises(UplinkFormatError, match="run past"):
        decode(_one_tensor((10,), 2, body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_random_bytes_and_splices_only_raise_format_errors(noise: bytes, at: int) -> None:
    base = encode({"w": np.linspace(-1, 1, 64, dtype=np.float32)}, UplinkSpec(int8=True, topk=0.2))
    payload = base.payload[:at] + noise + base.payload[at + len(noise) :]
    try:
        decoded = decode(payload, {"w": (64,)})
    except UplinkFormatError:
        return
    assert decoded["w"].shape == (64,)
