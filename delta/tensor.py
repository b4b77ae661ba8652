"""Tensors as the patch library sees them: a dtype name, a shape and the raw storage words.

numpy has no bfloat16 and no int4, so a tensor's `data` is a 1-D numpy array of its *storage*
words (float32, float16, uint16 for BF16, int8, uint8, ...), and `dtype` is the safetensors dtype
name. Packed int4 (`I4`: two signed 4-bit values per byte, low nibble first) is stored as uint8
with the logical shape in `shape`; in a safetensors file it is a U8 tensor named in the file's
metadata key `fedota.packed_int4` (a JSON list of tensor names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# safetensors dtype name -> numpy storage dtype of one word.
STORAGE: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
    "I4": np.dtype("u1"),
}
# Float dtypes: the ones bit-difference and lossy codecs apply to.
FLOATS = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class Tensor:
    """One named tensor's dtype, logical shape and storage (1-D, little-endian, contiguous)."""

    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE:
            raise ValueError(f"unsupported dtype {self.dtype!r}")
        if self.data.dtype != STORAGE[self.dtype] or self.data.ndim != 1:
            raise ValueError(
                f"{self.dtype} storage must be a 1-D {STORAGE[self.dtype]} array, "
                f"got {self.data.ndim}-D {self.data.dtype}"
            )
        if self.data.size != storage_words(self.dtype, self.shape):
            raise ValueError(
                f"{self.dtype}{list(self.shape)} needs {storage_words(self.dtype, self.shape)} "
                f"storage words, got {self.data.size}"
            )

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def to_float32(self) -> np.ndarray:
        """The values as float32 (floats only; BF16 widened exactly).

        Raises:
            ValueError: not a float dtype.
        """
        if self.dtype == "BF16":
            return (self.data.astype(np.uint32) << 16).view(np.float32)
        if self.dtype in FLOATS:
            return self.data.astype(np.float32)
        raise ValueError(f"{self.dtype} is not a float dtype")


def storage_words(dtype: str, shape: tuple[int, ...]) -> int:
    """How many storage words a tensor of this dtype and shape holds."""
    count = math.prod(shape)
    return (count + 1) // 2 if dtype == "I4" else count


def from_float32(dtype: str, values: np.ndarray) -> np.ndarray:
    """Round float32 values to a float dtype's storage words (round to nearest even).

    Raises:
        ValueError: not a float dtype.
    """
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if dtype == "F32":
        return values.copy()
    if dtype == "F16":
        return values.astype("<f2")
    if dtype == "F64":
        return values.astype("<f8")
    if dtype == "BF16":
        bits = values.view(np.uint32)
        # Round to nearest even on the dropped 16 bits; NaN stays NaN (quiet bit kept).
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan = np.isnan(values)
        rounded = np.where(nan, (bits >> 16) | 0x40, rounded)
        return rounded.astype("<u2")
    raise ValueError(f"{dtype} is not a float dtype")


__all__ = ["FLOATS", "STORAGE", "Tensor", "from_float32", "storage_words"]
