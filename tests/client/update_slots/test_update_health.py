"""The health check: a model passes only if it loads as the signed model and answers its probes
within bounds; each way to fail names its rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from slot_models import CONFIG, Models, save_release

from fedota.client.inference.loading import load_served_model
from fedota.client.update.apply_errors import HealthCheckFailed, SlotError
from fedota.client.update.health import (
    ClassifierProbes,
    GenerationProbes,
    HealthCheck,
    check_model,
    load_probes,
    parse_probes,
)
from fedota.delta import load, model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.ml.lm import ARCHITECTURE as LM_ARCHITECTURE
from fedota.ml.lm import ByteLM, LMConfig

pytestmark = pytest.mark.timeout(60)
PIXELS = np.random.default_rng(7).integers(0, 17, (12, 64)).astype(float)


def _check(path: Path, probes: dict | None = None, **overrides: str) -> object:
    expected = {"content_sha256": model_hash(load(path)), "variant": "fp32", **overrides}
    return check_model(path, probes=probes or {}, **expected)


def _labels_of(path: Path) -> tuple[int, ...]:
    served = load_served_model(path)
    return tuple(int(i) for i in served.predict(PIXELS.astype(np.float32)).argmax(axis=1))


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_a_sound_classifier_passes_in_every_variant(variant: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    release = save_release(tmp_path / f"{variant}.safetensors", digits.build(CONFIG), 1, variant)
    info = _check(release.path, variant=variant)
    assert info.version == release.target.content_sha256 and info.variant == variant


def _classifier_probes(labels: tuple[int, ...], minimum: float = 1.0) -> dict:
    return {digits.ARCHITECTURE: ClassifierProbes(tuple(map(tuple, PIXELS)), labels, minimum)}


def test_probe_labels_must_agree(models: Models) -> None:
    right = _labels_of(models.v1.path)
    _check(models.v1.path, _classifier_probes(right))
    flipped = tuple((label + 1) % 10 for label in right)
    with pytest.raises(HealthCheckFailed, match="matches 0 of 12 probe labels"):
        _check(models.v1.path, _classifier_probes(flipped))
    half = flipped[:6] + right[6:]
    _check(models.v1.path, _classifier_probes(half, 0.5))
    with pytest.raises(
        HealthCheckFailed, match="matches 6 of 12 probe labels, below the required 60%"
    ):
        _check(models.v1.path, _classifier_probes(half, 0.6))


def test_nan_weights_fail(models: Models) -> None:
    with pytest.raises(HealthCheckFailed, match=r"weight layers\.0\.weight holds NaN"):
        _check(models.bad.path)


def test_a_model_that_is_not_the_signed_one_fails(models: Models) -> None:
    with pytest.raises(HealthCheckFailed, match="loads as"):
        _check(models.v1.path, content_sha256=models.v2.target.content_sha256)
    with pytest.raises(HealthCheckFailed, match="variant fp32, not int8"):
        _check(models.v1.path, variant="int8")


def test_a_model_that_does_not_load_fails(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "odd.safetensors"
    save_checkpoint(
        path,
        digits.build(CONFIG).state_dict(),
        architecture="no-such-architecture",
        config=CONFIG,
        variant="fp32",
    )
    with pytest.raises(HealthCheckFailed, match="does not load"):
        _check(path)


def test_probes_of_the_wrong_width_fail(models: Models) -> None:
    probes = {digits.ARCHITECTURE: ClassifierProbes(((1.0, 2.0),))}
    with pytest.raises(HealthCheckFailed, match="takes 64 features"):
        _check(models.v1.path, probes)


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=64)
    path = tmp_path_factory.mktemp("lm") / "lm.safetensors"
    save_checkpoint(
        path,
        ByteLM(config).eval().state_dict(),
        architecture=LM_ARCHITECTURE,
        config=config.to_dict(),
        variant="fp32",
    )
    return path


def test_a_language_model_completes_its_prompts(lm_path: Path) -> None:
    _check(lm_path)  # the built-in prompts
    first = _complete(lm_path, b"12+30=")
    assert first, "the random LM must produce something for the test to mean anything"
    matching = {LM_ARCHITECTURE: GenerationProbes((b"12+30=",), (first[:2],), max_new_tokens=4)}
    _check(lm_path, matching)
    wrong = bytes([(first[0] + 1) % 256])
    failing = {LM_ARCHITECTURE: GenerationProbes((b"12+30=",), (wrong,), max_new_tokens=4)}
    with pytest.raises(HealthCheckFailed, match="matches 0 of 1 probe expected completions"):
        _check(lm_path, failing)


def test_a_prompt_too_long_for_the_model_fails(lm_path: Path) -> None:
    probes = {LM_ARCHITECTURE: GenerationProbes((b"x" * 80,), max_new_tokens=4)}
    with pytest.raises(HealthCheckFailed, match="InvalidRequest"):
        _check(lm_path, probes)


def _complete(path: Path, prompt: bytes) -> bytes:
    from fedota.client.inference.model import GenerationParams

    engine = load_served_model(path).new_engine()
    seq = engine.submit(GenerationParams(prompt, 4))
    out = b""
    for _ in range(6):
        for event in engine.step():
            assert event.seq_id == seq
            out += event.token
    return out


def test_probes_file_round_trip(tmp_path: Path, models: Models) -> None:
    (tmp_path / "probes.json").write_text(
        json.dumps(
            {
                digits.ARCHITECTURE: {
                    "inputs": PIXELS.tolist(),
                    "labels": list(_labels_of(models.v1.path)),
                    "min_agreement": 0.9,
                },
                LM_ARCHITECTURE: {"prompts": ["1+1="], "expected": ["2"], "max_new_tokens": 3},
            }
        )
    )
    check = HealthCheck.from_state_dir(tmp_path)
    classifier = check.probes[digits.ARCHITECTURE]
    assert isinstance(classifier, ClassifierProbes) and classifier.min_agreement == 0.9
    assert check.probes[LM_ARCHITECTURE] == GenerationProbes((b"1+1=",), (b"2",), 3)
    assert load_probes(tmp_path / "absent.json") == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"inputs": [[1, 2], [3]]}, "equal length"),
        ({"inputs": [[1, 2]], "labels": [1, 2]}, "1 inputs but 2 labels"),
        ({"inputs": [[1, 2]], "labels": [-1]}, "labels must be ints"),
        ({"inputs": [[1, 2]], "min_agreement": 2}, "min_agreement"),
        ({"inputs": [], "labels": []}, "1..1024"),
        ({"prompts": ["a"], "expected": ["b", "c"]}, "1 prompts but 2 expected"),
        ({"prompts": [""]}, "non-empty strings"),
        ({"prompts": ["a"], "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompts": ["a"], "temperature": 1}, "unknown keys temperature"),
    ],
)
def test_malformed_probes_are_refused(entry: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        parse_probes({"arch": entry})
    (tmp_path / "probes.json").write_text(json.dumps({"arch": entry}))
    with pytest.raises(SlotError, match=message):
        HealthCheck.from_state_dir(tmp_path)
