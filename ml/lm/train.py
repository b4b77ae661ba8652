"""Training from scratch and perplexity for the byte LM.

Every training window starts with BOS, as every prompt does at inference time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fedota.ml.lm.config import BOS, LMConfig


def train_lm(
    model: nn.Module,
    data: bytes,
    *,
    steps: int = 300,
    batch_size: int = 32,
    seq_len: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train in place on random windows of `data` with AdamW; returns the loss of every step.

    Raises:
        ValueError: data shorter than one window, or seq_len over the model's max_seq_len.
    """
    config: LMConfig = model.config
    if seq_len + 1 > config.max_seq_len:
        raise ValueError(f"seq_len {seq_len} + BOS exceeds max_seq_len {config.max_seq_len}")
    if len(data) <= seq_len:
        raise ValueError(f"{len(data)} bytes of data are shorter than one window of {seq_len}")
    stream = torch.tensor(list(data), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))),
    )
    offsets = torch.arange(seq_len)
    bos = torch.full((batch_size, 1), BOS, dtype=torch.long)
    losses = []
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        window = torch.cat((bos, stream[starts[:, None] + offsets]), dim=1)
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def perplexity(model: nn.Module, text: bytes, *, context: int | None = None) -> float:
    """exp(mean negative log-likelihood) of every byte of `text`, in windows of `context`
    bytes (default: as long as the model allows), each window after BOS.

    Raises:
        ValueError: empty text or a context the model cannot take.
    """
    if not text:
        raise ValueError("perplexity of empty text is undefined")
    limit = model.config.max_seq_len - 1
    context = limit if context is None else context
    if not 1 <= context <= limit:
        raise ValueError(f"context must lie in [1, {limit}], got {context}")
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(text), context):
            chunk = [BOS, *text[start : start + context]]
            tokens = torch.tensor(chunk, dtype=torch.long)[None]
            logits = model(tokens[:, :-1])
            total += float(F.cross_entropy(logits[0], tokens[0, 1:], reduction="sum"))
            count += len(chunk) - 1
    return math.exp(total / count)


__all__ = ["perplexity", "train_lm"]
