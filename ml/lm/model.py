"""A small decoder-only byte LM: pre-norm (RMSNorm) blocks, rotary positions, GELU MLP.

Three ways to run it: `forward` over whole sequences (training, perplexity); `prefill_batch`,
prompts (one or several, padded into one batch), which writes their keys and values into the
KV-cache pool; `decode`, one new token for each of a batch of sequences of different lengths,
reading their keys and values through block tables (`kvcache.DecodeBatch`). Attention is
causal, or sliding-window when the config has a `window`.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedota.ml.lm import fast
from fedota.ml.lm.config import LMConfig
from fedota.ml.lm.kvcache import DecodeBatch, KVCachePool


def _rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    # Rotary embedding (Su et al. 2021) on interleaved pairs, as one complex multiply.
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2)


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.heads, self.head_dim = config.n_heads, config.head_dim
        self.norm1 = nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.norm2 = nn.RMSNorm(d, eps=1e-5)
        self.up = nn.Linear(d, config.d_ff, bias=False)
        self.down = nn.Linear(config.d_ff, d, bias=False)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm2(x)), approximate="tanh"))

    def forward(
        self, x: torch.Tensor, rotation: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole sequences x (B, T, d); returns x and this layer's keys/values (B, T, H, hd)."""
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, self.head_dim)
        qk = _rope(qkv[:, :, :2], rotation[None, :, None, None])
        q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=mask is None,
        )
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, d))
        return self.mlp(x), k, v

    def decode(
        self,
        x: torch.Tensor,
        rotation: torch.Tensor,
        cache: torch.Tensor,
        batch: DecodeBatch,
        reads: tuple[tuple[int, int] | None, torch.Tensor | None, torch.Tensor | None],
    ) -> torch.Tensor:
        """One token per sequence, x (B, d), in torch ops: write its key/value, attend over the
        keys `reads` (DecodeBatch.key_reads) names."""
        b, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, 3, self.heads, self.head_dim)
        qkv[:, :2] = _rope(qkv[:, :2], rotation[:, None, None])
        cache.index_copy_(0, batch.write_slots, qkv[:, 1:])
        read_range, read_slots, mask = reads
        if read_range is not None:
            kv = cache[read_range[0] : read_range[1]].unsqueeze(0)
        else:
            assert read_slots is not None
            kv = cache.flatten(1).index_select(0, read_slots.flatten())
            kv = kv.view(b, -1, *cache.shape[1:])
        attn = F.scaled_dot_product_attention(
            qkv[:, 0, :, None],
            kv[:, :, 0].transpose(1, 2),
            kv[:, :, 1].transpose(1, 2),
            attn_mask=mask,
        )
        return self.mlp(x + self.out(attn.reshape(b, d)))


