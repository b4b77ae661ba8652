"""The quantized matmuls' C kernels (int4 matmul, int8 activation scaling), with torch fall-backs.

Why a hand-written int4 kernel: measured at batch 1 on one thread over the six d=512 blocks'
linears (75 MB fp32), PyTorch's `_weight_int4pack_mm_for_cpu` ran 9x slower than fp32,
inductor-compiled dequantize+matmul formulations 8-12x slower (inductor vectorises the group
axis, not the row), torchao 0.18 has no CPU int4 kernel in its wheel. This one decodes four
weight rows at a time into L1 and multiplies them with four input rows at a time (16
accumulators in registers, one reduction tree for all 16 outputs). With AVX512-BF16 it decodes
to bf16 and multiplies bf16 pairs into fp32 accumulators (`vdpbf16ps`, twice fp32's rate; the
operands' rounding is ~0.2%, far inside int4's own error): the 24 linears took 2.2 ms at 1 row
(fp32: 6.4), 5.1 ms at 16 (fp32 BLAS: 13.0; one row at a time, as before: 13.8) and half
the time of decoding the weight for fp32 BLAS at 64-400 rows, so it serves every row count
(prefill too) and a row's result never depends on its batch. Without BF16 it multiplies fp32
operands (9.4 ms at 16 rows) and hands more than 16 rows to BLAS.

int8 quantizes each activation row alone (per-token scales: batched rows give the same results
as alone, and one outlier token does not coarsen the others). Few rows (decode) run a VNNI row
kernel that reads the weights at memory speed: 3.5x fp32 at batch 1, where fbgemm's dynamic
linear (`quantized.linear_dynamic`) reached 1.9-3.2x because of a ~12 us fixed cost per call
(24 calls a token) and quantizes a whole batch with one scale. From four rows it takes them in
4x4 tiles (each weight and input vector loaded once for four products, a transpose-and-add
tree for the 16 sums): the 24 linears at 16 rows took 3.8 ms where one row at a time took 5.0
and `torch._int_mm` 5.0. Many rows (prefill, MiniLM) run oneDNN's int8 GEMM, `torch._int_mm`,
on the same (N, K) int8 weight (no second packed copy), with the row quantization and
rescaling in C: 3.4x fp32's GEMM at 448 rows, where fbgemm's dynamic linear gave 1.2-1.4x.
"""

from __future__ import annotations

import ctypes

import torch

from fedota.ml.quant._csource import SOURCE
from fedota.ml.quant.native import load_library, native_status

# Above this many input rows the int4 weight is decoded whole and handed to the BLAS matmul
# (compute-bound there; below it, reading the weight dominates and the row kernel wins) -
# unless the row kernel runs on bf16 operands (AVX512-BF16), which beats fp32 BLAS 2x at any
# row count (the six d=512 blocks: 5.4 vs 13.8 ms at 16 rows, 14 vs 27 ms at 400) and so
# serves every batch, a row's result the same alone or in any batch.
ROW_KERNEL_MAX_ROWS = 16
# Rows per row-kernel call: bounds its scratch (2 * rows * K floats) and keeps it in L2.
ROW_KERNEL_CHUNK = 256
# int8: up to this many rows the row kernel (3.5x fp32 at 1 row, 2.3x at 16) wins; above it
# oneDNN's int8 GEMM does (the row kernel falls to 0.85x fp32 at 512 rows).
INT8_ROW_KERNEL_MAX_ROWS = 64
_P = ctypes.c_void_p
_I = ctypes.c_int64


