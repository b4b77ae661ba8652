"""fedota.ml.lm: a small byte-level decoder-only LM, its KV-cache pool and generation engine.

model = ByteLM(LMConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256))
train_lm(model, generate_corpus())
engine = GenerationEngine(model)
engine.submit(GenerationRequest(b"12+30=", max_new_tokens=4))
"""

from fedota.ml.lm.config import ARCHITECTURE, BOS, EOS, VOCAB_SIZE, LMConfig, decode, encode
from fedota.ml.lm.corpus import generate_corpus
from fedota.ml.lm.engine import (
    EngineFull,
    GenerationEngine,
    GenerationRequest,
    InvalidRequest,
    TokenEvent,
    prefill_groups,
)
from fedota.ml.lm.kvcache import (
    DecodeBatch,
    KVCacheExhausted,
    KVCachePool,
    SequenceCache,
    blocks_needed,
    make_decode_batch,
)
from fedota.ml.lm.model import ByteLM
from fedota.ml.lm.train import perplexity, train_lm

__all__ = [
    "ARCHITECTURE",
    "BOS",
    "EOS",
    "VOCAB_SIZE",
    "ByteLM",
    "DecodeBatch",
    "EngineFull",
    "GenerationEngine",
    "GenerationRequest",
    "InvalidRequest",
    "KVCacheExhausted",
    "KVCachePool",
    "LMConfig",
    "SequenceCache",
    "TokenEvent",
    "blocks_needed",
    "decode",
    "encode",
    "generate_corpus",
    "make_decode_batch",
    "perplexity",
    "prefill_groups",
    "train_lm",
]
