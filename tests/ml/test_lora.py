"""LoRA on fedota's quantized layers: it learns, the base stays frozen int8/int4, merging keeps
the outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fedota.ml.digits import DigitsData, DigitsMLP, accuracy, load_digits_data, train_digits
from fedota.ml.finetune import DigitsTask, FinetuneConfig, finetune
from fedota.ml.lora import (
    LayerSelection,
    LoRAConfig,
    LoRALinear,
    attach_lora,
    describe_trainable,
    frozen_linear,
    load_trainable_state,
    make_trainable,
    merge_lora,
    parse_trainable,
    trainable_state,
)
from fedota.ml.quant import Int4Linear, Int8Linear, quantize_model


@pytest.fixture(scope="module")
def digits() -> DigitsData:
    return load_digits_data(seed=0)


@pytest.fixture(scope="module")
def weak_base(digits: DigitsData) -> DigitsMLP:
    """A digits MLP after one epoch: clearly short of what the data allows."""
    torch.set_num_threads(1)
    model, _ = train_digits(seed=0, epochs=1, data=digits)
    return model


def _shard(digits: DigitsData, size: int = 400) -> list[tuple[np.ndarray, int]]:
    return list(zip(digits.x_train[:size], digits.y_train[:size], strict=True))


def test_lora_on_int8_digits_improves_held_out_accuracy(weak_base, digits) -> None:
    model = quantize_model(weak_base, "int8")
    before = accuracy(model, digits.x_test, digits.y_test)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    attach_lora(model, LoRAConfig(rank=4, alpha=8))
    finetune(model, _shard(digits), DigitsTask(), FinetuneConfig(epochs=5, learning_rate=1e-2))
    after = accuracy(model, digits.x_test, digits.y_test)
    assert after >= before + 0.03, (before, after)
    # The base is untouched: still int8, bit for bit, and not trainable.
    for name, layer in model.named_modules():
        if isinstance(layer, LoRALinear):
            base = layer.base
            assert isinstance(base, Int8Linear) and base.weight.dtype == torch.int8
            assert torch.equal(base.weight, frozen[f"{name}.weight"])
            assert torch.equal(base.weight_scale, frozen[f"{name}.weight_scale"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_fresh_adapters_change_nothing_and_merging_keeps_the_outputs(
    weak_base, digits, variant: str
) -> None:
    model = copy.deepcopy(weak_base) if variant == "fp32" else quantize_model(weak_base, variant)
    x = torch.tensor(digits.x_test, dtype=torch.float32)
    with torch.no_grad():
        plain = model(x)
    attach_lora(model, LoRAConfig(rank=3))
    with torch.no_grad():
        assert torch.equal(model(x), plain)  # B starts at zero
        for layer in model.modules():
            if isinstance(layer, LoRALinear):
                layer.lora_b.normal_(0, 0.1)
        adapted = model(x)
        merged = merge_lora(model)(x)
    assert not any(isinstance(m, LoRALinear) for m in merge_lora(model).modules())
    if variant == "fp32":
        torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
    else:
        # The quantized base's kernels round activations too; the merged fp32 layer does not.
        scale = adapted.abs().max()
        assert (merged - adapted).abs().max() <= 0.02 * scale
        agree = (merged.argmax(1) == adapted.argmax(1)).float().mean()
        assert agree >= 0.98


@pytest.mark.parametrize("layer_type", [Int8Linear, Int4Linear])
def test_gradients_through_a_frozen_quantized_layer_match_its_dequantized_weight(
    layer_type,
) -> None:
    torch.manual_seed(0)
    dense = nn.Linear(64, 32)
    layer = layer_type.from_float(dense)
    x = torch.randn(5, 64, requires_grad=True)
    frozen_linear(layer, x).square().sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        layer(reference).square().sum().backward()  # fedota's weight-only gradient path
    torch.testing.assert_close(x.grad, reference.grad, rtol=0.05, atol=0.05)


def test_adapters_start_alike_on_the_coordinators_fp32_and_the_devices_int8_model(
    weak_base,
) -> None:
    server, device = copy.deepcopy(weak_base), quantize_model(weak_base, "int8")
    config = LoRAConfig(rank=4, seed=5)
    attach_lora(server, config)
    attach_lora(device, config)
    a, b = trainable_state(server), trainable_state(device)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = copy.deepcopy(weak_base)
    attach_lora(other, LoRAConfig(rank=4, seed=6))
    assert not torch.equal(trainable_state(other)["layers.0.lora_a"], a["layers.0.lora_a"])


def test_layer_selection_trains_chosen_layers_in_fp32(weak_base, digits) -> None:
    model = quantize_model(weak_base, "int8")
    names = make_trainable(model, LayerSelection(("layers.2",)))
    assert names == ["layers.2.weight", "layers.2.bias"]
    assert isinstance(model.layers[0], Int8Linear) and isinstance(model.layers[2], nn.Linear)
    result = finetune(model, _shard(digits, 100), DigitsTask(), FinetuneConfig())
    assert set(result.update) == set(names)


def test_trainable_state_loads_back_and_refuses_misfits(weak_base) -> None:
    model = copy.deepcopy(weak_base)
    attach_lora(model, LoRAConfig(rank=2))
    state = {k: np.ones(tuple(v.shape), np.float32) for k, v in trainable_state(model).items()}
    load_trainable_state(model, state)
    assert torch.equal(model.layers[1].lora_b, torch.ones(32, 2))
    with pytest.raises(ValueError, match="mismatch"):
        load_trainable_state(model, {**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        load_trainable_state(model, {**state, "layers.1.lora_b": np.zeros((2, 32))})


def test_misuse_is_refused(weak_base) -> None:
    model = copy.deepcopy(weak_base)
    with pytest.raises(ValueError, match="no linear layer"):
        attach_lora(model, LoRAConfig(targets=("decoder.*",)))
    attach_lora(model, LoRAConfig())
    with pytest.raises(ValueError, match="already"):
        attach_lora(model, LoRAConfig())
    with pytest.raises(ValueError):
        LoRAConfig(rank=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lora:4", LoRAConfig(rank=4, alpha=8.0)),
        ("lora:16", LoRAConfig(rank=16, alpha=32.0)),
        ("layers:head", LayerSelection(("head",))),
        ("layers:blocks.1.*, head", LayerSelection(("blocks.1.*", "head"))),
    ],
)
def test_an_operators_trainable_choice_parses_and_reads_back(text, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_trainable(text) == expected
    assert parse_trainable(describe_trainable(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lora:0", "rank of at least 1"),
        ("lora:x", "rank of at least 1"),
        ("layers:", "comma-separated patterns"),
        ("layers:a,,b", "comma-separated patterns"),
        ("adapters", "lora:RANK or layers:PATTERN"),
    ],
)
def test_a_bad_trainable_choice_says_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trainable(text)
