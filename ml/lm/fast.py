"""The decode step's glue in C: fused residual + RMSNorm, rotary + cache write, paged attention.

Measured on the six d=512 blocks at batch 1, one thread: the ~40 small torch ops around the
matmuls of each layer took ~1.8 ms a token, as long as the int8 matmuls themselves (dispatch,
and caches gone cold after each matmul streamed its weights); torch.compile of the step was 4x
slower still (it copies the mutated cache). These three kernels replace the glue with four
calls per layer: int8 decoding went from 1.7x to 2.0x fp32's tokens/s on fbgemm, and to
2.8-3.0x with the int8 row kernel (fp32 gains from them too).

Attention reads keys and values straight from the pool through each sequence's block table
(no gather), over positions [max(0, pos - window + 1), pos], and each sequence's result is
computed the same way whatever it is batched with. At batch 16 the cache it reads per step
(4 KB a position and layer) outweighs the int8 weights, so it reads each slot once, in runs of
16 positions with every head of a run before the next (AVX-512: one reduction tree per run
and head): 3.3 -> 1.9 ms of a 16-sequence step at ~60 positions, where the head-outer loop
touched 256 bytes of each 4 KB slot per pass. `ByteLM.decode` falls back to torch ops when the
library cannot be built.
"""

from __future__ import annotations

import ctypes

from fedota.ml.quant._csource import REDUCE_F32
from fedota.ml.quant.native import load_library

SOURCE = (
    r"""
#include <math.h>
#include <stdint.h>
#if defined(__AVX512F__)
#include <immintrin.h>
"""
    + REDUCE_F32
    + r"""
#endif

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

#define SLOT_OF(p) (table[(p) / block_size - first] * block_size + (p) % block_size)

/* Softmax of each head's scores in place (scores[h * count + i]), as weights summing to 1. */
static void softmax_heads(float* scores, int64_t H, int64_t count) {
  for (int64_t h = 0; h < H; h++) {
    float* s = scores + h * count;
    float peak = -INFINITY;
    for (int64_t i = 0; i < count; i++) peak = s[i] > peak ? s[i] : peak;
    float total = 0.0f;
    for (int64_t i = 0; i < count; i++) {
      s[i] = exp_neg(s[i] - peak);
      total += s[i];
    }
    const float inv = 1.0f / total;
    for (int64_t i = 0; i < count; i++) s[i] *= inv;
  }
}

#if defined(__AVX512F__)
/* One sequence's attention, D a multiple of 16: positions in runs of 16, all heads of a run
   before the next, so each run's keys and values (16 slots, all heads contiguous in each) are
   read once while in cache. A run's 16 dot products of a head come out of one reduction
   tree (sum16_ps), values are added with the weights broadcast. */
static void attend_avx512(const float* q, const float* cache, const int64_t* table,
                          int64_t first, int64_t oldest, int64_t count, int64_t block_size,
                          int64_t H, int64_t D, float scale, float* o, float* scores) {
  const int64_t row = H * D;
  const float* at[16];
  for (int64_t i0 = 0; i0 < count; i0 += 16) {
    const int n = count - i0 < 16 ? (int)(count - i0) : 16;
    for (int j = 0; j < n; j++) at[j] = cache + SLOT_OF(oldest + i0 + j) * 2 * row;
    for (int64_t h = 0; h < H; h++) {
      __m512 part[16];
      for (int j = 0; j < 16; j++) part[j] = _mm512_setzero_ps();
      for (int j = 0; j < n; j++)
        for (int64_t d = 0; d < D; d += 16)
          part[j] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * D + d),
                                    _mm512_loadu_ps(at[j] + h * D + d), part[j]);
      const __m512 s = _mm512_mul_ps(sum16_ps(part), _mm512_set1_ps(scale));
      _mm512_mask_storeu_ps(scores + h * count + i0, (__mmask16)((1u << n) - 1u), s);
    }
  }
  softmax_heads(scores, H, count);
  for (int64_t d = 0; d < row; d++) o[d] = 0.0f;
  for (int64_t i0 = 0; i0 < count; i0 += 16) {
    const int n = count - i0 < 16 ? (int)(count - i0) : 16;
    for (int j = 0; j < n; j++) at[j] = cache + (SLOT_OF(oldest + i0 + j) * 2 + 1) * row;
    for (int64_t h = 0; h < H; h++) {
      const float* w = scores + h * count + i0;
      for (int64_t d = 0; d < D; d += 16) {
        __m512 acc = _mm512_loadu_ps(o + h * D + d);
        for (int j = 0; j < n; j++)
          acc = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_loadu_ps(at[j] + h * D + d), acc);
        _mm512_storeu_ps(o + h * D + d, acc);
      }
    }
  }
}
#endif

/* The same in plain C: positions outer, heads inner (a slot's keys of all heads are
   contiguous, so each is read in one sequential sweep). */
static void attend_c(const float* q, const float* cache, const int64_t* table, int64_t first,
                     int64_t oldest, int64_t count, int64_t block_size, int64_t H, int64_t D,
                     float scale, float* o, float* scores) {
  const int64_t row = H * D;
  for (int64_t i = 0; i < count; i++) {
    const float* k = cache + SLOT_OF(oldest + i) * 2 * row;
    for (int64_t h = 0; h < H; h++) scores[h * count + i] = dot(q + h * D, k + h * D, D) * scale;
  }
  softmax_heads(scores, H, count);
  for (int64_t d = 0; d < row; d++) o[d] = 0.0f;
  for (int64_t i = 0; i < count; i++) {
    const float* v = cache + (SLOT_OF(oldest + i) * 2 + 1) * row;
    for (int64_t h = 0; h < H; h++) {
      const float weight = scores[h * count + i];
      for (int64_t d = 0; d < D; d++) o[h * D + d] += weight * v[h * D + d];
    }
  }
}

/* out (B, H * D): each query q = qkv[b, 0] attends to its sequence's keys at positions
   [max(0, pos - window + 1), pos] (window 0: from 0), found through tables (B, width) of
   block ids whose first entry is logical block first_blocks[b]. scores holds H * max L
   floats. Each sequence is computed alone: its result does not depend on the batch. */
void fedota_paged_attention(const float* qkv, const float* cache, const int64_t* tables,
                            int64_t width, const int64_t* first_blocks, const int64_t* positions,
                            int64_t window, int64_t block_size, int64_t B, int64_t H, int64_t D,
                            float* out, float* scores) {
  const float scale = 1.0f / sqrtf((float)D);
  for (int64_t b = 0; b < B; b++) {
    const int64_t pos = positions[b];
    const int64_t oldest = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    const int64_t count = pos - oldest + 1;
    const float* q = qkv + b * 3 * H * D;
#if defined(__AVX512F__)
    if (D % 16 == 0) {
      attend_avx512(q, cache, tables + b * width, first_blocks[b], oldest, count, block_size,
                    H, D, scale, out + b * H * D, scores);
      continue;
    }
#endif
    attend_c(q, cache, tables + b * width, first_blocks[b], oldest, count, block_size, H, D,
             scale, out + b * H * D, scores);
  }
}

int fedota_lm_abi(void) { return 2; }
"""
)

_P = ctypes.c_void_p
_I = ctypes.c_int64


def _declare(lib: ctypes.CDLL) -> None:
    if lib.fedota_lm_abi() != 2:
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
