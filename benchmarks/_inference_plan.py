"""The inference benchmark's run plan: model sizes, workloads, durations (`--quick` shrinks them).

Two language models on purpose (as the issue asks): the speed model has the issue's shape
(six d=512 blocks, ~75 MB of fp32 weights) with seeded random weights, since decoding speed does
not depend on what the weights learned; perplexity comes from a small model trained from scratch
on generated text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

DIGITS_VARIANTS = ("fp32", "int8", "int4", "mcu-int8")
VARIANTS = ("fp32", "int8", "int4")
MODES = ("batched", "one_at_a_time")


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    quick: bool = False
    seed: int = 20261125
    # digits classifier (scikit-learn's real digits)
    digits_epochs: int = 30
    # the trained LM: perplexity per variant and the sliding window at 4x its window
    lm_d_model: int = 128
    lm_layers: int = 2
    lm_heads: int = 4
    lm_context: int = 128  # trained and evaluated at this context: 4x lm_window
    lm_window: int = 32
    lm_steps: int = 400
    lm_corpus_lines: int = 2000
    lm_heldout_lines: int = 200
    # the speed model (issue 4): ByteLM(d_model=512, n_layers=6, n_heads=8, d_ff=2048, 1024)
    speed_d_model: int = 512
    speed_layers: int = 6
    speed_heads: int = 8
    speed_d_ff: int = 2048
    speed_max_seq_len: int = 1024
    speed_window: int = 256  # the sliding-window figures at 4x this = max_seq_len
    gen_new_tokens: int = 64  # tokens per sequence in the in-process generation runs
    gen_batch: int = 16  # sequences decoded together in the batched run
    gen_repeats: int = 3  # best of, by CPU time
    # MiniLM (bench extra)
    minilm_sentences: int = 256
    minilm_batch: int = 32
    # in-process single-request latency samples per variant
    latency_samples: int = 200
    # serving through the real server, per variant and mode; the same requests in --quick,
    # only shorter windows. A generation window must span several waves of 16 sequences
    # (each wave prefills 16 prompts, then decodes them together).
    concurrency: tuple[int, ...] = (1, 4, 16)
    serve_seconds: float = 4.0
    serve_seconds_generate: float = 8.0
    serve_new_tokens: int = 64
    skip_minilm: bool = False

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            lm_d_model=64,
            lm_steps=200,
            lm_heldout_lines=100,
            gen_new_tokens=32,
            gen_repeats=1,
            minilm_sentences=128,
            latency_samples=60,
            serve_seconds=1.0,
            serve_seconds_generate=3.0,
        )

    @classmethod
    def tiny_plan(cls) -> Plan:
        """For the tests: every part runs, on toy sizes, in seconds."""
        return replace(
            cls.quick_plan(),
            digits_epochs=3,
            lm_d_model=32,
            lm_heads=2,
            lm_context=32,
            lm_window=8,
            lm_steps=5,
            lm_corpus_lines=200,
            lm_heldout_lines=10,
            speed_d_model=64,
            speed_layers=1,
            speed_heads=2,
            speed_d_ff=128,
            speed_max_seq_len=64,
            speed_window=16,
            gen_new_tokens=4,
            gen_batch=4,
            latency_samples=5,
            concurrency=(1, 4),
            serve_seconds=0.3,
            serve_seconds_generate=0.3,
            serve_new_tokens=4,
            skip_minilm=True,
        )

    def speed_config(self, window: int | None = None) -> dict[str, Any]:
        """The speed model's LMConfig as a dict (`window` for the sliding-window run)."""
        return {
            "d_model": self.speed_d_model,
            "n_layers": self.speed_layers,
            "n_heads": self.speed_heads,
            "d_ff": self.speed_d_ff,
            "max_seq_len": self.speed_max_seq_len,
            "window": window,
        }

    def lm_config(self, window: int | None = None) -> dict[str, Any]:
        """The trained LM's LMConfig as a dict: room for BOS plus `lm_context` bytes."""
        return {
            "d_model": self.lm_d_model,
            "n_layers": self.lm_layers,
            "n_heads": self.lm_heads,
            "d_ff": 4 * self.lm_d_model,
            "max_seq_len": self.lm_context + 1,
            "window": window,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["concurrency"] = list(self.concurrency)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "concurrency": tuple(data["concurrency"])})


__all__ = ["DIGITS_VARIANTS", "MODES", "VARIANTS", "Plan"]
