"""The health check a newly switched-to model must pass before the device reports it healthy.

In order: every float weight in the file is finite; the model loads as the inference server
would load it (`fedota.client.inference.loading`); it is the model the slot was verified as (its
content hash and variant); and it answers probe inputs within bounds. A classifier gets a batch
of rows and must return one probability row per input, finite, in [0, 1], each summing to 1; a
language model gets prompts and must finish each within `max_new_tokens` greedy steps. Where
probes carry expected answers (labels, or the text a greedy generation starts with), at least
`min_agreement` of them must match.

Probes live in `<state>/models/probes.json`, keyed by architecture:

    {"digits-mlp": {"inputs": [[0, 3, 16, ...], ...], "labels": [7, ...], "min_agreement": 0.9},
     "fedota.bytelm": {"prompts": ["12+30="], "expected": ["42"], "max_new_tokens": 4}}

Without probes for its architecture a model still gets the built-in inputs (no expected answers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedota.client.update.apply_errors import HealthCheckFailed, SlotError
from fedota.client.update.slots import Slot
from fedota.delta import PatchError, SafetensorsFile

if TYPE_CHECKING:
    from fedota.client.inference.model import GenerationEngine, ModelInfo, ServedModel

PROBES_FILE = "probes.json"
FINISHED_REASONS = frozenset({"length", "eos", "stop"})
_SUM_TOLERANCE = 1e-3
_MAX_PROBES = 1024
_MAX_WIDTH = 1 << 16
_DEFAULT_PROMPTS = (b"1+1=", b"hello")
_DEFAULT_NEW_TOKENS = 4


@dataclass(frozen=True)
class ClassifierProbes:
    """Rows to classify and, optionally, the label each must get."""

    inputs: tuple[tuple[float, ...], ...]
    labels: tuple[int, ...] | None = None
    min_agreement: float = 1.0


@dataclass(frozen=True)
class GenerationProbes:
    """Prompts to complete greedily and, optionally, the text each completion must start with."""

    prompts: tuple[bytes, ...]
    expected: tuple[bytes, ...] | None = None
    max_new_tokens: int = _DEFAULT_NEW_TOKENS
    min_agreement: float = 1.0


Probes = ClassifierProbes | GenerationProbes


def parse_probes(data: Mapping[str, Any]) -> dict[str, Probes]:
    """Probes by architecture from the JSON object of a probes file.

    Raises:
        ValueError: an entry is malformed (unknown keys, wrong types, lengths that differ).
    """
    probes: dict[str, Probes] = {}
    for architecture, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{architecture}: probes must be a JSON object")
        try:
            probes[architecture] = _parse_entry(entry)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{architecture}: {exc}") from None
    return probes


def load_probes(path: Path) -> dict[str, Probes]:
    """The probes in the file at `path`; none when there is no file.

    Raises:
        SlotError: the file is unreadable or malformed.
    """
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SlotError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SlotError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SlotError(f"{path} must hold a JSON object keyed by architecture")
    try:
        return parse_probes(data)
    except ValueError as exc:
        raise SlotError(f"{path}: {exc}") from None


class HealthCheck:
    """Checks a slot's model; call it with the slot. Probes are fixed at construction."""

    def __init__(self, probes: Mapping[str, Probes] | None = None) -> None:
        self.probes = dict(probes or {})

    @classmethod
    def from_state_dir(cls, models_dir: Path) -> HealthCheck:
        """The check with the probes of `<models_dir>/probes.json` (none if absent).

        Raises:
            SlotError: the probes file is unreadable or malformed.
        """
        return cls(load_probes(models_dir / PROBES_FILE))

    def __call__(self, slot: Slot) -> ModelInfo:
        """Check the model in `slot`; what it serves as.

        Raises:
            HealthCheckFailed: with the first rule the model breaks.
        """
        return check_model(
            slot.model_path,
            content_sha256=slot.content_sha256,
            variant=slot.target.variant,
            probes=self.probes,
        )


