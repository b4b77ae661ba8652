"""Checkpoints: round trips per variant, the format others read, and refusals of bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from fedota import delta
from fedota.ml.checkpoint import (
    CHECKPOINT_VARIANTS,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from fedota.ml.lm import ARCHITECTURE, ByteLM, LMConfig
from fedota.ml.quant import load_quantized_state, packed_int4_shapes, quantize_model

CONFIG = LMConfig(d_model=64, n_layers=1, n_heads=2, d_ff=128, max_seq_len=32)


def _model(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ByteLM(CONFIG)
    return model if variant == "fp32" else quantize_model(model, variant)  # type: ignore[arg-type]


def _save(path: Path, model: torch.nn.Module, variant: str) -> None:
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=ARCHITECTURE,
        config=CONFIG.to_dict(),
        variant=variant,
        packed_int4=packed_int4_shapes(model),
    )


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_round_trip_rebuilds_the_model(tmp_path: Path, variant: str) -> None:
    model = _model(variant)
    path = tmp_path / f"{variant}.safetensors"
    _save(path, model, variant)
    loaded = load_checkpoint(path)
    assert (loaded.architecture, loaded.variant) == (ARCHITECTURE, variant)
    assert LMConfig.from_dict(loaded.config) == CONFIG
    state = model.state_dict()
    assert loaded.tensors.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded.tensors[name].dtype == tensor.dtype
        assert torch.equal(loaded.tensors[name], tensor), name
    assert loaded.packed_int4 == packed_int4_shapes(model)
    rebuilt = load_quantized_state(ByteLM(LMConfig.from_dict(loaded.config)), loaded.tensors)
    tokens = torch.randint(0, 256, (1, 12))
    with torch.inference_mode():
        assert torch.equal(rebuilt(tokens), model(tokens))


def test_int4_tensors_are_delta_i4_and_plain_safetensors(tmp_path: Path) -> None:
    model = _model("int4")
    path = tmp_path / "int4.safetensors"
    _save(path, model, "int4")
    files = delta.load(path)
    name = "blocks.0.qkv.weight"
    assert files[name].dtype == "I4" and files[name].shape == (192, 64)
    raw = safetensors.numpy.load_file(str(path))
    assert raw[name].dtype == np.uint8 and raw[name].shape == (192, 32)
    assert np.array_equal(raw[name], model.state_dict()[name].numpy())


def test_delta_patches_one_int4_checkpoint_into_another(tmp_path: Path) -> None:
    base, target = tmp_path / "v1.safetensors", tmp_path / "v2.safetensors"
    _save(base, _model("int4"), "int4")
    torch.manual_seed(7)
    _save(target, quantize_model(ByteLM(CONFIG), "int4"), "int4")
    patch = delta.diff(delta.load(base), delta.load(target), lossless=True)
    (tmp_path / "v2.patch").write_bytes(patch.to_bytes())
    out = tmp_path / "patched.safetensors"
    delta.apply_file(base, tmp_path / "v2.patch", out)
    patched, wanted = load_checkpoint(out), load_checkpoint(target)
    assert patched.packed_int4 == wanted.packed_int4
    assert all(torch.equal(patched.tensors[k], t) for k, t in wanted.tensors.items())


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    _save(path, _model("fp32"), "fp32")
    _save(path, _model("int8"), "int8")
    assert load_checkpoint(path).variant == "int8"
    assert os.listdir(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "int3"}, "variant must be one of"),
        ({"architecture": ""}, "architecture"),
        ({"config": {"bad": float("nan")}}, "JSON"),
        ({"packed_int4": {"missing": (2, 2)}}, "not given"),
        ({"packed_int4": {"w": (3, 3)}}, "packed int4 needs"),
        ({"tensors": {"w": torch.zeros(2, dtype=torch.complex64)}}, "cannot be stored"),
    ],
)
def test_save_refuses_bad_arguments_and_writes_nothing(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    path = tmp_path / "model.safetensors"
    args = {
        "tensors": {"w": torch.zeros(2, 2, dtype=torch.uint8)},
        "architecture": ARCHITECTURE,
        "config": {},
        "variant": "fp32",
        **kwargs,
    }
    tensors = args.pop("tensors")
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(path, tensors, **args)
    assert not path.exists() and os.listdir(tmp_path) == []


def _write_with_metadata(path: Path, metadata: dict[str, str]) -> None:
    delta.save(path, {"w": delta.Tensor("F32", (2,), np.zeros(2, np.float32))}, metadata=metadata)


GOOD = {
    "fedota.architecture": ARCHITECTURE,
    "fedota.config": "{}",
    "fedota.variant": "fp32",
}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "metadata lacks fedota.architecture, fedota.config, fedota.variant"),
        ({**GOOD, "fedota.variant": "fp64"}, "variant 'fp64' is not one of"),
        ({**GOOD, "fedota.config": "[1, 2]"}, "not a JSON object"),
        ({**GOOD, "fedota.config": "{oops"}, "not a JSON object"),
        ({**GOOD, "fedota.architecture": ""}, "is empty"),
    ],
)
def test_load_refuses_missing_or_invalid_metadata(
    tmp_path: Path, metadata: dict[str, str], message: str
) -> None:
    path = tmp_path / "model.safetensors"
    _write_with_metadata(path, metadata)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "header"])
def test_load_refuses_files_that_are_not_safetensors(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "model.safetensors"
    _save(path, _model("int4"), "int4")
    data = path.read_bytes()
    damaged = {
        "garbage": os.urandom(256),
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "header": data[:8] + b"{" * (len(data) - 8),
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path)


def test_load_of_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_every_variant_name_is_accepted(tmp_path: Path) -> None:
    for variant in CHECKPOINT_VARIANTS:
        path = tmp_path / f"{variant}.safetensors"
        save_checkpoint(path, {}, architecture="x", config={"k": 1}, variant=variant)
        loaded = load_checkpoint(path)
        assert (loaded.variant, loaded.config, loaded.tensors) == (variant, {"k": 1}, {})
        assert json.loads(json.dumps(loaded.config)) == {"k": 1}
