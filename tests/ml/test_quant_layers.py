"""Quantized layers and models: close to fp32, batch-independent, same on every kernel path."""

from __future__ import annotations

import pytest
import torch
from native_marks import needs_compiler
from torch import nn

from fedota.ml.quant import (
    Int4Linear,
    Int8Linear,
    QuantEmbedding,
    calibrate_input_scales,
    kernel_status,
    kernels,
    load_quantized_state,
    quantization_plan,
    quantize_model,
    weight_bytes,
)

VARIANTS = ["int8", "int4"]
# Relative output error bounds on random layers: int8 quantizes activations too.
BOUNDS = {"int8": 0.03, "int4": 0.15}


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Embedding(40, 64), nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64, bias=False)
    ).eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@needs_compiler
def test_the_native_kernels_build_here() -> None:
    assert kernel_status() == "native"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rows", [1, 7, 16, 65, 200])  # row kernels and the many-row paths
def test_quantized_linear_is_close_to_fp32(variant: str, rows: int) -> None:
    torch.manual_seed(rows)
    linear = nn.Linear(128, 96)
    x = torch.randn(rows, 128)
    layer = Int8Linear.from_float(linear) if variant == "int8" else Int4Linear.from_float(linear)
    with torch.inference_mode():
        assert _relative(layer(x), linear(x)) < BOUNDS[variant]


@pytest.mark.parametrize(
    ("variant", "rows"),
    # int8 on both its paths; int4 up to the row kernel's bound (decode batches), above which
    # the weight is decoded whole for a BLAS matmul.
    [("int8", 12), ("int8", 100), ("int4", kernels.ROW_KERNEL_MAX_ROWS)],
)
@needs_compiler  # the torch fall-back's BLAS matmul may round a row differently per batch
def test_a_row_gives_the_same_bits_alone_or_batched(variant: str, rows: int) -> None:
    model = quantize_model(_model(), variant)
    ids = torch.randint(0, 40, (rows, 1))
    with torch.inference_mode():
        batched = model(ids)
        alone = torch.cat([model(ids[i : i + 1]) for i in range(rows)])
    assert torch.equal(batched, alone)


@needs_compiler
def test_int4_on_bf16_operands_gives_the_same_bits_at_any_batch() -> None:
    if kernels.int4_operands() != "bf16":
        pytest.skip("no AVX512-BF16 here: int4 runs BLAS above ROW_KERNEL_MAX_ROWS rows")
    model = quantize_model(_model(), "int4")
    rows = kernels.ROW_KERNEL_CHUNK + 44  # prefill-sized, and over one kernel call's rows
    ids = torch.randint(0, 40, (rows, 1))
    with torch.inference_mode():
        batched = model(ids)
        alone = torch.cat([model(ids[i : i + 1]) for i in range(rows)])
    assert torch.equal(batched, alone)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rows", [3, 80])