def check_model(
    path: Path, *, content_sha256: str, variant: str, probes: Mapping[str, Probes]
) -> ModelInfo:
    """Check the model file at `path` (see the module docstring); what it serves as.

    Raises:
        HealthCheckFailed: with the first rule the model breaks.
    """
    # Imported here: torch and the inference runtime load only when a check runs, so that
    # recovering or installing up to the switch (e.g. at every start) stays light.
    from fedota.client.inference.loading import ModelLoadError, load_served_model
    from fedota.client.inference.model import Capability

    _check_weights_finite(path)
    try:
        model = load_served_model(path)
    except ModelLoadError as exc:
        raise HealthCheckFailed(f"the model does not load: {exc}") from None
    try:
        info = model.info
        if info.version != content_sha256:
            raise HealthCheckFailed(
                f"the model loads as {info.version[:16]}…, not {content_sha256[:16]}…"
            )
        if info.variant != variant:
            raise HealthCheckFailed(f"the model is variant {info.variant}, not {variant}")
        probe = probes.get(info.architecture)
        if Capability.PREDICT in model.capabilities:
            _probe_classifier(model, _classifier_probes(probe, info))
        elif Capability.GENERATE in model.capabilities:
            _probe_generation(model, _generation_probes(probe, info))
        else:
            raise HealthCheckFailed(f"{info.architecture} serves neither Predict nor Generate")
    except HealthCheckFailed:
        raise
    except Exception as exc:
        # The model is new code paths over new weights: whatever it raises is its failure.
        raise HealthCheckFailed(f"a probe failed: {type(exc).__name__}: {exc}") from None
    finally:
        model.close()
    return info


def _check_weights_finite(path: Path) -> None:
    try:
        with SafetensorsFile(path) as tensors:
            for name in sorted(tensors):
                tensor = tensors[name]
                if tensor.dtype == "BF16":  # all exponent bits set: Inf or NaN
                    finite = bool(np.all((tensor.data & 0x7F80) != 0x7F80))
                elif tensor.dtype in ("F16", "F32", "F64"):
                    finite = bool(np.isfinite(tensor.data).all())
                else:
                    continue
                if not finite:
                    raise HealthCheckFailed(f"weight {name} holds NaN or Inf")
    except (PatchError, OSError) as exc:
        raise HealthCheckFailed(f"the model file is unreadable: {exc}") from None


def _classifier_probes(probe: Probes | None, info: ModelInfo) -> ClassifierProbes:
    if probe is None:
        width = info.input_size or 1
        ramp = tuple(float(i % 17) for i in range(width))
        return ClassifierProbes(((0.0,) * width, (16.0,) * width, ramp))
    if not isinstance(probe, ClassifierProbes):
        raise HealthCheckFailed(f"the probes for {info.architecture} are not classifier probes")
    return probe


def _generation_probes(probe: Probes | None, info: ModelInfo) -> GenerationProbes:
    if probe is None:
        return GenerationProbes(_DEFAULT_PROMPTS)
    if not isinstance(probe, GenerationProbes):
        raise HealthCheckFailed(f"the probes for {info.architecture} are not generation probes")
    return probe


def _probe_classifier(model: ServedModel, probes: ClassifierProbes) -> None:
    batch = np.asarray(probes.inputs, dtype=np.float32)
    width = model.info.input_size
    if width is not None and batch.shape[1] != width:
        raise HealthCheckFailed(
            f"the model takes {width} features, its probes have {batch.shape[1]}"
        )
    out = np.asarray(model.predict(batch))
    classes = len(model.info.labels) or (out.shape[1] if out.ndim == 2 else 0)
    if out.shape != (len(batch), classes) or classes == 0:
        raise HealthCheckFailed(
            f"{len(batch)} probe rows gave an output of shape {out.shape}, "
            f"not ({len(batch)}, {classes})"
        )
    if not np.isfinite(out).all():
        raise HealthCheckFailed("the model answers NaN or Inf to the probe inputs")
    if out.min() < 0 or out.max() > 1 or not np.allclose(out.sum(axis=1), 1, atol=_SUM_TOLERANCE):
        raise HealthCheckFailed("the model's answers are not probability rows")
    if probes.labels is not None:
        right = int(np.sum(out.argmax(axis=1) == np.asarray(probes.labels)))
        _require_agreement(right, len(probes.labels), probes.min_agreement, "labels")


