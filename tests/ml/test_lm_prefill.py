"""Batched prefill: prompts prefilled together give what each gives alone, grouped by length."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from fedota.ml.lm import (
    ByteLM,
    GenerationEngine,
    GenerationRequest,
    KVCachePool,
    LMConfig,
    SequenceCache,
    encode,
    prefill_groups,
)
from fedota.ml.quant import quantize_model

PROMPTS = [
    b"12+30=",
    b"the device ",
    b"4 5 6",
    b"a sensor measures the temperature ",
    b"abcab",
    b"x",
    b"the gateway verifies an update at night. ",
    b"7+8=",
]
# Padding changes the attention's length, and torch's attention kernel rounds by it (~1e-7);
# int8 then quantizes each activation row, where such a last bit can move a value by one
# int8 step (the tolerance of test_lm_model's int8 decode); int4's bf16 operands likewise.
TOLERANCE = {"fp32": 1e-5, "int8": 5e-3, "int4": 1e-3}


def _variant(model: ByteLM, variant: str) -> torch.nn.Module:
    return model if variant == "fp32" else quantize_model(model, variant)  # type: ignore[arg-type]


def _pool(config: LMConfig, blocks: int = 64) -> KVCachePool:
    return KVCachePool(
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        head_dim=config.head_dim,
        num_blocks=blocks,
        block_size=4,
    )


def _prefill_one(model: torch.nn.Module, prompt: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the cached keys/values (all layers) of one prompt prefilled alone."""
    config = model.config  # type: ignore[attr-defined]
    pool = _pool(config)
    cache = SequenceCache(pool, config.window)
    tokens = encode(prompt)
    cache.extend(len(tokens))
    oldest = 0 if config.window is None else max(0, len(tokens) - config.window)
    slots = torch.tensor(cache.slots(oldest, len(tokens)))
    with torch.inference_mode():
        logits = model.prefill(torch.tensor(tokens), pool, slots)  # type: ignore[operator]
    return logits, pool.kv[:, slots]


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("window", [None, 8])
def test_prompts_prefilled_together_match_each_alone(
    trained_lm: ByteLM, variant: str, window: int | None
) -> None:
    base = trained_lm
    if window is not None:
        base = ByteLM(LMConfig(**{**trained_lm.config.to_dict(), "window": window}))
        base.load_state_dict(trained_lm.state_dict())
    model = _variant(base.eval(), variant)
    pool = _pool(model.config)  # type: ignore[arg-type]
    caches, prompts, slots = [], [], []
    for prompt in PROMPTS:
        cache = SequenceCache(pool, window)
        tokens = encode(prompt)
        cache.extend(len(tokens))
        oldest = 0 if window is None else max(0, len(tokens) - window)
        caches.append(cache)
        prompts.append(torch.tensor(tokens))
        slots.append(torch.tensor(cache.slots(oldest, len(tokens))))
    with torch.inference_mode():
        batched = model.prefill_batch(prompts, pool, slots)  # type: ignore[operator]
    tolerance = TOLERANCE[variant]
    for row, prompt in enumerate(PROMPTS):
        alone_logits, alone_kv = _prefill_one(model, prompt)
        assert torch.allclose(batched[row], alone_logits, atol=tolerance, rtol=tolerance)
        assert torch.allclose(pool.kv[:, slots[row]], alone_kv, atol=tolerance, rtol=tolerance)


def test_prefill_batch_refuses_mismatched_inputs(random_lm: ByteLM) -> None:
    pool = _pool(random_lm.config)
    with pytest.raises(ValueError, match="2 prompts with 1 slot lists"):
        random_lm.prefill_batch([torch.tensor([1, 2]), torch.tensor([3])], pool, [torch.arange(2)])
    with pytest.raises(ValueError, match="3 cache slots for a 2-token prompt"):
        random_lm.prefill_batch([torch.tensor([1, 2])], pool, [torch.arange(3)])


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_an_engine_admitting_many_prompts_at_once_generates_what_each_does_alone(
    trained_lm: ByteLM, variant: str
) -> None:
    model = _variant(trained_lm, variant)
    requests = [GenerationRequest(p, max_new_tokens=6 + 2 * i) for i, p in enumerate(PROMPTS)]
    engine = GenerationEngine(model, max_batch=len(requests))
    ids = [engine.submit(r) for r in requests]
    texts: dict[int, bytes] = defaultdict(bytes)
    first = engine.step()  # admits and prefills every request, then decodes them all
    assert {e.seq_id for e in first} == set(ids)
    for event in first:
        texts[event.seq_id] += event.token
    while engine.active or engine.waiting:
        for event in engine.step():
            texts[event.seq_id] += event.token
    for seq, request in zip(ids, requests, strict=True):
        alone = GenerationEngine(model, max_batch=1)
        only = alone.submit(request)
        out = b""
        while alone.active or alone.waiting:
            out += b"".join(e.token for e in alone.step() if e.seq_id == only)
        assert texts[seq] == out, request.prompt


@pytest.mark.parametrize(
    ("lengths", "groups"),
    [
        ([], []),
        ([7], [[0]]),
        ([7, 7, 7], [[0, 1, 2]]),
        ([7, 8, 30, 6, 29], [[0, 1, 3], [2, 4]]),  # similar lengths together, arrival order
        ([1, 100], [[0], [1]]),  # padding the short one to 100 would waste 49%
    ],
)
def test_prefill_groups_put_similar_lengths_together(
    lengths: list[int], groups: list[list[int]]
) -> None:
    assert prefill_groups(lengths) == groups


def test_prefill_groups_bound_padding_and_tokens() -> None:
    lengths = [5 + (i * 37) % 200 for i in range(40)]
    groups = prefill_groups(lengths, max_padding=0.25, max_tokens=512)
    assert sorted(i for g in groups for i in g) == list(range(40))  # each prompt once
    for group in groups:
        longest = max(lengths[i] for i in group)
        padded = longest * len(group)
        assert padded <= 512 or len(group) == 1
        assert sum(lengths[i] for i in group) >= 0.75 * padded
        assert group == sorted(group)
    assert prefill_groups([600, 10], max_tokens=512) == [[1], [0]]  # too long: alone
