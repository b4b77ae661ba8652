"""The weight codecs: error bounds per element, exact packing, argument checks."""

from __future__ import annotations

import pytest
import torch

from fedota.ml.quant import (
    Int4Weight,
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)


def _weights(seed: int, shape: tuple[int, int], outliers: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=generator) * 0.05
    if outliers:
        w[:, 3] *= 40.0  # one hot input channel, as real layers have
        w[0] = 0.0  # an all-zero row must not divide by zero
    return w


SHAPES = [(8, 64), (33, 128), (4, 256)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("outliers", [False, True])
def test_int8_error_is_at_most_half_a_step(shape: tuple[int, int], outliers: bool) -> None:
    w = _weights(0, shape, outliers)
    q = quantize_int8(w)
    assert q.q.dtype == torch.int8 and q.scale.shape == (shape[0],)
    error = (dequantize_int8(q.q, q.scale) - w).abs()
    assert (error <= q.scale[:, None] / 2 * (1 + 1e-5)).all()
    assert int(q.q.abs().max()) <= 127


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group_size", [32, 64])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("outliers", [False, True])
def test_int4_error_is_at_most_half_a_step(
    shape: tuple[int, int], group_size: int, symmetric: bool, outliers: bool
) -> None:
    w = _weights(1, shape, outliers)
    q = quantize_int4(w, group_size, symmetric=symmetric)
    rows, width = shape
    assert q.packed.dtype == torch.uint8 and q.packed.shape == (rows, width // 2)
    assert q.scale.shape == (rows, width // group_size)
    assert (q.offset is None) == symmetric
    step = q.scale.repeat_interleave(group_size, dim=1)
    error = (dequantize_int4(q) - w).abs()
    assert (error <= step / 2 * (1 + 1e-4) + 1e-7).all()


def test_asymmetric_int4_beats_symmetric_on_skewed_groups() -> None:
    w = torch.rand(16, 64) * 0.1 + 0.05  # all positive: symmetric wastes half its levels
    sym = (dequantize_int4(quantize_int4(w, 32, symmetric=True)) - w).norm()
    asym = (dequantize_int4(quantize_int4(w, 32)) - w).norm()
    assert asym < sym / 1.5


def test_pack_unpack_every_value_exactly() -> None:
    values = torch.arange(-8, 8, dtype=torch.int8)
    pairs = torch.cartesian_prod(values, values).reshape(1, -1)
    packed = pack_int4(pairs)
    assert packed.numel() == pairs.numel() // 2
    assert torch.equal(unpack_int4(packed), pairs)


def test_packing_is_low_nibble_first() -> None:
    packed = pack_int4(torch.tensor([[1, -2, 7, -8]], dtype=torch.int8))
    assert packed.tolist() == [[0xE1, 0x87]]


@pytest.mark.parametrize("seed", range(3))
def test_pack_round_trips_random_tensors(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(-8, 8, (5, 3, 10), generator=generator, dtype=torch.int8)
    assert torch.equal(unpack_int4(pack_int4(values)), values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (torch.tensor([[1, 2, 3]], dtype=torch.int8), "even last dimension"),
        (torch.tensor([[8, 0]], dtype=torch.int8), r"\[-8, 7\]"),
        (torch.tensor([[-9, 0]], dtype=torch.int32), r"\[-8, 7\]"),
        (torch.tensor([[0.0, 1.0]]), "integer"),
    ],
)
def test_pack_rejects_what_int4_cannot_hold(values: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack_int4(values)


def test_unpack_rejects_non_bytes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        unpack_int4(torch.zeros(2, 2, dtype=torch.int8))


@pytest.mark.parametrize(
    ("weight", "group", "message"),
    [
        (torch.zeros(4, 48), 32, "multiple of the group size"),
        (torch.zeros(4, 64), 16, "group size must be one of"),
        (torch.zeros(64), 32, "2-D float"),
        (torch.zeros(4, 64, dtype=torch.int8), 32, "2-D float"),
    ],
)
def test_int4_rejects_bad_shapes(weight: torch.Tensor, group: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quantize_int4(weight, group)


def test_int4_weight_reports_its_logical_shape() -> None:
    q = quantize_int4(torch.randn(3, 64), 32)
    assert isinstance(q, Int4Weight) and q.shape == (3, 64)
