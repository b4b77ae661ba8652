"""The delta benchmark's data: its run plan, models as name -> Tensor, and the synthetic datasets.

Synthetic transformer checkpoints (BERT-like shapes, heavy-tailed weights) changed by a simulated
AdamW fine-tune, a LoRA merge, a partial fine-tune, or replaced by an unrelated model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedota.delta.tensor import Tensor

Model = dict[str, Tensor]
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


def common_floats(base: Model, target: Model) -> list[str]:
    """Sorted names of the fp32 tensors present in both models with the same shape."""
    return [
        n
        for n in sorted(target)
        if target[n].dtype == "F32"
        and n in base
        and base[n].dtype == "F32"
        and base[n].shape == target[n].shape
    ]


def changed_fraction(base: Model, target: Model) -> float:
    """Fraction of the float weights whose bits differ between base and target."""
    names = common_floats(base, target)
    changed = sum(
        int(np.count_nonzero(base[n].data.view(np.uint32) != target[n].data.view(np.uint32)))
        for n in names
    )
    return round(changed / max(1, sum(target[n].numel for n in names)), 6)


def save_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """`arrays` serialized as a safetensors file."""
    from safetensors.numpy import save

    return save(dict(arrays))


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


def tiny_pair() -> tuple[Model, Model]:
    """A one-layer, width-128 encoder and 3 AdamW steps of it (fixed seed): enough for every
    mode's diff and apply to load the library's compiled code, the low-rank path included
    (its 128 x 128 matrices are the smallest that get factors)."""
    rng = np.random.default_rng(0)
    plan = Plan(vocab=64, hidden=128, layers=1, positions=16)
    base = pretrained_like(bert_shapes(plan), rng)
    return base, adamw_finetune(base, rng, 3, lr=plan.lr)
