"""The reference architectures by name: what a checkpoint's `fedota.architecture` builds.

    model = build_model("digits-mlp", {"inputs": 64, "hidden": [64, 32], "classes": 10})

The coordinator (building release variants) and the device (serving, training) both build
models from a checkpoint's description through this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from fedota.ml import digits
from fedota.ml.lm.config import ARCHITECTURE as LM_ARCHITECTURE


class UnknownArchitecture(ValueError):
    """A checkpoint names an architecture this installation cannot build."""


class InvalidArchitectureConfig(ValueError):
    """A checkpoint's config does not describe a model of its architecture."""


def _build_lm(config: Mapping[str, Any]) -> nn.Module:
    from fedota.ml.lm import ByteLM, LMConfig

    return ByteLM(LMConfig(**dict(config)))


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    digits.ARCHITECTURE: digits.build,
    LM_ARCHITECTURE: _build_lm,
}
ARCHITECTURES = tuple(sorted(_BUILDERS))


def build_model(architecture: str, config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of `architecture` described by `config`.

    Raises:
        UnknownArchitecture: not one of ARCHITECTURES.
        InvalidArchitectureConfig: the config does not fit the architecture.
    """
    builder = _BUILDERS.get(architecture)
    if builder is None:
        raise UnknownArchitecture(
            f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )
    try:
        return builder(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArchitectureConfig(
            f"config does not describe a {architecture} model: {exc}"
        ) from None


def has_mcu_variant(architecture: str) -> bool:
    """Whether the architecture has an integer-only microcontroller build (`mcu-int8`)."""
    return architecture == digits.ARCHITECTURE


__all__ = [
    "ARCHITECTURES",
    "InvalidArchitectureConfig",
    "UnknownArchitecture",
    "build_model",
    "has_mcu_variant",
]
