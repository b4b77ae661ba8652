"""The local train loop: digits and the byte LM, FedProx, measured memory, clear failures."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedota.ml.digits import DigitsData, DigitsMLP, load_digits_data, train_digits
from fedota.ml.finetune import (
    DigitsTask,
    FinetuneConfig,
    LanguageTask,
    NoExamples,
    NoTrainableParameters,
    TrainingDiverged,
    evaluate,
    finetune,
)
from fedota.ml.lm import ByteLM, generate_corpus
from fedota.ml.lora import LoRAConfig, attach_lora, trainable_state
from fedota.ml.quant import quantize_model


@pytest.fixture(scope="module")
def digits() -> DigitsData:
    return load_digits_data(seed=0)


@pytest.fixture(scope="module")
def base(digits: DigitsData) -> DigitsMLP:
    torch.set_num_threads(1)
    return train_digits(seed=0, epochs=1, data=digits)[0]


def _pairs(digits: DigitsData, size: int) -> list[tuple[np.ndarray, int]]:
    return list(zip(digits.x_train[:size], digits.y_train[:size], strict=True))


def _with_lora(model: torch.nn.Module, variant: str = "int8") -> torch.nn.Module:
    model = quantize_model(model, variant) if variant != "fp32" else copy.deepcopy(model)
    attach_lora(model, LoRAConfig(rank=4))
    return model


def test_update_is_the_change_of_the_trainable_tensors(base, digits) -> None:
    model = _with_lora(base)
    start = {k: v.numpy().copy() for k, v in trainable_state(model).items()}
    result = finetune(model, _pairs(digits, 200), DigitsTask(), FinetuneConfig(epochs=2))
    end = trainable_state(model)
    assert set(result.update) == set(start)
    for name, delta in result.update.items():
        assert delta.dtype == np.float32
        np.testing.assert_allclose(start[name] + delta, end[name].numpy(), atol=1e-6)
    m = result.metrics
    assert m.examples == 200 and m.predictions == 400 and m.steps == 2 * 7
    assert 0 <= m.accuracy <= 1 and m.loss > 0 and m.peak_memory_bytes > 0


def test_same_seed_same_update(base, digits) -> None:
    updates = [
        finetune(_with_lora(base), _pairs(digits, 100), DigitsTask(), FinetuneConfig(seed=3)).update
        for _ in range(2)
    ]
    for name in updates[0]:
        np.testing.assert_array_equal(updates[0][name], updates[1][name])


def test_fedprox_mu_keeps_the_update_closer_to_the_start(base, digits) -> None:
    def norm(mu: float) -> float:
        config = FinetuneConfig(epochs=3, proximal_mu=mu, optimizer="sgd", learning_rate=0.1)
        update = finetune(_with_lora(base), _pairs(digits, 300), DigitsTask(), config).update
        return float(np.sqrt(sum((u.astype(np.float64) ** 2).sum() for u in update.values())))

    assert norm(3.0) < 0.8 * norm(0.0)


def test_examples_stream_from_a_function_called_once_per_epoch(base, digits) -> None:
    calls = []

    def stream():
        calls.append(1)
        yield from _pairs(digits, 64)

    result = finetune(_with_lora(base), stream, DigitsTask(), FinetuneConfig(epochs=3))
    assert len(calls) == 3 and result.metrics.examples == 64


def test_lora_on_int8_holds_far_less_training_memory_than_full_fp32(digits) -> None:
    torch.manual_seed(0)
    wide = DigitsMLP((512, 512))
    pairs = _pairs(digits, 64)
    config = FinetuneConfig(batch_size=16, max_steps=3)
    full = finetune(copy.deepcopy(wide), pairs, DigitsTask(), config).metrics.peak_memory_bytes
    lora = finetune(_with_lora(wide), pairs, DigitsTask(), config).metrics.peak_memory_bytes
    params = sum(p.numel() for p in wide.parameters())
    assert full >= 16 * params  # weights, gradients and Adam's two moments, in fp32
    assert lora <= 0.15 * full


def test_lora_on_the_int8_lm_lowers_held_out_perplexity(trained_lm: ByteLM) -> None:
    lines = generate_corpus(400, seed=5).decode().splitlines()
    device_text = [line for line in lines if "+" in line][:60]
    held_out = [line for line in generate_corpus(200, seed=6).decode().splitlines() if "+" in line]
    model = quantize_model(trained_lm, "int8")
    before = evaluate(model, held_out, LanguageTask()).perplexity
    attach_lora(model, LoRAConfig(rank=8, alpha=16, targets=("blocks.*",)))
    config = FinetuneConfig(epochs=3, learning_rate=5e-3, batch_size=16)
    metrics = finetune(model, device_text, LanguageTask(), config).metrics
    after = evaluate(model, held_out, LanguageTask()).perplexity
    assert after < 0.8 * before, (before, after)
    assert metrics.examples == 60 and metrics.predictions > 60


def test_language_windows_start_with_bos_and_mask_padding() -> None:
    batch = next(LanguageTask(seq_len=4).batches([b"abcdefg", "hi"], batch_size=8))
    assert batch.inputs.shape == batch.targets.shape == (3, 4)
    assert batch.inputs[:, 0].tolist() == [256, 256, 256]
    assert batch.targets[1].tolist() == [ord("e"), ord("f"), ord("g"), -100]
    assert batch.examples == 2


def test_nothing_to_train_or_no_examples_are_clear_errors(base, digits) -> None:
    with pytest.raises(NoTrainableParameters):
        frozen = quantize_model(base, "int8")
        finetune(frozen, _pairs(digits, 10), DigitsTask(), FinetuneConfig())
    with pytest.raises(NoExamples):
        finetune(_with_lora(base), [], DigitsTask(), FinetuneConfig())
    with pytest.raises(NoExamples):
        evaluate(base, [], DigitsTask())
    with pytest.raises(ValueError, match="64 pixels"):
        finetune(_with_lora(base), [(np.zeros(10), 1)], DigitsTask(), FinetuneConfig())


def test_a_diverging_loss_stops_training(base, digits) -> None:
    poisoned = [(np.full(64, np.nan), 1)] * 8
    with pytest.raises(TrainingDiverged):
        finetune(_with_lora(base, "fp32"), poisoned, DigitsTask(), FinetuneConfig())


@pytest.mark.parametrize(
    "options",
    [{"epochs": 0}, {"learning_rate": 0}, {"proximal_mu": -1}, {"optimizer": "lbfgs"}],
)
def test_bad_config_is_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        FinetuneConfig(**options)
