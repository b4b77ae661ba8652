"""The byte-level language model's configuration and its tokenizer (bytes plus two specials)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BOS = 256
EOS = 257
VOCAB_SIZE = 258
ARCHITECTURE = "fedota.bytelm"


@dataclass(frozen=True)
class LMConfig:
    """Shape of a decoder-only byte LM.

    `window`: sliding-window attention, each token attends to itself and the `window - 1`
    tokens before it; None attends to the whole prefix. `max_seq_len` bounds a sequence
    (prompt plus generated tokens) and sizes the rotary tables.
    """

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    max_seq_len: int = 512
    window: int | None = None
    rope_base: float = 10000.0
    vocab_size: int = VOCAB_SIZE

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} must split into {self.n_heads} heads of even size"
            )
        if self.window is not None and (type(self.window) is not int or self.window < 1):
            raise ValueError(f"window must be None or a positive int, got {self.window!r}")
        if self.vocab_size < VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {VOCAB_SIZE}, got {self.vocab_size}")
        if not self.rope_base > 1.0:
            raise ValueError(f"rope_base must exceed 1, got {self.rope_base}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LMConfig:
        """Rebuild from `to_dict` output.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LM config keys: {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ValueError(f"invalid LM config: {exc}") from None


def encode(text: bytes, *, bos: bool = True) -> list[int]:
    """Token ids of `text`: one per byte, after BOS."""
    return ([BOS] if bos else []) + list(text)


def decode(ids: list[int]) -> bytes:
    """The bytes of the byte tokens in `ids` (special tokens dropped)."""
    return bytes(i for i in ids if 0 <= i < 256)


__all__ = ["ARCHITECTURE", "BOS", "EOS", "VOCAB_SIZE", "LMConfig", "decode", "encode"]
