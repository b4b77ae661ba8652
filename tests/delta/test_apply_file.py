"""Streaming apply of files: the output is the target, written atomically only once verified,
in memory of the order of the base plus one tensor."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from delta_fuzz import sample
from delta_helpers import Model, adam_like, assert_models_equal, model_pairs
from hypothesis import given, settings

from fedota.delta import (
    BaseMismatch,
    PatchIntegrityError,
    PatchTruncated,
    SafetensorsFile,
    Tensor,
    apply_file,
    diff,
    load,
    model_hash,
    save,
)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, dict[str, Tensor], str]:
    base, patch = sample()
    base_path, patch_path = tmp_path / "base.safetensors", tmp_path / "v2.patch"
    save(base_path, base, metadata={"format": "pt"})
    patch_path.write_bytes(patch.to_bytes())
    assert patch.target is not None
    return base_path, patch_path, dict(patch.target), patch.target_hash


def test_apply_file_writes_the_target(files: tuple[Path, Path, dict[str, Tensor], str]) -> None:
    base_path, patch_path, target, target_hash = files
    out = base_path.parent / "out.safetensors"
    assert apply_file(base_path, patch_path, out) == target_hash
    assert_models_equal(load(out), target)
    assert SafetensorsFile(out).metadata["format"] == "pt"  # the base's metadata carries over
    assert model_hash(load(out)) == target_hash


@settings(max_examples=25, deadline=None)
@given(pair=model_pairs())
def test_streaming_and_in_memory_apply_agree(pair: tuple[Model, Model]) -> None:
    base, target = pair
    patch = diff(base, target, lossless=True)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        save(directory / "base", base)
        (directory / "patch").write_bytes(patch.to_bytes())
        apply_file(directory / "base", directory / "patch", directory / "out")
        assert_models_equal(load(directory / "out"), target)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_wrong_base_writes_nothing(files: tuple[Path, Path, dict[str, Tensor], str]) -> None:
    base_path, patch_path, target, _ = files
    wrong = base_path.parent / "wrong.safetensors"
    save(wrong, target)
    before = _leftovers(base_path.parent)
    with pytest.raises(BaseMismatch):
        apply_file(wrong, patch_path, base_path.parent / "out.safetensors")
    assert _leftovers(base_path.parent) == before


@pytest.mark.parametrize("damage", ["payload", "truncate"])
def test_a_damaged_patch_leaves_an_existing_output_alone(
    files: tuple[Path, Path, dict[str, Tensor], str], damage: str
) -> None:
    base_path, patch_path, _, _ = files
    raw = bytearray(patch_path.read_bytes())
    if damage == "payload":
        raw[-5] ^= 0x40  # inside the last payload: its hash no longer matches
    else:
        del raw[-5:]
    patch_path.write_bytes(bytes(raw))
    out = base_path.parent / "out.safetensors"
    out.write_bytes(b"the model the device runs now")
    before = _leftovers(base_path.parent)
    with pytest.raises(PatchIntegrityError if damage == "payload" else PatchTruncated):
        apply_file(base_path, patch_path, out)
    assert out.read_bytes() == b"the model the device runs now"
    assert _leftovers(base_path.parent) == before


_MEASURE = """
import json, resource, sys
from fedota.delta import apply_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
apply_file(sys.argv[1], sys.argv[2], sys.argv[3])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before": before * 1024, "after": after * 1024}))
"""


@pytest.mark.timeout(300)
def test_streaming_apply_needs_about_the_base_plus_one_tensor(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    count, shape = 16, (1024, 1024)  # 16 tensors of 4 MiB: a 64 MiB model
    base, target = {}, {}
    for index in range(count):
        old, new = adam_like(rng, shape)
        base[f"layer.{index:02d}"], target[f"layer.{index:02d}"] = old, new
    patch = diff(base, target, lossless=True, codecs=["raw", "bitdiff"])
    base_path, patch_path = tmp_path / "base.safetensors", tmp_path / "p.patch"
    save(base_path, base)
    patch_path.write_bytes(patch.to_bytes())
    del base, target, patch
    out = tmp_path / "out.safetensors"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(base_path), str(patch_path), str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
    )
    rss = json.loads(done.stdout)
    grown = rss["after"] - rss["before"]
    model_bytes, tensor_bytes = 64 << 20, 4 << 20
    # Base pages mapped + a few temporaries of one tensor; an in-memory apply would hold
    # base + patch + target (> 2x the model).
    assert grown < model_bytes + 8 * tensor_bytes, f"grew {grown >> 20} MiB"
    assert out.stat().st_size > model_bytes
