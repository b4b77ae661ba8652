"""Checkpoints of the reference models load into served models that answer like the originals,
and files that cannot be served are refused with ModelLoadError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedota.client.inference import Capability
from fedota.client.inference.loading import ModelLoadError, load_served_model
from fedota.delta import load as load_tensors
from fedota.delta import model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.ml.lm import ARCHITECTURE as LM_ARCHITECTURE
from fedota.ml.lm import ByteLM, GenerationEngine, GenerationRequest, LMConfig
from fedota.ml.quant import packed_int4_shapes, quantize_model


@pytest.fixture(scope="module")
def classifier() -> digits.DigitsMLP:
    torch.manual_seed(0)
    return digits.build({"inputs": 64, "hidden": [32], "classes": 10}).eval()


def _save(
    path: Path, module: torch.nn.Module, architecture: str, config: dict, variant: str
) -> None:
    save_checkpoint(
        path,
        module.state_dict(),
        architecture=architecture,
        config=config,
        variant=variant,
        packed_int4=packed_int4_shapes(module) if variant == "int4" else None,
    )


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_a_classifier_checkpoint_serves_the_same_predictions(
    variant: str, classifier: digits.DigitsMLP, tmp_path: Path
) -> None:
    module = classifier if variant == "fp32" else quantize_model(classifier, variant)
    path = tmp_path / "digits.safetensors"
    _save(path, module, digits.ARCHITECTURE, digits.config_of(classifier), variant)
    served = load_served_model(path)
    pixels = np.random.default_rng(1).integers(0, 17, (5, 64)).astype(np.float32)
    assert served.capabilities == frozenset({Capability.PREDICT})
    assert served.info.variant == variant and served.info.input_size == 64
    assert served.info.version == model_hash(load_tensors(path))
    np.testing.assert_allclose(served.predict(pixels), digits.predict(module, pixels), atol=1e-6)


def test_an_lm_checkpoint_generates_what_the_original_generates(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=64)
    model = ByteLM(config).eval()
    path = tmp_path / "lm.safetensors"
    _save(path, model, LM_ARCHITECTURE, dict(vars(config)), "fp32")
    served = load_served_model(path)
    assert served.capabilities == frozenset({Capability.GENERATE})

    def tokens(engine: object) -> bytes:
        engine.submit(GenerationRequest(b"hello", max_new_tokens=6))  # type: ignore[attr-defined]
        out = b""
        for _ in range(20):
            for event in engine.step():  # type: ignore[attr-defined]
                out += event.token
            if not engine.active and not engine.waiting:  # type: ignore[attr-defined]
                break
        return out

    assert tokens(served.new_engine()) == tokens(GenerationEngine(model))


def test_files_that_cannot_be_served_are_refused(
    classifier: digits.DigitsMLP, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="No such file"):
        load_served_model(tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_served_model(garbage)
    unknown = tmp_path / "unknown.safetensors"
    _save(unknown, classifier, "resnet-50", {}, "fp32")
    with pytest.raises(ModelLoadError, match="architecture 'resnet-50'"):
        load_served_model(unknown)
    wrong = tmp_path / "wrong.safetensors"
    _save(
        wrong,
        classifier,
        digits.ARCHITECTURE,
        {"inputs": 64, "hidden": [16], "classes": 10},
        "fp32",
    )
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_served_model(wrong)
