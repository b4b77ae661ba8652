"""The `mcu-int8` export: a bit-exact round trip, its size, and hostile bytes (truncated,
flipped, crafted with a valid checksum, fuzzed) refused with McuFormatError, never a crash
or a large allocation."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from fedota.ml import mcu
from fedota.ml.digits import DigitsData, train_digits

HEADER = 16  # magic 8, version, flags, layer count, pixel_max
LAYER_HEADER = 16  # in_dim, out_dim, activation, reserved 3, zero point, scale


@pytest.fixture(scope="module")
def digits() -> Iterator[tuple[mcu.McuModel, DigitsData]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only add contention
    try:
        model, data = train_digits(seed=0)
    finally:
        torch.set_num_threads(before)
    yield mcu.quantize(model, data.x_cal), data


@pytest.fixture(scope="module")
def blob(digits: tuple[mcu.McuModel, DigitsData]) -> bytes:
    return mcu.export(digits[0])


@pytest.fixture
def odd_model() -> mcu.McuModel:
    """7 -> 3 -> 2: weight sections of 21 and 6 bytes, so the export carries padding."""
    rng = np.random.default_rng(5)
    layers = []
    for width_in, width_out, activation in [(7, 3, mcu.Activation.RELU), (3, 2, 0)]:
        layers.append(
            mcu.McuLayer(
                weights=rng.integers(-127, 128, size=(width_out, width_in), dtype=np.int8),
                bias=rng.integers(-500, 500, size=width_out).astype(np.int32),
                multiplier=np.full(width_out, 1 << 30, dtype=np.int32),
                shift=np.full(width_out, -9, dtype=np.int32),
                output_zero_point=-128,
                output_scale=0.125,
                activation=mcu.Activation(activation),
            )
        )
    return mcu.McuModel(tuple(layers))


def _with_crc(body: bytes | bytearray) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def _patched(blob: bytes, offset: int, value: bytes) -> bytes:
    """`blob` with `value` written at `offset` and a checksum that matches again."""
    body = bytearray(blob[:-4])
    body[offset : offset + len(value)] = value
    return _with_crc(body)


def test_round_trip_is_bit_exact(digits: tuple[mcu.McuModel, DigitsData], blob: bytes) -> None:
    model, data = digits
    loaded = mcu.load(blob)
    assert mcu.export(loaded) == blob
    assert np.array_equal(mcu.predict(loaded, data.x_test), mcu.predict(model, data.x_test))
    inputs = mcu.quantize_input(model, data.x_test)
    assert np.array_equal(mcu.run(loaded, inputs), mcu.run(model, inputs))
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        for name in ("weights", "bias", "multiplier", "shift"):
            assert np.array_equal(getattr(ours, name), getattr(theirs, name))
        assert ours.output_scale == theirs.output_scale
        assert ours.output_zero_point == theirs.output_zero_point
        assert ours.activation is theirs.activation
    assert mcu.export(mcu.load(bytearray(blob))) == blob
    assert mcu.export(mcu.load(memoryview(blob))) == blob


def test_export_size(digits: tuple[mcu.McuModel, DigitsData], blob: bytes) -> None:
    model = digits[0]
    parameters = sum(layer.weights.size + layer.out_dim for layer in model.layers)
    fp32_bytes = 4 * parameters
    print(f"mcu-int8 export: {len(blob)} bytes; fp32 weights: {fp32_bytes} bytes")
    # 16 header + per layer (16 + 12 per channel + 1 per weight) + 4 CRC, no padding here.
    per_layer = [LAYER_HEADER + 12 * lay.out_dim + lay.weights.size for lay in model.layers]
    assert len(blob) == HEADER + sum(per_layer) + 4 == 7804
    assert len(blob) <= 0.3 * fp32_bytes


def test_padding_round_trips_and_aligns_sections(odd_model: mcu.McuModel) -> None:
    blob = mcu.export(odd_model)
    assert len(blob) == HEADER + (16 + 36 + 21 + 3) + (16 + 24 + 6 + 2) + 4
    assert len(blob) % 4 == 0
    assert mcu.export(mcu.load(blob)) == blob
    first_pad = HEADER + 16 + 36 + 21
    with pytest.raises(mcu.McuFormatError, match="padding bytes must be 0"):
        mcu.load(_patched(blob, first_pad, b"\x01"))


def test_every_truncation_is_refused(blob: bytes) -> None:
    for size in range(len(blob)):
        with pytest.raises(mcu.McuTruncated):
            mcu.load(blob[:size])


def test_every_single_byte_change_is_refused(blob: bytes) -> None:
    for offset in range(len(blob)):
        for flip in (0x01, 0x80):
            mutated = bytearray(blob)
            mutated[offset] ^= flip
            with pytest.raises(mcu.McuFormatError):
                mcu.load(bytes(mutated))


def test_a_flipped_weight_is_a_checksum_error(blob: bytes) -> None:
    mutated = bytearray(blob)
    mutated[len(blob) // 2] ^= 0x10
    with pytest.raises(mcu.McuChecksumError, match="checksum mismatch") as caught:
        mcu.load(bytes(mutated))
    assert caught.value.expected != caught.value.actual


def _layer0_field(name: str, blob: bytes) -> int:
    out_dim = struct.unpack_from("<H", blob, HEADER + 2)[0]
    bias = HEADER + LAYER_HEADER
    return {
        "in_dim": HEADER,
        "out_dim": HEADER + 2,
        "activation": HEADER + 4,
        "reserved": HEADER + 5,
        "zero_point": HEADER + 8,
        "scale": HEADER + 12,
        "bias": bias,
        "multiplier": bias + 4 * out_dim,
        "shift": bias + 8 * out_dim,
        "weights": bias + 12 * out_dim,
    }[name]


@pytest.mark.parametrize(
    ("offset", "value", "error", "message"),
    [
        (0, b"\x89PNG", mcu.McuFormatError, "bad magic"),
        (8, struct.pack("<H", 2), mcu.McuFormatError, "version 2"),
        (10, struct.pack("<H", 1), mcu.McuFormatError, "flags"),
        (12, struct.pack("<H", 0), mcu.McuFormatError, "at least one layer"),
        (12, struct.pack("<H", 4), mcu.McuTruncated, "layer 3 header"),
        (12, struct.pack("<H", 2), mcu.McuFormatError, "bytes follow the last layer"),
        (14, struct.pack("<H", 0), mcu.McuFormatError, "pixel_max"),
        (14, struct.pack("<H", 300), mcu.McuFormatError, "pixel_max"),
        ("in_dim", struct.pack("<H", 0), mcu.McuFormatError, ">= 1"),
        ("in_dim", struct.pack("<H", 65535), mcu.McuTruncated, "weights needs"),
        ("out_dim", struct.pack("<H", 65535), mcu.McuTruncated, "needs"),
        ("out_dim", struct.pack("<H", 32), mcu.McuFormatError, "layer 1: reserved"),
        ("activation", b"\x09", mcu.McuFormatError, "activation code 9"),
        ("reserved", b"\x01", mcu.McuFormatError, "reserved"),
        ("zero_point", struct.pack("<i", 200), mcu.McuFormatError, "-128..127"),
        ("zero_point", struct.pack("<i", -(1 << 31)), mcu.McuFormatError, "-128..127"),
        ("scale", struct.pack("<f", float("nan")), mcu.McuFormatError, "finite float"),
        ("scale", struct.pack("<f", -1.0), mcu.McuFormatError, "finite float"),
        ("bias", struct.pack("<i", (1 << 31) - 1), mcu.McuFormatError, "accumulator"),
        ("multiplier", struct.pack("<i", 5), mcu.McuFormatError, "multiplier is 0 or"),
        ("multiplier", struct.pack("<i", -(1 << 30)), mcu.McuFormatError, "multiplier is 0 or"),
        ("multiplier", struct.pack("<i", 0), mcu.McuFormatError, "zero multiplier"),
        ("shift", struct.pack("<i", 31), mcu.McuFormatError, "-31..30"),
        ("shift", struct.pack("<i", 1 << 30), mcu.McuFormatError, "-31..30"),
        ("shift", struct.pack("<i", 30), mcu.McuFormatError, "accumulator"),
        ("weights", b"\x80", mcu.McuFormatError, "found -128"),
    ],
)
def test_crafted_fields_with_a_valid_checksum_are_refused(
    blob: bytes, offset: int | str, value: bytes, error: type[Exception], message: str
) -> None:
    at = _layer0_field(offset, blob) if isinstance(offset, str) else offset
    with pytest.raises(error, match=message):
        mcu.load(_patched(blob, at, value))


def test_a_hostile_header_costs_no_allocation() -> None:
    header = struct.pack("<8sHHHH", mcu.MAGIC, 1, 0, 0xFFFF, 16)
    layer = struct.pack("<HHB3sif", 0xFFFF, 0xFFFF, 1, b"\0\0\0", -128, 0.5)
    hostile = _with_crc(header + layer + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(mcu.McuTruncated, match="needs 262140 bytes"):
            mcu.load(hostile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_exports_load_or_raise_format_errors(seed: int, odd_model: mcu.McuModel) -> None:
    """Random bytes rewritten (checksum fixed, so the structure checks are what is tested):
    either McuFormatError or a model the interpreter can run."""
    blob = mcu.export(odd_model)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 17, size=(4, 7))
    loaded = 0
    for _ in range(1500):
        body = bytearray(blob[:-4])
        for _ in range(int(rng.integers(1, 4))):
            body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
        data = _with_crc(body)
        if rng.random() < 0.2:  # also cut or extend
            data = data[: int(rng.integers(0, len(data)))] if rng.random() < 0.5 else data + b"\0"
        try:
            model = mcu.load(data)
        except mcu.McuFormatError:
            continue
        loaded += 1
        if model.input_dim == 7 and model.pixel_max >= 16:
            assert mcu.predict(model, pixels).shape == (4,)
    assert loaded > 0  # some mutations (e.g. in weights) leave a valid model


def test_load_and_export_refuse_the_wrong_types(blob: bytes) -> None:
    with pytest.raises(TypeError, match="takes bytes"):
        mcu.load(blob.hex())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="McuModel"):
        mcu.export(blob)  # type: ignore[arg-type]