def test_torch_fallback_agrees_with_the_kernels(
    variant: str, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = quantize_model(_model(), variant)
    ids = torch.randint(0, 40, (rows, 2))
    # int8's fall-back is weight-only (no activation rounding). int4's is the same maths, but
    # its row kernel multiplies bf16 operands where the CPU has AVX512-BF16 (then at any row
    # count; on fp32 operands it serves few rows and BLAS the rest).
    bf16 = kernels.int4_operands() == "bf16"
    with torch.inference_mode():
        native = model(ids)
        monkeypatch.setattr(kernels, "library", lambda: None)
        fallback = model(ids)
    bound = 0.02 if variant == "int8" else (0.01 if bf16 else 1e-5)
    assert _relative(fallback, native) < bound


@pytest.mark.parametrize("variant", VARIANTS)
def test_quantize_model_returns_a_new_module_and_leaves_the_input(variant: str) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_model(model, variant)
    assert quantized is not model
    assert all(isinstance(m, nn.Linear | nn.Embedding) for m in (model[0], model[1], model[3]))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    kinds = {type(m) for m in quantized.modules()}
    assert QuantEmbedding in kinds
    assert (Int8Linear if variant == "int8" else Int4Linear) in kinds


def test_int4_holds_an_eighth_of_the_bytes_plus_scales() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(512, 256, bias=False)
    layer = Int4Linear.from_float(linear, 32)
    assert layer.weight.dtype == torch.uint8
    assert layer.weight.nbytes * 8 == linear.weight.nbytes
    scales = layer.weight_scale.nbytes + layer.weight_offset.nbytes
    assert weight_bytes(layer) == linear.weight.nbytes // 8 + scales
    assert weight_bytes(Int8Linear.from_float(linear)) == linear.weight.nbytes // 4 + 256 * 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_round_trip_rebuilds_the_same_model(variant: str) -> None:
    model = _model()
    quantized = quantize_model(model, variant, keep_fp32=("3",))
    state = quantized.state_dict()
    rebuilt = load_quantized_state(_model(seed=5), state)
    ids = torch.randint(0, 40, (4, 3))
    with torch.inference_mode():
        assert torch.equal(rebuilt(ids), quantized(ids))
    assert isinstance(rebuilt[3], nn.Linear)


def test_load_quantized_state_refuses_tensors_that_do_not_fit() -> None:
    state = quantize_model(_model(), "int4").state_dict()
    state["1.weight_scale"] = state["1.weight_scale"][:, :1]
    with pytest.raises(ValueError, match="do not fit"):
        load_quantized_state(_model(), state)
    partial = quantize_model(_model(), "int8").state_dict()
    del partial["1.bias"]
    with pytest.raises(ValueError, match=r"missing 1\.bias"):
        load_quantized_state(_model(), partial)


def test_plan_keeps_matched_and_too_lossy_layers_fp32() -> None:
    model = _model()
    plan = quantization_plan(model, "int4", keep_fp32=("0",), max_relative_error=0.0)
    assert plan["0"].kind == "fp32" and "keep_fp32" in plan["0"].reason
    assert plan["1"].kind == "fp32" and "exceeds" in plan["1"].reason
    loose = quantization_plan(model, "int4", max_relative_error=1.0)
    assert {p.kind for p in loose.values()} == {"int4"}
    assert all(0 < p.relative_error < 0.2 for p in loose.values())
    quantized = quantize_model(model, "int4", max_relative_error=0.0)
    assert not any(isinstance(m, Int4Linear | QuantEmbedding) for m in quantized.modules())


def test_int4_keeps_layers_whose_width_does_not_split_into_groups() -> None:
    model = nn.Sequential(nn.Linear(48, 64), nn.Linear(64, 8))
    plan = quantization_plan(model, "int4", group_size=32)
    assert plan["0"].kind == "fp32" and "multiple of 32" in plan["0"].reason
    assert plan["1"].kind == "int4"


@pytest.mark.parametrize(
    ("variant", "group", "message"),
    [("int2", 32, "variant must be one of"), ("int4", 48, "group size must be one of")],
)
def test_bad_variant_or_group_is_refused(variant: str, group: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quantize_model(_model(), variant, group_size=group)  # type: ignore[arg-type]


@needs_compiler  # without the kernels int8 is weight-only: no activation error to cut
@pytest.mark.parametrize("seed", range(3))
def test_calibrated_input_scales_cut_the_error_of_outlier_channels(seed: int) -> None:
    torch.manual_seed(seed)
    linear = nn.Linear(64, 32)
    x = torch.randn(50, 64)
    x[:, 7] *= 30.0  # an outlier channel, as transformer activations have
    scales = calibrate_input_scales(nn.Sequential(linear), lambda m: m(x), alpha=0.5)["0"]
    assert scales.shape == (64,) and scales[7] == scales.min()
    with torch.inference_mode():
        for layer in (Int8Linear.from_float, Int4Linear.from_float):
            plain = _relative(layer(linear)(x), linear(x))
            smooth = _relative(layer(linear, input_scale=scales)(x), linear(x))
            assert smooth < plain / 1.5


def test_calibration_leaves_the_model_as_it_was() -> None:
    model = _model()
    calibrate_input_scales(model, lambda m: m(torch.randint(0, 40, (2, 3))))
    assert not model[1]._forward_pre_hooks
    with pytest.raises(ValueError, match="alpha"):
        calibrate_input_scales(model, lambda m: None, alpha=1.5)
    with pytest.raises(ValueError, match="no Linear"):
        calibrate_input_scales(model, lambda m: None)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_flow_through_frozen_quantized_layers(variant: str) -> None:
    torch.manual_seed(4)
    linear = nn.Linear(64, 32)
    layer = Int8Linear.from_float(linear) if variant == "int8" else Int4Linear.from_float(linear)
    x = torch.randn(3, 64, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in layer.parameters())
