"""safetensors files: our writer's output is what the `safetensors` package reads (BF16 and
packed int4 included), and the reader refuses every malformed header before trusting it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors
from delta_helpers import DTYPES, assert_models_equal, tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from fedota.delta import (
    Limits,
    ModelFormatError,
    SafetensorsFile,
    TargetMismatch,
    Tensor,
    UnsupportedTensor,
    load,
    save,
)
from fedota.delta.safetensors_io import INT4_KEY, INT4_SHAPES_KEY

Model = dict[str, Tensor]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model=st.dictionaries(st.text("abé._", min_size=1, max_size=5), tensors(), max_size=5))
def test_any_model_round_trips(tmp_path: Path, model: Model) -> None:
    path = tmp_path / "m.safetensors"
    save(path, model)
    assert_models_equal(load(path), model)


def test_bf16_and_int4_read_back_in_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    bits = np.array([0x3F80, 0xC000, 0x7FC1, 0x8000], np.uint16)  # 1, -2, NaN payload, -0
    packed = np.array([0x21, 0x43, 0x05], np.uint8)
    model = {
        "bf": Tensor("BF16", (2, 2), bits),
        "even": Tensor("I4", (2, 3), packed),
        "odd": Tensor("I4", (5,), packed),
    }
    path = tmp_path / "m.safetensors"
    save(path, model, metadata={"format": "pt"})
    with safetensors.safe_open(path, "pt") as handle:
        assert handle.metadata()[INT4_KEY] == '["even", "odd"]'
        assert json.loads(handle.metadata()[INT4_SHAPES_KEY]) == {"even": [2, 3], "odd": [5]}
        bf = handle.get_tensor("bf")
        assert bf.dtype == torch.bfloat16 and tuple(bf.shape) == (2, 2)
        assert bf.view(torch.int16).numpy().view(np.uint16).reshape(-1).tolist() == bits.tolist()
        assert tuple(handle.get_tensor("odd").shape) == (3,)  # flat bytes: 5 nibbles
        assert handle.get_tensor("even").dtype == torch.uint8
    assert_models_equal(load(path), model)


def test_files_written_by_the_package_read_in(tmp_path: Path) -> None:
    arrays = {
        "f": np.arange(6, dtype=np.float32).reshape(2, 3),
        "h": np.array(1.5, dtype=np.float16),
        "i": np.arange(4, dtype=np.int32),
        "empty": np.zeros((0, 3), dtype=np.int8),
    }
    path = tmp_path / "pkg.safetensors"
    save_file(arrays, str(path), metadata={"format": "np"})
    with SafetensorsFile(path) as model:
        assert model.metadata == {"format": "np"}
        for name, array in arrays.items():
            tensor = model[name]
            assert tensor.shape == array.shape
            assert tensor.data.tobytes() == array.tobytes()
    assert load_file(str(path))["f"].tolist() == arrays["f"].tolist()


def test_a_package_style_int4_list_doubles_the_last_dimension(tmp_path: Path) -> None:
    path = tmp_path / "q.safetensors"
    save_file({"q": np.zeros((4, 3), np.uint8)}, str(path), metadata={INT4_KEY: '["q"]'})
    assert SafetensorsFile(path).spec("q") == ("I4", (4, 6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_our_files_load_in_the_package(tmp_path: Path, dtype: str) -> None:
    if dtype in ("BF16",):
        pytest.skip("numpy has no bfloat16 (torch reads it above)")
    tensor = Tensor(
        dtype,
        (2, 2),
        np.arange(2 if dtype == "I4" else 4).astype(
            {"F32": "<f4", "F16": "<f2", "I8": "i1", "U8": "u1", "I4": "u1", "I32": "<i4"}[dtype]
        ),
    )
    path = tmp_path / "m.safetensors"
    save(path, {"t": tensor})
    loaded = load_file(str(path))["t"]
    assert loaded.tobytes() == tensor.data.tobytes()


def test_save_verifies_and_is_atomic(tmp_path: Path) -> None:
    model = {"w": Tensor("F32", (1,), np.ones(1, np.float32))}
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(TargetMismatch):
        save(path, model, expected_hash="00" * 32)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def _file(header: object, data: bytes = b"", *, raw_header: bytes | None = None) -> bytes:
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


F32_1 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"\x01\x00", ModelFormatError, "too short"),
        (struct.pack("<Q", 1 << 40) + b"{}", ModelFormatError, "exceeds"),
        (_file(None, raw_header=b"{nope"), ModelFormatError, "JSON"),
        (_file(None, raw_header=b"[" * 100000 + b"]" * 100000), ModelFormatError, "JSON"),
        (_file(None, raw_header=b'{"a": 1, "a": 2}'), ModelFormatError, "JSON"),
        (_file([1, 2]), ModelFormatError, "not a JSON object"),
        (_file({"w": F32_1}, b"\x00" * 3), ModelFormatError, "tensors cover 4 bytes"),
        (_file({"w": F32_1}, b"\x00" * 5), ModelFormatError, "tensors cover 4 bytes"),
        (_file({"w": {**F32_1, "dtype": "F8_E4M3"}}, b"\x00" * 4), UnsupportedTensor, "F8"),
        (_file({"w": {**F32_1, "shape": [2]}}, b"\x00" * 4), ModelFormatError, "fill"),
        (_file({"w": {**F32_1, "shape": [-1]}}, b"\x00" * 4), ModelFormatError, "shape"),
        (_file({"w": {**F32_1, "shape": [True]}}, b"\x00" * 4), ModelFormatError, "shape"),
        (_file({"w": {**F32_1, "data_offsets": [4, 0]}}, b"\x00" * 4), ModelFormatError, "begin"),
        (
            _file({"w": F32_1, "v": {**F32_1, "data_offsets": [2, 6]}}, b"\x00" * 8),
            ModelFormatError,
            "starts at 2",
        ),
        (_file({"w": F32_1, "__metadata__": {"a": 1}}, b"\x00" * 4), ModelFormatError, "strings"),
        (
            _file({"w": F32_1, "__metadata__": {INT4_KEY: '["w"]'}}, b"\x00" * 4),
            ModelFormatError,
            "not a U8",
        ),
        (
            _file(
                {
                    "q": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                    "__metadata__": {INT4_KEY: '["q"]', INT4_SHAPES_KEY: '{"q": [9]}'},
                },
                b"\x00" * 2,
            ),
            ModelFormatError,
            "does not fit",
        ),
    ],
)
def test_malformed_files_are_refused(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        SafetensorsFile(path)


def test_file_limits_apply(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save(path, {"a": Tensor("F32", (3,), np.zeros(3, np.float32))})
    with pytest.raises(ModelFormatError, match="elements"):
        SafetensorsFile(path, limits=Limits(max_elements=2))
    with pytest.raises(ModelFormatError, match="exceeds"):
        SafetensorsFile(path, limits=Limits(max_header=8))