class ByteLM(nn.Module):
    """Decoder-only transformer over bytes (vocabulary: 256 bytes, BOS, EOS)."""

    # The output projection is small and sets every logit: quantize_model keeps it fp32.
    QUANT_KEEP_FP32 = ("lm_head",)
    # Decode with the C glue (fast.py) when it builds; False forces the torch path.
    use_native = True

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        half = config.head_dim // 2
        inv = config.rope_base ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.arange(config.max_seq_len, dtype=torch.float64)[:, None] * inv[None, :]
        rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
        self.register_buffer("rotation", rotation, persistent=False)
        self.apply(self._init)
        for block in self.blocks:
            for layer in (block.out, block.down):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), positions 0..T-1.

        Raises:
            ValueError: T exceeds max_seq_len.
        """
        x, _ = self._run(tokens)
        return self.lm_head(self.norm(x))

    def prefill(self, tokens: torch.Tensor, pool: KVCachePool, slots: torch.Tensor) -> torch.Tensor:
        """Run one prompt (T,), store the keys/values of its last len(slots) positions at
        `slots` of every layer's cache, and return the next-token logits (V,).

        Raises:
            ValueError: T exceeds max_seq_len or slots exceed T.
        """
        return self.prefill_batch([tokens], pool, [slots])[0]

    def prefill_batch(
        self, prompts: Sequence[torch.Tensor], pool: KVCachePool, slots: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """`prefill` for several prompts in one forward pass: next-token logits (B, V).

        The prompts are right-padded to the longest: attention is causal, so a prompt's
        positions never see the padding after them, and each prompt gets what it gets alone
        (up to the float rounding of a larger matmul; int8 rows are exact either way).

        Raises:
            ValueError: no prompt, a prompt over max_seq_len, or slots exceeding a prompt.
        """
        if not prompts or len(prompts) != len(slots):
            raise ValueError(f"{len(prompts)} prompts with {len(slots)} slot lists")
        lengths = [p.numel() for p in prompts]
        for length, where in zip(lengths, slots, strict=True):
            if where.numel() > length:
                raise ValueError(f"{where.numel()} cache slots for a {length}-token prompt")
        rows = torch.zeros(len(prompts), max(lengths), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            rows[row, : lengths[row]] = prompt
        x, kvs = self._run(rows)
        # Row r keeps positions [T_r - len(slots_r), T_r): one gather and one cache write
        # per layer for the whole batch.
        keep_rows = torch.cat([torch.full((w.numel(),), r) for r, w in enumerate(slots)])
        keep_cols = torch.cat(
            [torch.arange(t - w.numel(), t) for t, w in zip(lengths, slots, strict=True)]
        )
        targets = torch.cat(list(slots))
        for layer, (k, v) in enumerate(kvs):
            kv = torch.stack((k[keep_rows, keep_cols], v[keep_rows, keep_cols]), 1)
            pool.layer(layer).index_copy_(0, targets, kv)
        last = x[torch.arange(len(prompts)), torch.tensor(lengths) - 1]
        return self.lm_head(self.norm(last))

    def decode(self, batch: DecodeBatch, pool: KVCachePool) -> torch.Tensor:
        """Next-token logits (B, V) after one new token per sequence of the batch."""
        lib = fast.library() if self.use_native else None
        if lib is not None:
            return self._decode_native(lib, batch, pool)
        x = self.embed(batch.tokens)
        rotation = self.rotation[batch.positions]
        reads = batch.key_reads()
        for layer, block in enumerate(self.blocks):
            x = block.decode(x, rotation, pool.layer(layer), batch, reads)
        return self.lm_head(self.norm(x))

    def _decode_native(
        self, lib: ctypes.CDLL, batch: DecodeBatch, pool: KVCachePool
    ) -> torch.Tensor:
        # The same computation as the torch path, with the glue between matmuls in C (fast.py).
        c = self.config
        b, d = batch.tokens.shape[0], c.d_model
        x = self.embed(batch.tokens).to(torch.float32).contiguous()
        h = torch.empty_like(x)
        attn = torch.empty_like(x)
        scores = torch.empty(c.n_heads * (c.max_seq_len if c.window is None else c.window + 1))
        rotation = torch.view_as_real(self.rotation)
        positions, writes = batch.positions.data_ptr(), batch.write_slots.data_ptr()
        window = c.window or 0
        norms = [block.norm1 for block in self.blocks] + [self.norm]
        lib.fedota_add_rmsnorm(
            x.data_ptr(), None, _weight(norms[0]), h.data_ptr(), b, d, _eps(norms[0])
        )
        for layer, block in enumerate(self.blocks):
            cache = pool.layer(layer)
            qkv = block.qkv(h).contiguous()
            lib.fedota_rope_store(
                qkv.data_ptr(),
                rotation.data_ptr(),
                positions,
                cache.data_ptr(),
                writes,
                b,
                c.n_heads,
                c.head_dim,
            )
            lib.fedota_paged_attention(
                qkv.data_ptr(),
                cache.data_ptr(),
                batch.tables.data_ptr(),
                batch.tables.shape[1],
                batch.first_blocks.data_ptr(),
                positions,
                window,
                batch.block_size,
                b,
                c.n_heads,
                c.head_dim,
                attn.data_ptr(),
                scores.data_ptr(),
            )
            out = block.out(attn).contiguous()
            lib.fedota_add_rmsnorm(
                x.data_ptr(),
                out.data_ptr(),
                _weight(block.norm2),
                h.data_ptr(),
                b,
                d,
                _eps(block.norm2),
            )
            down = block.down(F.gelu(block.up(h), approximate="tanh")).contiguous()
            after = norms[layer + 1]
            lib.fedota_add_rmsnorm(
                x.data_ptr(), down.data_ptr(), _weight(after), h.data_ptr(), b, d, _eps(after)
            )
        return self.lm_head(h)

    def _run(
        self, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        t = tokens.shape[1]
        if t > self.config.max_seq_len:
            raise ValueError(f"{t} tokens exceed max_seq_len {self.config.max_seq_len}")
        mask = None
        if self.config.window is not None and self.config.window < t:
            pos = torch.arange(t)
            gap = pos[:, None] - pos[None, :]
            mask = (gap >= 0) & (gap < self.config.window)
        x = self.embed(tokens)
        kvs = []
        for block in self.blocks:
            x, k, v = block(x, self.rotation[:t], mask)
            kvs.append((k, v))
        return x, kvs


def _weight(norm: nn.RMSNorm) -> int:
    assert norm.weight is not None and norm.weight.dtype == torch.float32
    return norm.weight.data_ptr()


def _eps(norm: nn.RMSNorm) -> float:
    return torch.finfo(torch.float32).eps if norm.eps is None else float(norm.eps)


__all__ = ["Block", "ByteLM"]
