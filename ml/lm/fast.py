"""The decode step's glue in C: fused residual + RMSNorm, rotary + cache write, paged attention.

Measured on the six d=512 blocks at batch 1, one thread: the ~40 small torch ops around the
matmuls of each layer took ~1.8 ms a token, as long as the int8 matmuls themselves (dispatch,
and caches gone cold after each matmul streamed its weights); torch.compile of the step was 4x
slower still (it copies the mutated cache). These three kernels replace the glue with four
calls per layer: int8 decoding went from 1.7x to 2.0x fp32's tokens/s on fbgemm, and to
2.8-3.0x with the int8 row kernel (fp32 gains from them too).

Attention reads keys and values straight from the pool through each sequence's block table
(no gather), over positions [max(0, pos - window + 1), pos], and each sequence's result is
computed the same way whatever it is batched with. `ByteLM.decode` falls back to torch ops
when the library cannot be built.
"""

from __future__ import annotations

import ctypes

from fedota.ml.quant.native import load_library

SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* exp for x <= 0 (softmax after subtracting the maximum), vectorisable: Cephes' expf. */
static inline float exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = floorf(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  union { int32_t i; float f; } two;
  two.i = ((int32_t)n + 127) << 23;
  return e * two.f;
}

static inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
  float t = 0.0f;
  for (; i < n; i++) t += a[i] * b[i];
  for (int j = 0; j < 8; j++) t += acc[j];
  return t;
}

/* x (M, K) += y (when given); out = x / sqrt(mean(x^2) + eps) * w. */
void fedota_add_rmsnorm(float* x, const float* y, const float* w, float* out, int64_t M,
                        int64_t K, float eps) {
  for (int64_t m = 0; m < M; m++) {
    float* r = x + m * K;
    if (y)
      for (int64_t k = 0; k < K; k++) r[k] += y[m * K + k];
    const float scale = 1.0f / sqrtf(dot(r, r, K) / (float)K + eps);
    for (int64_t k = 0; k < K; k++) out[m * K + k] = r[k] * scale * w[k];
  }
}

/* qkv (B, 3, H, D): rotate q and k in place by rot[pos] ((D/2) cos/sin pairs, interleaved
   pairs as complex numbers), then store k and v at cache[slot] (slots, 2, H, D). */
void fedota_rope_store(float* qkv, const float* rot, const int64_t* positions, float* cache,
                       const int64_t* slots, int64_t B, int64_t H, int64_t D) {
  const int64_t half = D / 2, width = H * D;
  for (int64_t b = 0; b < B; b++) {
    const float* cs = rot + positions[b] * D;
    for (int64_t part = 0; part < 2; part++)
      for (int64_t h = 0; h < H; h++) {
        float* v = qkv + (b * 3 + part) * width + h * D;
        for (int64_t i = 0; i < half; i++) {
          const float a = v[2 * i], c = v[2 * i + 1], co = cs[2 * i], si = cs[2 * i + 1];
          v[2 * i] = a * co - c * si;
          v[2 * i + 1] = c * co + a * si;
        }
      }
    float* dst = cache + slots[b] * 2 * width;
    const float* k = qkv + (b * 3 + 1) * width;
    for (int64_t i = 0; i < 2 * width; i++) dst[i] = k[i];
  }
}

/* out (B, H * D): each query q = qkv[b, 0] attends to its sequence's keys at positions
   [max(0, pos - window + 1), pos] (window 0: from 0), found through tables (B, width) of
   block ids whose first entry is logical block first_blocks[b]. scores holds max L floats. */
void fedota_paged_attention(const float* qkv, const float* cache, const int64_t* tables,
                            int64_t width, const int64_t* first_blocks, const int64_t* positions,
                            int64_t window, int64_t block_size, int64_t B, int64_t H, int64_t D,
                            float* out, float* scores) {
  const float scale = 1.0f / sqrtf((float)D);
  const int64_t row = H * D;
  for (int64_t b = 0; b < B; b++) {
    const int64_t pos = positions[b];
    const int64_t oldest = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    const int64_t count = pos - oldest + 1;
    const int64_t* table = tables + b * width;
    const int64_t first = first_blocks[b];
    for (int64_t h = 0; h < H; h++) {
      const float* q = qkv + b * 3 * row + h * D;
      float peak = -INFINITY;
      for (int64_t i = 0; i < count; i++) {
        const int64_t p = oldest + i;
        const int64_t slot = table[p / block_size - first] * block_size + p % block_size;
        const float s = dot(q, cache + slot * 2 * row + h * D, D) * scale;
        scores[i] = s;
        peak = s > peak ? s : peak;
      }
      float total = 0.0f;
      for (int64_t i = 0; i < count; i++) {
        scores[i] = exp_neg(scores[i] - peak);
        total += scores[i];
      }
      float* o = out + b * row + h * D;
      for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
      for (int64_t i = 0; i < count; i++) {
        const int64_t p = oldest + i;
        const int64_t slot = table[p / block_size - first] * block_size + p % block_size;
        const float* v = cache + (slot * 2 + 1) * row + h * D;
        const float weight = scores[i];
        for (int64_t d = 0; d < D; d++) o[d] += weight * v[d];
      }
      const float inv = 1.0f / total;
      for (int64_t d = 0; d < D; d++) o[d] *= inv;
    }
  }
}

int fedota_lm_abi(void) { return 1; }
"""

_P = ctypes.c_void_p
_I = ctypes.c_int64


def _declare(lib: ctypes.CDLL) -> None:
    if lib.fedota_lm_abi() != 1:
        raise RuntimeError("the LM kernel library has an unexpected ABI")
    lib.fedota_add_rmsnorm.argtypes = [_P, _P, _P, _P, _I, _I, ctypes.c_float]
    lib.fedota_rope_store.argtypes = [_P, _P, _P, _P, _P, _I, _I, _I]
    lib.fedota_paged_attention.argtypes = [_P, _P, _P, _I, _P, _P, _I, _I, _I, _I, _I, _P, _P]
    for name in ("fedota_add_rmsnorm", "fedota_rope_store", "fedota_paged_attention"):
        getattr(lib, name).restype = None


def library() -> ctypes.CDLL | None:
    """The decode kernels, or None (then `ByteLM.decode` runs its torch path)."""
    return load_library("fedota-lm", SOURCE, _declare)


__all__ = ["SOURCE", "library"]
