"""A preallocated pool of KV-cache blocks, per-sequence block tables, and decode batches.

The pool holds every layer's keys and values for `num_blocks` blocks of `block_size` tokens,
allocated once; sequences borrow blocks and give them back, so serving never allocates cache
per request. A slot is `block * block_size + offset`. With a sliding window of W tokens a
sequence needs only the blocks covering its last W positions, at most ceil(W / block) + 1:
older blocks go back to the pool as the sequence grows.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch

# Pads a shorter sequence's block table in a batch; never read as a key, so any block will do.
_PAD_BLOCK = 0


class KVCacheExhausted(RuntimeError):
    """The pool has no free block left."""

    def __init__(self, wanted: int, free: int, total: int) -> None:
        super().__init__(
            f"KV cache exhausted: {wanted} more block(s) wanted, {free} of {total} free"
        )
        self.wanted, self.free, self.total = wanted, free, total


class KVCachePool:
    """Keys and values of all layers for `num_blocks` blocks, and the free list."""

    def __init__(
        self,
        *,
        n_layers: int,
        n_heads: int,
        head_dim: int,
        num_blocks: int,
        block_size: int = 16,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Allocate the pool.

        Raises:
            ValueError: a size below 1.
        """
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.num_blocks, self.block_size = num_blocks, block_size
        # Key and value of a slot side by side: one write per layer and token, one read.
        self.kv = torch.zeros(
            (n_layers, num_blocks * block_size, 2, n_heads, head_dim), dtype=dtype
        )
        # A min-heap: the lowest free block first, so a sequence's blocks tend to be consecutive
        # slots, which attention can then read as one range.
        self._free = list(range(num_blocks))
        self._used: set[int] = set()

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    @property
    def memory_bytes(self) -> int:
        """Bytes of the preallocated cache (keys and values, all layers)."""
        return self.kv.nbytes

    def layer(self, index: int) -> torch.Tensor:
        """Layer `index`'s cache, (num_blocks * block_size, 2, heads, head_dim): [:, 0] keys,
        [:, 1] values."""
        return self.kv[index]

    def allocate(self) -> int:
        """Take a free block.

        Raises:
            KVCacheExhausted: no block is free.
        """
        if not self._free:
            raise KVCacheExhausted(1, 0, self.num_blocks)
        block = heapq.heappop(self._free)
        self._used.add(block)
        return block

    def release(self, block: int) -> None:
        """Give a block back.

        Raises:
            ValueError: the block is not currently allocated.
        """
        if block not in self._used:
            raise ValueError(f"block {block} is not allocated")
        self._used.remove(block)
        heapq.heappush(self._free, block)


def blocks_needed(length: int, block_size: int, window: int | None) -> int:
    """Most blocks a sequence of `length` positions holds at once."""
    full = math.ceil(length / block_size)
    if window is None:
        return full
    return min(full, math.ceil(window / block_size) + 1)


