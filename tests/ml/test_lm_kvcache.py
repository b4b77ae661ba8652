"""The KV-cache block pool: preallocated once, blocks reused, exhaustion typed, windows bounded."""

from __future__ import annotations

import math

import pytest
import torch

from fedota.ml.lm import KVCacheExhausted, KVCachePool, SequenceCache, blocks_needed


def _pool(blocks: int = 8, size: int = 4) -> KVCachePool:
    return KVCachePool(n_layers=2, n_heads=2, head_dim=4, num_blocks=blocks, block_size=size)


def test_the_pool_is_allocated_once_and_reports_its_bytes() -> None:
    pool = _pool()
    storage = pool.kv.data_ptr()
    assert pool.memory_bytes == 2 * 8 * 4 * 2 * 2 * 4 * 4  # layers*slots*(k,v)*heads*dim*fp32
    seq = SequenceCache(pool)
    for length in range(1, 30):
        seq.extend(length)
    seq.release()
    assert pool.kv.data_ptr() == storage and pool.free_blocks == 8


def test_released_blocks_are_reused() -> None:
    pool = _pool(blocks=3)
    first = SequenceCache(pool)
    first.extend(12)
    held = set(first.blocks)
    first.release()
    second = SequenceCache(pool)
    second.extend(12)
    assert set(second.blocks) == held
    assert second.blocks == sorted(second.blocks)  # lowest blocks first: consecutive slots


def test_exhaustion_is_typed_and_takes_nothing() -> None:
    pool = _pool(blocks=3, size=4)
    seq = SequenceCache(pool)
    seq.extend(8)
    other = SequenceCache(pool)
    with pytest.raises(KVCacheExhausted, match="2 more block") as caught:
        other.extend(5)
    assert (caught.value.wanted, caught.value.free, caught.value.total) == (2, 1, 3)
    assert other.blocks == [] and pool.free_blocks == 1
    with pytest.raises(KVCacheExhausted):
        for _ in range(4):
            pool.allocate()


def test_releasing_a_block_twice_is_refused() -> None:
    pool = _pool()
    block = pool.allocate()
    pool.release(block)
    with pytest.raises(ValueError, match="not allocated"):
        pool.release(block)


@pytest.mark.parametrize(("window", "size"), [(4, 4), (5, 4), (16, 4), (7, 8)])
def test_a_sliding_window_holds_a_bounded_number_of_blocks(window: int, size: int) -> None:
    pool = _pool(blocks=16, size=size)
    seq = SequenceCache(pool, window)
    bound = math.ceil(window / size) + 1
    for length in range(1, 200):
        seq.extend(length)
        assert len(seq.blocks) <= bound
        assert pool.free_blocks == 16 - len(seq.blocks)  # the rest went back to the pool
        oldest = max(0, length - window)
        assert seq.first_block == oldest // size  # every block before the window released
        slots = seq.slots(oldest, length)  # every position in the window is held
        assert len(set(slots)) == length - oldest
    assert blocks_needed(10_000, size, window) == bound


def test_a_long_prompt_with_a_window_takes_only_the_window_blocks() -> None:
    pool = _pool(blocks=4, size=4)
    seq = SequenceCache(pool, window=6)
    seq.extend(100)  # more positions than the whole pool holds
    assert len(seq.blocks) == 2 and seq.first_block == (100 - 6) // 4


def test_slots_map_positions_through_the_block_table() -> None:
    pool = _pool(blocks=4, size=4)
    a, b = SequenceCache(pool), SequenceCache(pool)
    a.extend(4)
    b.extend(4)
    a.extend(6)  # a's second block comes after b's
    assert a.blocks == [0, 2] and b.blocks == [1]
    assert a.slots(2, 6) == [2, 3, 8, 9]


@pytest.mark.parametrize("size", [0, -1])
def test_pool_sizes_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KVCachePool(n_layers=1, n_heads=1, head_dim=2, num_blocks=size)
    with pytest.raises(ValueError, match="at least 1"):
        KVCachePool(n_layers=1, n_heads=1, head_dim=2, num_blocks=2, block_size=size)


def test_window_cuts_cache_memory_at_four_windows_of_context() -> None:
    full = blocks_needed(4 * 64, 16, None)
    windowed = blocks_needed(4 * 64, 16, 64)
    assert 1 - windowed / full >= 0.6
    pool = KVCachePool(n_layers=1, n_heads=1, head_dim=2, num_blocks=windowed, block_size=16)
    seq = SequenceCache(pool, 64)
    for length in range(1, 4 * 64 + 1):
        seq.extend(length)
    assert torch.all(pool.kv == 0)  # nothing was written: the table alone bounded the blocks