def _probe_generation(model: ServedModel, probes: GenerationProbes) -> None:
    engine = model.new_engine()
    answers = [_complete(engine, prompt, probes.max_new_tokens) for prompt in probes.prompts]
    if probes.expected is not None:
        right = sum(a.startswith(e) for a, e in zip(answers, probes.expected, strict=True))
        _require_agreement(right, len(answers), probes.min_agreement, "expected completions")


def _complete(engine: GenerationEngine, prompt: bytes, max_new_tokens: int) -> bytes:
    """One greedy completion, alone on the engine; it must finish within its token budget."""
    from fedota.client.inference.model import GenerationParams

    seq_id = engine.submit(GenerationParams(prompt, max_new_tokens))
    out = bytearray()
    for _ in range(max_new_tokens + 2):  # prefill emits the first token; one spare step
        for event in engine.step():
            if event.seq_id != seq_id:
                continue
            out += event.token
            if event.finished:
                if event.reason not in FINISHED_REASONS:
                    raise HealthCheckFailed(f"a probe prompt ended with {event.reason!r}")
                return bytes(out)
    raise HealthCheckFailed(f"a probe prompt did not finish within {max_new_tokens} tokens")


def _require_agreement(right: int, total: int, minimum: float, what: str) -> None:
    if right < math.ceil(minimum * total - 1e-9):
        raise HealthCheckFailed(
            f"the model matches {right} of {total} probe {what}, below the required {minimum:.0%}"
        )


def _parse_entry(entry: dict[str, Any]) -> Probes:
    minimum = float(entry.get("min_agreement", 1.0))
    if not 0 <= minimum <= 1:
        raise ValueError(f"min_agreement must be in [0, 1], got {minimum}")
    if "inputs" in entry:
        _only(entry, {"inputs", "labels", "min_agreement"})
        rows = _bounded_list(entry["inputs"], "inputs")
        inputs = tuple(
            tuple(float(v) for v in _bounded_list(row, "an input row", _MAX_WIDTH)) for row in rows
        )
        finite = all(math.isfinite(value) for row in inputs for value in row)
        if len({len(row) for row in inputs}) != 1 or not finite:
            raise ValueError("inputs must be rows of equal length of finite numbers")
        labels = entry.get("labels")
        parsed = (
            None if labels is None else tuple(_label(v) for v in _bounded_list(labels, "labels"))
        )
        if parsed is not None and len(parsed) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(parsed)} labels")
        return ClassifierProbes(inputs, parsed, minimum)
    _only(entry, {"prompts", "expected", "max_new_tokens", "min_agreement"})
    prompts = tuple(_text(p) for p in _bounded_list(entry["prompts"], "prompts"))
    expected = entry.get("expected")
    answers = (
        None if expected is None else tuple(_text(e) for e in _bounded_list(expected, "expected"))
    )
    if answers is not None and len(answers) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} expected completions")
    tokens = entry.get("max_new_tokens", _DEFAULT_NEW_TOKENS)
    if type(tokens) is not int or not 1 <= tokens <= 4096:
        raise ValueError(f"max_new_tokens must be an int in 1..4096, got {tokens!r}")
    return GenerationProbes(prompts, answers, tokens, minimum)


def _only(entry: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"unknown keys {', '.join(unknown)}")


def _bounded_list(value: object, what: str, limit: int = _MAX_PROBES) -> Sequence[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise ValueError(f"{what} must be a list of 1..{limit} items")
    return value


def _label(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"labels must be ints >= 0, got {value!r}")
    return value


def _text(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"prompts and completions must be non-empty strings, got {value!r}")
    return value.encode("utf-8")


__all__ = [
    "PROBES_FILE",
    "ClassifierProbes",
    "GenerationProbes",
    "HealthCheck",
    "Probes",
    "check_model",
    "load_probes",
    "parse_probes",
]
