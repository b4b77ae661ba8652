"""The byte LM: trains below uniform perplexity, and its cached decode equals the full forward."""

from __future__ import annotations

import math

import pytest
import torch
from native_marks import needs_compiler

from fedota.ml.lm import (
    BOS,
    ByteLM,
    KVCachePool,
    LMConfig,
    SequenceCache,
    decode,
    encode,
    fast,
    generate_corpus,
    make_decode_batch,
    perplexity,
    train_lm,
)
from fedota.ml.quant import quantize_model

TEXT = b"the gateway verifies an update at night.\n41+17=58\nabcabcabc\n"


@pytest.mark.timeout(180)
def test_training_from_scratch_beats_uniform_perplexity(held_out: bytes) -> None:
    # 200 steps of 16 x 48 bytes: ~2 s on one core (a budget, not an assertion on time).
    torch.manual_seed(0)
    model = ByteLM(LMConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, max_seq_len=128))
    before = perplexity(model, held_out)
    losses = train_lm(model, generate_corpus(2000), steps=200, batch_size=16, seq_len=48, lr=5e-3)
    after = perplexity(model, held_out)
    assert before > 200  # an untrained model is near uniform over 256 bytes
    assert after < 5.0
    assert losses[-1] < losses[0] / 2


def test_trained_model_has_learned_the_corpus(trained_lm: ByteLM, held_out: bytes) -> None:
    assert perplexity(trained_lm, held_out) < 5.0


def _decode_logits(model: ByteLM, tokens: torch.Tensor, prompt: int, window: int | None):
    c = model.config
    pool = KVCachePool(
        n_layers=c.n_layers, n_heads=c.n_heads, head_dim=c.head_dim, num_blocks=24, block_size=4
    )
    cache = SequenceCache(pool, window)
    cache.extend(prompt)
    oldest = 0 if window is None else max(0, prompt - window)
    slots = torch.tensor(cache.slots(oldest, prompt))
    logits = [model.prefill(tokens[:prompt], pool, slots)]
    for position in range(prompt, len(tokens)):
        cache.extend(position + 1)
        batch = make_decode_batch([int(tokens[position])], [cache], window)
        logits.append(model.decode(batch, pool)[0])
    return torch.stack(logits)


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("window", [None, 8])
@pytest.mark.parametrize("native", [True, False])
def test_cached_decode_equals_the_full_forward(
    variant: str, window: int | None, native: bool
) -> None:
    torch.manual_seed(2)
    model = ByteLM(LMConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, window=window))
    if variant != "fp32":
        model = quantize_model(model, variant)  # type: ignore[arg-type]
    model.use_native = native
    tokens = torch.tensor(encode(TEXT))
    with torch.inference_mode():
        full = model(tokens[None])[0]
        stepped = _decode_logits(model, tokens, prompt=10, window=window)
    # int8 quantizes each activation row: a last-bit difference upstream (full attention vs
    # one cached step) can move a value across a rounding boundary, one int8 step of the input.
    # int4 decodes (few rows) on bf16 operands where AVX512-BF16 has them, and the full
    # forward (many rows) on the fp32 weight: ~0.3% apart.
    tolerance = {"fp32": 1e-4, "int8": 5e-3, "int4": 5e-3}[variant]
    assert torch.allclose(stepped, full[9:], atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("window", [None, 8])
def test_native_attention_with_heads_of_any_size(window: int | None) -> None:
    # head_dim 6: not a multiple of the 16 floats the AVX-512 attention takes, so the plain C
    # loop serves it; it must agree with the full forward as the vector path does.
    torch.manual_seed(5)
    model = ByteLM(LMConfig(d_model=24, n_layers=2, n_heads=4, d_ff=48, window=window)).eval()
    tokens = torch.tensor(encode(TEXT))
    with torch.inference_mode():
        full = model(tokens[None])[0]
        stepped = _decode_logits(model, tokens, prompt=10, window=window)
    assert torch.allclose(stepped, full[9:], atol=1e-4, rtol=1e-4)


@needs_compiler
def test_native_decode_kernels_build_here() -> None:
    assert fast.library() is not None


def test_window_changes_attention_beyond_the_window() -> None:
    torch.manual_seed(3)
    full = ByteLM(LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64))
    windowed = ByteLM(LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, window=4))
    windowed.load_state_dict(full.state_dict())
    tokens = torch.tensor([encode(TEXT)])
    with torch.inference_mode():
        a, b = full(tokens)[0], windowed(tokens)[0]
    assert torch.allclose(a[:4], b[:4], atol=1e-6)  # inside the window: the same
    assert not torch.allclose(a[10:], b[10:], atol=1e-3)


def test_sequences_longer_than_max_seq_len_are_refused() -> None:
    model = ByteLM(LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=16))
    with pytest.raises(ValueError, match="exceed max_seq_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    pool = KVCachePool(n_layers=1, n_heads=2, head_dim=16, num_blocks=4, block_size=4)
    with pytest.raises(ValueError, match="cache slots"):
        model.prefill(torch.zeros(3, dtype=torch.long), pool, torch.arange(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 0}, "d_model must be a positive int"),
        ({"d_model": 30, "n_heads": 4}, "heads of even size"),
        ({"d_model": 12, "n_heads": 4}, "heads of even size"),
        ({"window": 0}, "window must be None or a positive int"),
        ({"vocab_size": 100}, "vocab_size must be at least"),
        ({"rope_base": 1.0}, "rope_base"),
    ],
)
def test_config_refuses_impossible_shapes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LMConfig(**kwargs)


def test_config_round_trips_and_refuses_unknown_keys() -> None:
    config = LMConfig(d_model=48, n_heads=3, window=16)
    assert LMConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown LM config keys: colour"):
        LMConfig.from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="positive int"):
        LMConfig.from_dict({"d_model": "64"})


def test_tokenizer_is_bytes_after_bos() -> None:
    assert encode(b"hi") == [BOS, 104, 105]
    assert decode([BOS, 104, 105, 257]) == b"hi"


@pytest.mark.parametrize(
    ("text", "context", "message"),
    [(b"", None, "empty"), (b"abc", 0, "context must lie"), (b"abc", 500, "context must lie")],
)
def test_perplexity_refuses_bad_arguments(
    random_lm: ByteLM, text: bytes, context: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        perplexity(random_lm, text, context=context)


def test_perplexity_of_a_random_model_is_near_uniform(random_lm: ByteLM) -> None:
    value = perplexity(random_lm, TEXT * 4, context=50)
    assert math.isfinite(value) and 180 < value < 330


def test_training_refuses_windows_it_cannot_fill(random_lm: ByteLM) -> None:
    with pytest.raises(ValueError, match="shorter than one window"):
        train_lm(random_lm, b"short", seq_len=16)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        train_lm(random_lm, TEXT * 10, seq_len=128)