def _declare(lib: ctypes.CDLL) -> None:
    if lib.fedota_quant_abi() != 6:
        raise RuntimeError("the quantized kernel library has an unexpected ABI")
    lib.fedota_i4_linear.argtypes = [_P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _P]
    lib.fedota_i4_dequant.argtypes = [_P, _P, _P, _P, _P, _I, _I, _I]
    lib.fedota_rows_quantize.argtypes = [_P, _P, _P, _P, _I, _I, _P]
    lib.fedota_rows_dequant.argtypes = [_P, _P, _P, _P, _P, _I, _I]
    lib.fedota_i8_linear.argtypes = [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P]
    lib.fedota_i4_bf16.argtypes = []
    lib.fedota_i4_bf16.restype = ctypes.c_int
    for fn in (
        "fedota_i4_linear",
        "fedota_i4_dequant",
        "fedota_rows_quantize",
        "fedota_rows_dequant",
        "fedota_i8_linear",
    ):
        getattr(lib, fn).restype = None


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (then the torch fall-backs run)."""
    return load_library("fedota-quant", SOURCE, _declare)


def kernel_status() -> str:
    """'native' when the C kernels are loaded, else why the torch fall-back runs."""
    library()
    return native_status().get("fedota-quant", "not loaded")


def int4_operands() -> str:
    """What the int4 row kernel multiplies: "bf16" (AVX512-BF16, every row count), "fp32"
    (up to ROW_KERNEL_MAX_ROWS rows), or "none" without the C library."""
    lib = library()
    if lib is None:
        return "none"
    return "bf16" if lib.fedota_i4_bf16() == 1 else "fp32"


def int4_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
) -> torch.Tensor:
    """`x @ w.T + bias` for a packed int4 weight w (N, K); x is (M, K).

    Raises:
        ValueError: x is not (M, K) for this weight.
    """
    n, k = packed.shape[0], packed.shape[1] * 2
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"int4 linear expects inputs of width {k}, got {tuple(x.shape)}")
    x = x.to(torch.float32).contiguous()
    lib = library()
    rows = x.shape[0]
    if lib is not None and (rows <= ROW_KERNEL_MAX_ROWS or lib.fedota_i4_bf16() == 1):
        out = torch.empty(rows, n, dtype=torch.float32)
        chunk = min(rows, ROW_KERNEL_CHUNK)
        scratch = torch.empty((2 * chunk + 8) * k, dtype=torch.float32)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            lib.fedota_i4_linear(
                x[start].data_ptr(),
                packed.data_ptr(),
                scale.data_ptr(),
                _ptr(offset),
                _ptr(bias),
                out[start].data_ptr(),
                stop - start,
                n,
                k,
                group_size,
                scratch.data_ptr(),
            )
        return out
    w_even, w_odd = int4_dequantize_split(packed, scale, offset, group_size)
    out = x[:, 0::2] @ w_even.T
    out.addmm_(x[:, 1::2], w_odd.T)
    if bias is not None:
        out += bias
    return out


def int8_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor,
    rowsum: torch.Tensor,
    bias: torch.Tensor | None,
    input_scale: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """`(x * input_scale) @ (weight * scale).T + bias`, each row of x quantized to 8 bits alone:
    the row kernel for few rows, oneDNN's int8 GEMM (`torch._int_mm`) for many. None when the
    library is not available (the caller falls back)."""
    lib = library()
    if lib is None:
        return None
    rows, width = x.shape
    out = torch.empty(rows, weight.shape[0], dtype=torch.float32)
    steps = torch.empty(rows, dtype=torch.float32)
    work = torch.empty(width if input_scale is not None else 0, dtype=torch.float32)
    if rows <= INT8_ROW_KERNEL_MAX_ROWS:
        quantized = torch.empty(rows * width, dtype=torch.uint8)
        lib.fedota_i8_linear(
            x.data_ptr(),
            _ptr(input_scale),
            weight.data_ptr(),
            scale.data_ptr(),
            rowsum.data_ptr(),
            _ptr(bias),
            out.data_ptr(),
            rows,
            weight.shape[0],
            width,
            quantized.data_ptr(),
            steps.data_ptr(),
            work.data_ptr(),
        )
        return out
    signed = torch.empty(rows, width, dtype=torch.int8)
    lib.fedota_rows_quantize(
        x.data_ptr(),
        _ptr(input_scale),
        signed.data_ptr(),
        steps.data_ptr(),
        rows,
        width,
        work.data_ptr(),
    )
    products = torch._int_mm(signed, weight.T)
    lib.fedota_rows_dequant(
        products.data_ptr(),
        steps.data_ptr(),
        scale.data_ptr(),
        _ptr(bias),
        out.data_ptr(),
        rows,
        weight.shape[0],
    )
    return out


def int4_dequantize_split(
    packed: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp32 weight's even and odd columns, each (N, K/2)."""
    n, k2 = packed.shape
    lib = library()
    if lib is None:
        q = packed.view(torch.int8)
        groups = (n, k2 // (group_size // 2), group_size // 2)
        parts = []
        for nibble in ((q << 4) >> 4, q >> 4):
            w = nibble.to(torch.float32).reshape(groups) * scale[..., None]
            if offset is not None:
                w += offset[..., None]
            parts.append(w.reshape(n, k2))
        return parts[0], parts[1]
    even = torch.empty(n, k2, dtype=torch.float32)
    odd = torch.empty(n, k2, dtype=torch.float32)
    lib.fedota_i4_dequant(
        packed.data_ptr(),
        scale.data_ptr(),
        _ptr(offset),
        even.data_ptr(),
        odd.data_ptr(),
        n,
        k2 * 2,
        group_size,
    )
    return even, odd


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


__all__ = [
    "INT8_ROW_KERNEL_MAX_ROWS",
    "ROW_KERNEL_CHUNK",
    "ROW_KERNEL_MAX_ROWS",
    "int4_dequantize_split",
    "int4_linear",
    "int4_operands",
    "int8_linear",
    "kernel_status",
    "library",
]
