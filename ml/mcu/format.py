"""The `mcu-int8` export: a compact, self-describing binary a microcontroller can use in place.

Layout, every integer little-endian (docs of the fields: `McuLayer`):

    header   magic 8 | version u16 | flags u16 (0) | layer count u16 | pixel_max u16
    layer    in_dim u16 | out_dim u16 | activation u8 | reserved 3 (0)
             | output zero point i32 | output scale f32
             | bias i32 x out | multiplier i32 x out | shift i32 x out
             | weights i8 x out*in (row-major, one row per output channel) | zero pad to 4
    trailer  CRC-32 (zlib / IEEE 802.3) u32 of every byte before it

Every section starts on a 4-byte boundary, so a Cortex-M can read the int32 arrays straight
from flash. The CRC catches corruption; authenticity comes from the signed update metadata that
delivers the file. `load` checks every length against the bytes that remain before it slices
(a hostile header costs an error, never an allocation), then the CRC, then every value
(`McuModel`). The input tensor is int8 with zero point -128 and step 255 // pixel_max.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from fedota.ml.mcu.errors import McuChecksumError, McuFormatError, McuTruncated
from fedota.ml.mcu.model import McuLayer, McuModel

MAGIC = b"\x89FOMCU\r\n"  # 0x89 and \r\n catch 7-bit and text-mode mangling, as PNG's do
VERSION = 1
_HEADER = struct.Struct("<8sHHHH")
_LAYER = struct.Struct("<HHB3sif")
_CRC = struct.Struct("<I")


def _pad(size: int) -> int:
    return -size % 4


def export(model: McuModel) -> bytes:
    """The bytes of `model` (len() of them is the size a device stores).

    Raises:
        TypeError: `model` is not an McuModel.
    """
    if not isinstance(model, McuModel):
        raise TypeError(f"export takes an McuModel, got {type(model).__name__}")
    parts = [_HEADER.pack(MAGIC, VERSION, 0, len(model.layers), model.pixel_max)]
    for layer in model.layers:
        parts.append(
            _LAYER.pack(
                layer.in_dim,
                layer.out_dim,
                int(layer.activation),
                b"\0\0\0",
                layer.output_zero_point,
                layer.output_scale,
            )
        )
        for array in (layer.bias, layer.multiplier, layer.shift):
            parts.append(array.astype("<i4").tobytes())
        weights = layer.weights.astype("i1").tobytes()
        parts.append(weights + b"\0" * _pad(len(weights)))
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


class _Reader:
    """Bounded reads over the body (the bytes before the CRC)."""

    def __init__(self, body: memoryview) -> None:
        self._body = body
        self.position = 0

    def take(self, size: int, what: str) -> memoryview:
        remaining = len(self._body) - self.position
        if size > remaining:
            raise McuTruncated(f"{what} needs {size} bytes, only {remaining} remain")
        chunk = self._body[self.position : self.position + size]
        self.position += size
        return chunk


def load(data: bytes | bytearray | memoryview) -> McuModel:
    """Parse and check an export.

    Raises:
        McuTruncated: the bytes end before a declared section or the trailer.
        McuChecksumError: the CRC-32 does not match (corrupted bytes).
        McuFormatError: bad magic, version, flags, reserved or padding bytes, trailing bytes,
            or a value out of spec (see `McuModel`).
        TypeError: `data` is not bytes-like.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"load takes bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) < _HEADER.size + _CRC.size:
        raise McuTruncated(
            f"an mcu-int8 export has at least {_HEADER.size + _CRC.size} bytes, got {len(view)}"
        )
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise McuFormatError("not an mcu-int8 export (bad magic)")
    reader = _Reader(view[: -_CRC.size])
    _, version, flags, count, pixel_max = _HEADER.unpack(reader.take(_HEADER.size, "header"))
    if version != VERSION:
        raise McuFormatError(f"mcu-int8 format version {version} is not supported (need 1)")
    if flags != 0:
        raise McuFormatError(f"flags must be 0 in version 1, got {flags:#06x}")
    if count == 0:
        raise McuFormatError("an export holds at least one layer, got 0")
    fields = []
    for index in range(count):
        fields.append(_read_layer(reader, index))
    trailing = len(view) - _CRC.size - reader.position
    if trailing:
        raise McuFormatError(f"{trailing} bytes follow the last layer before the checksum")
    (declared,) = _CRC.unpack(view[-_CRC.size :])
    actual = zlib.crc32(view[: -_CRC.size])
    if declared != actual:
        raise McuChecksumError(declared, actual)
    return McuModel(tuple(McuLayer(**layer) for layer in fields), pixel_max=pixel_max)


def _read_layer(reader: _Reader, index: int) -> dict[str, object]:
    where = f"layer {index}"
    in_dim, out_dim, activation, reserved, zero_point, scale = _LAYER.unpack(
        reader.take(_LAYER.size, f"{where} header")
    )
    if reserved != b"\0\0\0":
        raise McuFormatError(f"{where}: reserved bytes must be 0, got {reserved.hex()}")
    if in_dim == 0 or out_dim == 0:
        raise McuFormatError(f"{where}: dimensions must be >= 1, got {out_dim}x{in_dim}")
    arrays = {}
    for name in ("bias", "multiplier", "shift"):
        raw = reader.take(4 * out_dim, f"{where} {name}")
        arrays[name] = np.frombuffer(raw, dtype="<i4").astype(np.int32)
    raw = reader.take(out_dim * in_dim, f"{where} weights")
    arrays["weights"] = np.frombuffer(raw, dtype=np.int8).reshape(out_dim, in_dim)
    padding = reader.take(_pad(out_dim * in_dim), f"{where} padding")
    if any(padding):
        raise McuFormatError(f"{where}: padding bytes must be 0")
    return {
        **arrays,
        "output_zero_point": zero_point,
        "output_scale": scale,
        "activation": activation,
    }


__all__ = ["MAGIC", "VERSION", "export", "load"]
