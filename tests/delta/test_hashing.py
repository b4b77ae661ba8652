"""The model hash: equal models hash equally whatever the file layout; any change shows."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from fedota.delta import SafetensorsFile, Tensor, model_hash, save
from fedota.delta.hashing import DOMAIN, ModelHasher


def model() -> dict[str, Tensor]:
    return {
        "b": Tensor("F32", (2,), np.array([1.0, -0.0], np.float32)),
        "a": Tensor("I4", (3,), np.array([0x21, 0x03], np.uint8)),
        "c": Tensor("BF16", (), np.array([0x3F80], np.uint16)),
    }


def test_the_canonical_stream_is_as_documented() -> None:
    one = {"w": Tensor("I8", (2,), np.array([1, -1], np.int8))}
    u64 = struct.Struct("<Q").pack
    stream = DOMAIN + u64(1) + b"w" + u64(2) + b"I8" + u64(1) + u64(2) + u64(2) + b"\x01\xff"
    assert model_hash(one) == hashlib.sha256(stream).hexdigest()


def test_order_of_the_mapping_does_not_matter() -> None:
    forward = model()
    backward = dict(reversed(list(forward.items())))
    assert model_hash(forward) == model_hash(backward)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("c"),
        lambda m: m.update(c=Tensor("F16", (), np.array([1.0], np.float16))),
        lambda m: m.update(b=Tensor("F32", (2, 1), m["b"].data)),
        lambda m: m.update(b=Tensor("F32", (2,), np.array([1.0, 0.0], np.float32))),
        lambda m: m.update(d=Tensor("U8", (0,), np.zeros(0, np.uint8))),
        lambda m: m.update(bb=m.pop("b")),
    ],
    ids=["removed", "dtype", "shape", "sign of zero", "empty tensor added", "renamed"],
)
def test_every_part_of_a_tensor_counts(change) -> None:  # type: ignore[no-untyped-def]
    changed = model()
    change(changed)
    assert model_hash(changed) != model_hash(model())


def test_the_file_layout_does_not_matter(tmp_path: Path) -> None:
    save(tmp_path / "one.safetensors", model())
    save(tmp_path / "two.safetensors", model(), metadata={"format": "pt", "note": "x"})
    with (
        SafetensorsFile(tmp_path / "one.safetensors") as one,
        SafetensorsFile(tmp_path / "two.safetensors") as two,
    ):
        assert model_hash(one) == model_hash(two) == model_hash(model())


def test_streaming_needs_increasing_names() -> None:
    hasher = ModelHasher()
    hasher.add("b", model()["b"])
    with pytest.raises(ValueError, match="must increase"):
        hasher.add("a", model()["a"])
