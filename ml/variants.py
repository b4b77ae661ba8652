"""Release variants: the artifact each hardware class runs, built from a version's fp32 checkpoint.

    report = build_variant(checkpoint, "int8", "int8.safetensors")
    report.size_bytes, report.metrics          # e.g. {"accuracy": 0.97, "accuracy_retention": 1.0}

fp32, int8 and int4 are checkpoints (`fedota.ml.checkpoint`) with the weights at that precision
(int4 packed two per byte, as held in memory at run time); `mcu-int8` is the integer-only
microcontroller export (`fedota.ml.mcu`), calibrated on held-out digits. Where real evaluation
data ships with the installation (the digits), the variant's accuracy and its retention against
fp32 are measured and returned.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from fedota.ml import digits
from fedota.ml.architectures import build_model, has_mcu_variant
from fedota.ml.checkpoint import Checkpoint, save_checkpoint
from fedota.ml.quant import packed_int4_shapes, quantize_model

CHECKPOINT_VARIANTS = ("fp32", "int8", "int4")
MCU_VARIANT = "mcu-int8"


class VariantError(ValueError):
    """A variant cannot be built from this checkpoint (unknown variant, not fp32, no mcu build)."""


@dataclass(frozen=True)
class VariantReport:
    """What was written: the file's size and the variant's measured quality."""

    variant: str
    size_bytes: int
    metrics: dict[str, float] = field(default_factory=dict)


def variants_of(architecture: str) -> tuple[str, ...]:
    """Every variant a release of this architecture builds."""
    return CHECKPOINT_VARIANTS + ((MCU_VARIANT,) if has_mcu_variant(architecture) else ())


def build_variant(
    checkpoint: Checkpoint, variant: str, out_path: str | os.PathLike[str]
) -> VariantReport:
    """Write `variant` of the fp32 `checkpoint` to `out_path` (atomically).

    Raises:
        VariantError: the checkpoint is not fp32, or the variant is not one of `variants_of`.
        UnknownArchitecture, InvalidArchitectureConfig: see `build_model`.
        ValueError: the weights do not fit the architecture.
        OSError: the file cannot be written.
    """
    if checkpoint.variant != "fp32":
        raise VariantError(f"variants are built from fp32 weights, got {checkpoint.variant}")
    if variant not in variants_of(checkpoint.architecture):
        raise VariantError(
            f"variant {variant!r} is not one of {', '.join(variants_of(checkpoint.architecture))}"
            f" for {checkpoint.architecture}"
        )
    model = build_model(checkpoint.architecture, checkpoint.config)
    try:
        model.load_state_dict(checkpoint.tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the weights do not fit {checkpoint.architecture}: {exc}") from None
    model.eval()
    if variant == MCU_VARIANT:
        return _write_mcu(model, out_path)
    built = model if variant == "fp32" else quantize_model(model, variant)  # type: ignore[arg-type]
    save_checkpoint(
        out_path,
        built.state_dict(),
        architecture=checkpoint.architecture,
        config=checkpoint.config,
        variant=variant,
        packed_int4=packed_int4_shapes(built),
    )
    is_digits = checkpoint.architecture == digits.ARCHITECTURE
    metrics = _digits_metrics(model, built) if is_digits else {}
    return VariantReport(variant, Path(out_path).stat().st_size, metrics)


def _digits_metrics(reference: nn.Module, built: nn.Module) -> dict[str, float]:
    data = digits.load_digits_data()
    base = digits.accuracy(reference, data.x_test, data.y_test)  # type: ignore[arg-type]
    value = digits.accuracy(built, data.x_test, data.y_test)  # type: ignore[arg-type]
    return {"accuracy": value, "accuracy_retention": value / base if base else 0.0}


def _write_mcu(model: nn.Module, out_path: str | os.PathLike[str]) -> VariantReport:
    from fedota.ml import mcu

    data = digits.load_digits_data()
    small = mcu.quantize(model, data.x_cal)  # type: ignore[arg-type]
    blob = mcu.export(small)
    base = digits.accuracy(model, data.x_test, data.y_test)  # type: ignore[arg-type]
    value = digits.accuracy(lambda x: mcu.predict(small, x), data.x_test, data.y_test)
    _write_atomically(Path(out_path), blob)
    metrics = {"accuracy": value, "accuracy_retention": value / base if base else 0.0}
    return VariantReport(MCU_VARIANT, len(blob), metrics)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


__all__ = [
    "CHECKPOINT_VARIANTS",
    "MCU_VARIANT",
    "VariantError",
    "VariantReport",
    "build_variant",
    "variants_of",
]
