"""SmoothQuant-style per-input-channel scales for int8 layers whose activations are quantized.

Activation outliers live in a few input channels; quantizing a whole token to 8 bits then
crushes every other channel (MiniLM: mean embedding cosine 0.976 with plain dynamic int8).
SmoothQuant (Xiao et al. 2023, eq. 4) divides channel j of the input by
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) and multiplies the weight's column j by it, which
moves part of the outlier into the weight, where per-channel int8 absorbs it. `Int8Linear`
holds 1 / s as its `input_scale`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

_FLOOR = 1e-5


def calibrate_input_scales(
    model: nn.Module,
    run: Callable[[nn.Module], object],
    *,
    alpha: float = 0.5,
    names: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-Linear input scales (1 / s_j) from the activations `run(model)` produces.

    `run` feeds calibration data through the (fp32) model; the model is not modified (hooks are
    removed afterwards).

    Raises:
        ValueError: alpha outside [0, 1], or `run` never reached a Linear layer.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    linears = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (names is None or name in names)
    }
    peaks: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0).float()
            peaks[name] = x if name not in peaks else torch.maximum(peaks[name], x)

        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    try:
        with torch.inference_mode():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    if not peaks:
        raise ValueError("calibration ran no Linear layer of the model")
    scales = {}
    for name, peak in peaks.items():
        w_peak = linears[name].weight.detach().abs().amax(dim=0).float()
        s = peak.clamp(min=_FLOOR).pow(alpha) / w_peak.clamp(min=_FLOOR).pow(1.0 - alpha)
        scales[name] = (1.0 / s.clamp(min=_FLOOR)).contiguous()
    return scales


__all__ = ["calibrate_input_scales"]
