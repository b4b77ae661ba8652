"""The delta benchmark's baselines: the generic ways to ship a model change (zstd and ZipNN of the
target, byte planes of the XOR / integer difference, and the order-0 entropy of that difference)."""

from __future__ import annotations

from typing import Any

import numpy as np
import zstandard
from _common import Timing, best_of, ratio
from _delta_data import Model, Plan, common_floats, model_bytes


def _concat(model: Model, names: list[str]) -> bytes:
    return b"".join(model[n].data.tobytes() for n in names)


def _record(size: int, total: int, pack: Timing, unpack: Timing | None = None) -> dict[str, Any]:
    out = {
        "bytes": size,
        "ratio": ratio(size, total),
        "compress_mb_s_per_core": pack.mb_s_per_core(total),
    }
    if unpack is not None:
        out["decompress_mb_s_per_core"] = unpack.mb_s_per_core(total)
    return out


def _zstd(data: bytes, level: int, total: int) -> dict[str, Any]:
    packed, pack = best_of(1, lambda: zstandard.ZstdCompressor(level=level).compress(data))
    _, unpack = best_of(1, lambda: zstandard.ZstdDecompressor().decompress(packed))
    return _record(len(packed), total, pack, unpack)


def _zipnn(data: bytes, total: int) -> dict[str, Any]:
    from zipnn import ZipNN

    def make() -> Any:
        return ZipNN(bytearray_dtype="float32", input_format="byte", threads=1)

    # zipnn 0.5.4 byte-groups a `bytes` input in place: hand it a copy.
    packed, pack = best_of(1, lambda: make().compress(bytearray(data)))
    unpacked, unpack = best_of(1, lambda: make().decompress(packed))
    return {**_record(len(packed), total, pack, unpack), "roundtrip_ok": bytes(unpacked) == data}


def _planes_zstd(words: np.ndarray, total: int) -> dict[str, Any]:
    """Each byte plane of 32-bit words (high byte first) compressed apart with zstd-19."""
    planes = words.view(np.uint8).reshape(-1, 4).T
    sizes, pack = best_of(
        1,
        lambda: [
            len(zstandard.ZstdCompressor(level=19).compress(np.ascontiguousarray(p).tobytes()))
            for p in planes[::-1]
        ],
    )
    return _record(sum(sizes), total, pack)


def order0_bytes(values: np.ndarray) -> float:
    """Shannon order-0 size in bytes of `values` as symbols (the model itself costs extra)."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / values.size
    return float(-(counts * np.log2(p)).sum() / 8)


def baselines(base: Model, target: Model, plan: Plan) -> dict[str, Any]:
    """Sizes of the generic ways to ship the change, as fractions of the target's bytes."""
    total = model_bytes(target)
    floats = common_floats(base, target)
    rest = [n for n in sorted(target) if n not in floats]
    t_bytes = _concat(target, floats) + _concat(target, rest)
    b_words = np.frombuffer(_concat(base, floats), dtype=np.uint32)
    t_words = np.frombuffer(t_bytes[: b_words.nbytes], dtype=np.uint32)
    xor = b_words ^ t_words
    xor_bytes = xor.tobytes() + _concat(target, rest)  # an added/other tensor ships whole
    out: dict[str, Any] = {
        "zstd19_target": _zstd(t_bytes, 19, total),
        "zstd3_target": _zstd(t_bytes, 3, total),
    }
    try:
        out["zipnn_target"] = _zipnn(t_bytes, total)
        out["zipnn_xor"] = _zipnn(xor_bytes, total)
    except ImportError:
        out["zipnn_target"] = out["zipnn_xor"] = {"skipped": "zipnn is not installed"}
    diff = (t_words - b_words).view(np.int32)  # integer difference of the bit patterns (wraps)
    zigzag = (diff.view(np.uint32) << np.uint32(1)) ^ (diff >> 31).view(np.uint32)
    if plan.reference_baselines:
        out["xor_bytegroup_zstd19"] = _planes_zstd(xor, total)
        out["intdiff_zigzag_byteplanes_zstd19"] = _planes_zstd(zigzag, total)
    entropy = 0.0
    offset = 0
    for n in floats:
        size = target[n].numel
        entropy += order0_bytes(zigzag[offset : offset + size])
        offset += size
    out["intdiff_order0_entropy"] = {"bytes": round(entropy), "ratio": ratio(round(entropy), total)}
    return out
