"""Sliding-window attention at 4x the window: KV-cache memory and perplexity, window vs full.

Perplexity: the trained LM (trained with full attention at 4x the window) reads the held-out
text in 4W-byte windows once with full attention and once with its sliding window, same weights.
KV memory: the most cache blocks one sequence holds on its way to 4W positions, counted by the
real cache code: on the trained LM through the generation engine (prefill then decode to 4W),
and on the speed model (W = 256, 4W = its 1024 positions) by growing a `SequenceCache` one
position at a time in a pool of the speed model's shape (no decoding needed to count blocks).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from _inference_models import heldout_text
from _inference_plan import Plan

from fedota.ml.lm import (
    ByteLM,
    GenerationEngine,
    GenerationRequest,
    KVCachePool,
    LMConfig,
    SequenceCache,
    blocks_needed,
    perplexity,
)

BLOCK = 16


def with_window(model: ByteLM, window: int | None) -> ByteLM:
    """The same weights with another attention window (the window is config, not weights)."""
    other = ByteLM(dataclasses.replace(model.config, window=window)).eval()
    other.load_state_dict(model.state_dict())
    return other


def engine_kv(model: ByteLM, length: int, new_tokens: int) -> dict[str, Any]:
    """Blocks held by one sequence generated to `length` positions, through the engine."""
    engine = GenerationEngine(model, max_batch=1, block_size=BLOCK)
    pool = engine.pool
    prompt = bytes(97 + i % 26 for i in range(length - new_tokens))
    engine.submit(GenerationRequest(prompt, new_tokens))
    most = 0
    while engine.active or engine.waiting:
        engine.step()
        most = max(most, pool.num_blocks - pool.free_blocks)
    return _held(most, pool)


def cache_kv(config: LMConfig, length: int) -> dict[str, Any]:
    """Blocks held by a `SequenceCache` grown one position at a time to `length`."""
    need = blocks_needed(length, BLOCK, None)
    pool = KVCachePool(
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        head_dim=config.head_dim,
        num_blocks=need,
        block_size=BLOCK,
    )
    cache = SequenceCache(pool, config.window)
    most = 0
    for position in range(1, length + 1):
        cache.extend(position)
        most = max(most, len(cache.blocks))
    cache.release()
    return _held(most, pool)


def _held(blocks: int, pool: KVCachePool) -> dict[str, Any]:
    per_block = pool.memory_bytes // pool.num_blocks
    return {"peak_blocks": blocks, "peak_bytes": blocks * per_block, "block_bytes": per_block}


def _compare(full: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    return {
        "full": full,
        "window": window,
        "cut": round(1.0 - window["peak_bytes"] / full["peak_bytes"], 6),
    }


def window_part(trained: ByteLM, plan: Plan) -> dict[str, Any]:
    """Every sliding-window figure; `kv_cut_min` is the smaller cut of the two models."""
    w, length = plan.lm_window, 4 * plan.lm_window
    text = heldout_text(plan)
    full_model = with_window(trained, None)
    window_model = with_window(trained, w)
    ppl_full = perplexity(full_model, text, context=length)
    ppl_window = perplexity(window_model, text, context=length)
    new_tokens = max(2, w // 2)
    trained_kv = _compare(
        engine_kv(full_model, length, new_tokens), engine_kv(window_model, length, new_tokens)
    )
    speed = LMConfig(**plan.speed_config(plan.speed_window))
    speed_length = 4 * plan.speed_window
    speed_kv = _compare(
        cache_kv(dataclasses.replace(speed, window=None), speed_length),
        cache_kv(speed, speed_length),
    )
    for record, window, cfg in (
        (trained_kv, w, trained.config),
        (speed_kv, plan.speed_window, speed),
    ):
        record["window"]["size"] = window
        record["positions"] = 4 * window
        record["ideal_cut"] = 0.75  # window / (4 x window) of the keys, before block rounding
        full_pool = blocks_needed(cfg.max_seq_len, BLOCK, None)
        window_pool = blocks_needed(cfg.max_seq_len, BLOCK, window)
        record["engine_default_pool_per_sequence"] = {
            "full_bytes": full_pool * record["full"]["block_bytes"],
            "window_bytes": window_pool * record["full"]["block_bytes"],
        }
    return {
        "block_size": BLOCK,
        "perplexity": {
            "model": "the trained LM (full attention in training)",
            "context": length,
            "window_size": w,
            "heldout_bytes": len(text),
            "full": round(ppl_full, 6),
            "window": round(ppl_window, 6),
            "window_over_full": round(ppl_window / ppl_full, 6),
        },
        "kv_memory": {"trained_lm": trained_kv, "speed_model": speed_kv},
        "kv_cut_min": min(trained_kv["cut"], speed_kv["cut"]),
    }


__all__ = ["cache_kv", "engine_kv", "window_part", "with_window"]