class SequenceCache:
    """One sequence's block table: the blocks holding its positions [first, length)."""

    def __init__(self, pool: KVCachePool, window: int | None = None) -> None:
        self.pool, self.window = pool, window
        self.blocks: list[int] = []
        self.first_block = 0  # logical index of blocks[0]; earlier ones went back to the pool
        self.length = 0

    def extend(self, length: int) -> None:
        """Cover positions up to `length` (exclusive), dropping blocks that fell out of the
        window of the last position.

        Raises:
            KVCacheExhausted: the pool cannot supply the blocks (none is taken then).
        """
        size = self.pool.block_size
        oldest = 0 if self.window is None else max(0, length - self.window)
        first = oldest // size
        last = (length - 1) // size if length else -1
        # Blocks wholly before the window go back first, so a sequence at its bound swaps one
        # block for another without needing a spare.
        while self.blocks and self.first_block < first:
            self.pool.release(self.blocks.pop(0))
            self.first_block += 1
        if not self.blocks:
            self.first_block = first
        wanted = last + 1 - (self.first_block + len(self.blocks))
        if wanted > self.pool.free_blocks:
            raise KVCacheExhausted(wanted, self.pool.free_blocks, self.pool.num_blocks)
        for _ in range(wanted):
            self.blocks.append(self.pool.allocate())
        self.length = max(self.length, length)

    def slots(self, start: int, stop: int) -> list[int]:
        """Cache slots of positions [start, stop) (they must be held)."""
        size = self.pool.block_size
        return [
            self.blocks[p // size - self.first_block] * size + p % size for p in range(start, stop)
        ]

    def release(self) -> None:
        """Return every block to the pool."""
        for block in self.blocks:
            self.pool.release(block)
        self.blocks = []


@dataclass(frozen=True)
class DecodeBatch:
    """One decode step's inputs: a token per sequence and where its cache lives.

    tokens, positions, write_slots, first_blocks, counts: (B,); tables: (B, W) the block ids
    each sequence holds (`counts` of them, padded), the first being its logical block
    `first_blocks`. A token at position p attends to positions [p - window + 1, p].
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    write_slots: torch.Tensor
    tables: torch.Tensor
    first_blocks: torch.Tensor
    counts: torch.Tensor
    window: int | None
    block_size: int

    def key_reads(self) -> tuple[tuple[int, int] | None, torch.Tensor | None, torch.Tensor | None]:
        """Where the keys are for torch attention: a slot range when one sequence's keys lie in
        consecutive slots (every key attended), else padded slots (B, L) and a mask
        (B, 1, 1, L), True where a key is attended."""
        size, positions = self.block_size, self.positions
        oldest = positions + 1 - self.window if self.window is not None else positions * 0
        oldest = oldest.clamp(min=0)
        if positions.numel() == 1:
            start, stop = int(oldest[0]), int(positions[0]) + 1
            first = start // size - int(self.first_blocks[0])
            run = self.tables[0, first : (stop - 1) // size - int(self.first_blocks[0]) + 1]
            if bool((run == run[0] + torch.arange(run.numel())).all()):
                begin = int(run[0]) * size + start % size
                return (begin, begin + stop - start), None, None
        offsets = torch.arange(size)
        slots = (self.tables[:, :, None] * size + offsets).flatten(1)
        logical = self.first_blocks[:, None] + torch.arange(self.tables.shape[1])
        key_pos = (logical[:, :, None] * size + offsets).flatten(1)
        held = (torch.arange(self.tables.shape[1]) < self.counts[:, None]).repeat_interleave(
            size, 1
        )
        mask = held & (key_pos >= oldest[:, None]) & (key_pos <= positions[:, None])
        return None, slots, mask[:, None, None, :]


def make_decode_batch(
    tokens: list[int], caches: list[SequenceCache], window: int | None
) -> DecodeBatch:
    """Inputs for one decode step; each cache already holds the new token's position
    (`length - 1`), where its key and value will be written."""
    positions = [cache.length - 1 for cache in caches]
    writes = [cache.slots(p, p + 1)[0] for cache, p in zip(caches, positions, strict=True)]
    counts = [len(cache.blocks) for cache in caches]
    width = max(counts)
    rows = [cache.blocks + [_PAD_BLOCK] * (width - len(cache.blocks)) for cache in caches]
    columns = torch.tensor(
        [tokens, positions, writes, [c.first_block for c in caches], counts], dtype=torch.long
    )
    return DecodeBatch(
        tokens=columns[0],
        positions=columns[1],
        write_slots=columns[2],
        tables=torch.tensor(rows, dtype=torch.long),
        first_blocks=columns[3],
        counts=columns[4],
        window=window,
        block_size=caches[0].pool.block_size,
    )


__all__ = [
    "DecodeBatch",
    "KVCacheExhausted",
    "KVCachePool",
    "SequenceCache",
    "blocks_needed",
    "make_decode_batch",
]
