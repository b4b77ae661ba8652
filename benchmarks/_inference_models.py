"""The models and their variants, built in the parent: quality against fp32, sizes, checkpoints.

Digits: trained on scikit-learn's real digits; int8 and int4 by `fedota.ml.quant`, `mcu-int8`
by `fedota.ml.mcu` (calibrated on the held-out calibration split); test-set accuracy per variant.
The trained LM: a small ByteLM trained from scratch on generated text; perplexity of held-out
generated text per variant. The speed model: the issue's shape with seeded random weights.
Each variant the children measure is written as a checkpoint (what the daemon loads) or, for
`mcu-int8`, as its flash export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import ratio, timed
from _inference_memory import held_tensor_bytes, int4_allowance
from _inference_plan import VARIANTS, Plan
from torch import nn

from fedota.ml import digits, mcu
from fedota.ml.checkpoint import save_checkpoint
from fedota.ml.lm import ARCHITECTURE as LM_ARCHITECTURE
from fedota.ml.lm import EOS, ByteLM, LMConfig, generate_corpus, perplexity, train_lm
from fedota.ml.quant import packed_int4_shapes, quantize_model, weight_bytes


def variant_of(model: nn.Module, variant: str) -> nn.Module:
    """`model` itself for fp32, else a quantized copy (int8 / int4, group 32)."""
    return model if variant == "fp32" else quantize_model(model, variant)  # type: ignore[arg-type]


def sizes(model: nn.Module) -> dict[str, Any]:
    """Weight memory: the state_dict's bytes (scales included) and every tensor held."""
    out: dict[str, Any] = {
        "weight_bytes": weight_bytes(model),
        "held_tensor_bytes": held_tensor_bytes(model),
    }
    allowance = int4_allowance(model)
    if allowance["int4_layers"]:
        out["int4"] = allowance
    return out


def write_checkpoint(
    path: Path, model: nn.Module, architecture: str, config: dict[str, Any], variant: str
) -> Path:
    """Save `model` as the daemon's checkpoint format (raises what `save_checkpoint` raises)."""
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=architecture,
        config=config,
        variant=variant,
        packed_int4=packed_int4_shapes(model),
    )
    return path


# ---------------------------------------------------------------- digits


def digits_part(plan: Plan, work: Path) -> tuple[dict[str, Any], dict[str, Path], np.ndarray]:
    """Train, quantize, measure accuracy; returns the figures, each variant's file and a few
    test rows for the load generator."""
    with timed() as box:
        model, data = digits.train_digits(seed=plan.seed, epochs=plan.digits_epochs)
    config = digits.config_of(model)
    reference = digits.accuracy(model, data.x_test, data.y_test)
    record: dict[str, Any] = {
        "data": {
            "train": len(data.y_train),
            "calibration": len(data.y_cal),
            "test": len(data.y_test),
        },
        "architecture": {"hidden": config["hidden"], "parameters": _parameters(model)},
        "train_cpu_s": round(box[0].cpu_s, 2),
        "variants": {},
    }
    files: dict[str, Path] = {}
    for variant in VARIANTS:
        quantized = variant_of(model, variant)
        got = digits.accuracy(quantized, data.x_test, data.y_test)
        record["variants"][variant] = {
            "accuracy": round(got, 6),
            "accuracy_retention": round(got / reference, 6),
            **sizes(quantized),
        }
        files[variant] = write_checkpoint(
            work / f"digits-{variant}.safetensors", quantized, digits.ARCHITECTURE, config, variant
        )
    small = mcu.quantize(model, data.x_cal)
    got = digits.accuracy(lambda pixels: mcu.predict(small, pixels), data.x_test, data.y_test)
    blob = mcu.export(small)
    files["mcu-int8"] = work / "digits-mcu-int8.bin"
    files["mcu-int8"].write_bytes(blob)
    record["variants"]["mcu-int8"] = {
        "accuracy": round(got, 6),
        "accuracy_retention": round(got / reference, 6),
        "weight_bytes": sum(layer.weights.nbytes + layer.bias.nbytes for layer in small.layers),
        "export_bytes": len(blob),
        "calibration": "minmax over the calibration split",
    }
    return record, files, data.x_test[:32]


# ---------------------------------------------------------------- the trained LM (perplexity)


def train_small_lm(plan: Plan) -> tuple[ByteLM, dict[str, Any]]:
    """The small LM, trained from scratch with full attention at `plan.lm_context` bytes."""
    config = LMConfig(**plan.lm_config())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = ByteLM(config)
    corpus = generate_corpus(plan.lm_corpus_lines, seed=plan.seed % 1000)
    with timed() as box:
        losses = train_lm(
            model, corpus, steps=plan.lm_steps, seq_len=plan.lm_context, seed=plan.seed
        )
    info = {
        "config": config.to_dict(),
        "parameters": _parameters(model),
        "corpus_bytes": len(corpus),
        "steps": plan.lm_steps,
        "batch": 32,
        "seq_len": plan.lm_context,
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "train_cpu_s": round(box[0].cpu_s, 1),
    }
    return model, info


def heldout_text(plan: Plan) -> bytes:
    """Generated text from another seed than the training corpus."""
    return generate_corpus(plan.lm_heldout_lines, seed=plan.seed % 1000 + 1)


def lm_quality(model: ByteLM, plan: Plan) -> dict[str, Any]:
    """Perplexity of the held-out text per variant; retention = ppl_fp32 / ppl_variant."""
    text = heldout_text(plan)
    out: dict[str, Any] = {"heldout_bytes": len(text), "context": plan.lm_context, "variants": {}}
    reference = None
    for variant in VARIANTS:
        quantized = variant_of(model, variant)
        ppl = perplexity(quantized, text, context=plan.lm_context)
        reference = ppl if reference is None else reference
        out["variants"][variant] = {
            "perplexity": round(ppl, 6),
            "ppl_retention": round(reference / ppl, 6),
            **sizes(quantized),
        }
    return out


# ---------------------------------------------------------------- the speed model


def speed_model(plan: Plan, window: int | None = None) -> ByteLM:
    """The issue's model with seeded random weights; its EOS logit is pinned to 0.

    A random head sometimes ranks EOS first and ends a sequence after a few tokens; with its
    row zeroed EOS scores 0 while the largest of the 257 other random logits is above 0, so
    every request generates the tokens it asked for and all variants do the same work.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = ByteLM(LMConfig(**plan.speed_config(window))).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] = 0.0
    return model


def speed_part(plan: Plan, work: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The speed model's variants: sizes, and a checkpoint each for the children."""
    model = speed_model(plan)
    record: dict[str, Any] = {
        "config": plan.speed_config(),
        "parameters": _parameters(model),
        "weights": "seeded random (speed does not depend on what they learned); EOS row zeroed",
        "variants": {},
    }
    files: dict[str, Path] = {}
    for variant in VARIANTS:
        quantized = variant_of(model, variant)
        record["variants"][variant] = sizes(quantized)
        files[variant] = write_checkpoint(
            work / f"lm-{variant}.safetensors",
            quantized,
            LM_ARCHITECTURE,
            plan.speed_config(),
            variant,
        )
    fp32 = record["variants"]["fp32"]["weight_bytes"]
    for variant in VARIANTS:
        record["variants"][variant]["vs_fp32"] = ratio(
            record["variants"][variant]["weight_bytes"], fp32
        )
    return record, files


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "digits_part",
    "heldout_text",
    "lm_quality",
    "sizes",
    "speed_model",
    "speed_part",
    "train_small_lm",
    "variant_of",
    "write_checkpoint",
]
