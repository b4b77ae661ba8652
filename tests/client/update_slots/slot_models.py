"""Real model files for the slot tests: digits-MLP checkpoints v1 and v2 (a fine-tune-sized step
away), a v2 with a NaN weight (signed and hashed like any release, but unhealthy), and patches
made with `fedota.delta.diff` between them. Small enough to build in well under a second."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fedota.client.inference.loading import load_served_model
from fedota.client.update.durable import is_temp
from fedota.client.update.slots import MODEL_FILE, SlotStore
from fedota.delta import diff, load, model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.ml.quant import packed_int4_shapes, quantize_model
from fedota.update_targets import ArtifactTarget

CONFIG = {"inputs": 64, "hidden": [32], "classes": 10}
FAMILY = "digits"


@dataclass(frozen=True)
class Release:
    """One released model: its file and the signed target it is installed as."""

    path: Path
    target: ArtifactTarget


@dataclass(frozen=True)
class Models:
    v1: Release
    v2: Release
    bad: Release  # v2 with a NaN weight: verifies, but fails its health check
    patch: Path  # v1 -> v2
    bad_patch: Path  # v1 -> bad


def _module(seed: int, step: float = 0.0, nan: bool = False) -> digits.DigitsMLP:
    torch.manual_seed(1)
    module = digits.build(CONFIG).eval()
    if step:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in module.parameters():
                parameter += step * torch.randn(parameter.shape, generator=generator)
    if nan:
        with torch.no_grad():
            module.layers[0].weight[3, 5] = float("nan")
    return module


def save_release(
    path: Path, module: torch.nn.Module, version: int, variant: str = "fp32"
) -> Release:
    """Save `module` (quantized to `variant`) as a checkpoint and describe it as a signed target."""
    shipped = module if variant == "fp32" else quantize_model(module, variant)
    save_checkpoint(
        path,
        shipped.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=CONFIG,
        variant=variant,
        packed_int4=packed_int4_shapes(shipped) if variant == "int4" else None,
    )
    target = ArtifactTarget(FAMILY, version, variant, model_hash(load(path)))
    return Release(path, target)


def write_patch(base: Path, target: Path, out: Path) -> Path:
    out.write_bytes(diff(load(base), load(target), lossless=True).to_bytes())
    return out


def build_models(directory: Path) -> Models:
    directory.mkdir(parents=True, exist_ok=True)
    v1 = save_release(directory / "v1.safetensors", _module(1), 1)
    v2 = save_release(directory / "v2.safetensors", _module(2, step=0.01), 2)
    bad = save_release(directory / "bad.safetensors", _module(2, step=0.01, nan=True), 3)
    return Models(
        v1,
        v2,
        bad,
        write_patch(v1.path, v2.path, directory / "v1-v2.patch"),
        write_patch(v1.path, bad.path, directory / "v1-bad.patch"),
    )


def temp_files(state_dir: Path) -> list[Path]:
    """Temp files anywhere under the state directory's models."""
    root = SlotStore(state_dir).root
    return [path for path in root.rglob("*") if is_temp(path)] if root.exists() else []


def snapshot(state_dir: Path) -> dict[str, bytes]:
    """Every file under the models directory (relative path -> bytes), to compare before/after."""
    root = SlotStore(state_dir).root
    return {
        os.fspath(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "slots.lock"
    }


def assert_runs(state_dir: Path, release: Release | None) -> None:
    """The device's active slot is `release` (None: no model), committed, and its file hashes to
    the signed content and loads; no temp file and no journal is left."""
    slots = SlotStore(state_dir)
    active = slots.active()
    pointer = slots.pointer()
    assert not pointer.pending
    assert temp_files(state_dir) == []
    assert not (slots.root / "update.json").exists()
    if release is None:
        assert active is None
        return
    assert active is not None
    assert active.target == release.target
    assert slots.content_hash(active.model_path) == release.target.content_sha256
    served = load_served_model(active.directory / MODEL_FILE)
    assert served.info.version == release.target.content_sha256
    served.close()


def pointer_json(state_dir: Path) -> dict[str, object]:
    return json.loads((SlotStore(state_dir).root / "active.json").read_text())
