"""C source of the quantized kernels (a Python string: the wheel needs no package-data entry)."""

# Shared with the LM's kernels (fedota.ml.lm.fast): a float reduction tree for AVX-512 code.
REDUCE_F32 = r"""/* Lane i of sum16_ps(v) is the sum of v[i]'s 16 lanes, always added in the same
   tree ((e0 + e2) + (e1 + e3) per 128-bit chunk, then (c0 + c1) + (c2 + c3)), so an output
   does not depend on its place in a tile. */
static inline __m512 sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
}

static inline __m512 sum16_ps(const __m512* v) {
  const __m512 s0 = sum4_ps(v[0], v[1], v[2], v[3]);
  const __m512 s1 = sum4_ps(v[4], v[5], v[6], v[7]);
  const __m512 s2 = sum4_ps(v[8], v[9], v[10], v[11]);
  const __m512 s3 = sum4_ps(v[12], v[13], v[14], v[15]);
  const __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(s0, s1, 0x88),
                                 _mm512_shuffle_f32x4(s0, s1, 0xdd));
  const __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(s2, s3, 0x88),
                                 _mm512_shuffle_f32x4(s2, s3, 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xdd));
}
"""

SOURCE = (
    r"""/* fedota quantized kernels (see kernels.py for why they are hand-written).

   Weights: q (N, K/2) bytes, two signed nibbles per byte, even column in the low nibble;
   s, off (N, K/G) fp32 (off may be NULL): w[n,k] = s[n,k/G] * q[n,k] + off[n,k/G].
   Inputs are split into even and odd columns, xe/xo (M, K/2), so a low nibble meets xe and a
   high nibble xo without shuffles. Each output is computed the same way whatever M is, so a
   row's result does not depend on the batch it runs in. K is a multiple of G, G of 32. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* One row's weights as fp32, even columns to we and odd columns to wo (K/2 each). */
static void dequant_row(const uint8_t* qr, const float* sr, const float* orow, float* we,
                        float* wo, int64_t K2, int64_t H) {
  for (int64_t j0 = 0; j0 < K2; j0 += H) {
    const int64_t g = j0 / H;
    const float sc = sr[g], of = orow ? orow[g] : 0.0f;
#if defined(__AVX512F__)
    const __m512 vs = _mm512_set1_ps(sc), vo = _mm512_set1_ps(of);
    for (int64_t j = j0; j < j0 + H; j += 16) {
      __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(qr + j)));
      __m512i lo = _mm512_srai_epi32(_mm512_slli_epi32(w, 28), 28);
      __m512i hi = _mm512_srai_epi32(_mm512_slli_epi32(w, 24), 28);
      _mm512_storeu_ps(we + j, _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), vs, vo));
      _mm512_storeu_ps(wo + j, _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), vs, vo));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    const __m256 vs = _mm256_set1_ps(sc), vo = _mm256_set1_ps(of);
    for (int64_t j = j0; j < j0 + H; j += 8) {
      __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(qr + j)));
      __m256i lo = _mm256_srai_epi32(_mm256_slli_epi32(w, 28), 28);
      __m256i hi = _mm256_srai_epi32(_mm256_slli_epi32(w, 24), 28);
      _mm256_storeu_ps(we + j, _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), vs, vo));
      _mm256_storeu_ps(wo + j, _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), vs, vo));
    }
#else
    for (int64_t j = j0; j < j0 + H; j++) {
      const int8_t b = (int8_t)qr[j];
      we[j] = (float)((int8_t)(b << 4) >> 4) * sc + of;
      wo[j] = (float)(b >> 4) * sc + of;
    }
#endif
  }
}

static float dot_row(const float* xe, const float* xo, const float* we, const float* wo,
                     int64_t K2) {
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= K2; j += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(xe + j), _mm512_loadu_ps(we + j), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(xo + j), _mm512_loadu_ps(wo + j), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(xe + j + 16), _mm512_loadu_ps(we + j + 16), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(xo + j + 16), _mm512_loadu_ps(wo + j + 16), a3);
  }
  for (; j < K2; j += 16) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(xe + j), _mm512_loadu_ps(we + j), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(xo + j), _mm512_loadu_ps(wo + j), a1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (int64_t j = 0; j < K2; j += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xe + j), _mm256_loadu_ps(we + j), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xo + j), _mm256_loadu_ps(wo + j), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xe + j + 8), _mm256_loadu_ps(we + j + 8), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xo + j + 8), _mm256_loadu_ps(wo + j + 8), a3);
  }
  __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
#else
  float acc[16] = {0};
  for (int64_t j = 0; j < K2; j += 16)
    for (int i = 0; i < 16; i++) acc[i] += xe[j + i] * we[j + i] + xo[j + i] * wo[j + i];
  float t = 0.0f;
  for (int i = 0; i < 16; i++) t += acc[i];
  return t;
#endif
}

#if defined(__AVX512F__)
"""
    + REDUCE_F32
    + r"""
/* Lane 4 * i + j: input row i (xe/xo + i * K2) . weight row j (w + j * K: even columns, then
   odd ones at + K2) for i < MR, j < NR (other lanes 0). Each output has one accumulator fed
   in the same order (the even columns along K2, then the odd ones), whatever MR and NR: a
   row's result is the same alone or in a batch. Called with constant MR and NR, so each
   variant keeps its accumulators in registers (16, plus 4 weight vectors and one input). */
static inline __attribute__((always_inline)) __m512 tile_f32(const float* xe, const float* xo,
                                                             const float* w, int64_t K,
                                                             int64_t K2, int MR, int NR) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
  for (int half = 0; half < 2; half++) {
    const float* x = half ? xo : xe;
    const float* wh = w + half * K2;
    for (int64_t j = 0; j < K2; j += 16) {
      __m512 wv[4];
      for (int c = 0; c < NR; c++) wv[c] = _mm512_loadu_ps(wh + c * K + j);
      for (int i = 0; i < MR; i++) {
        const __m512 xv = _mm512_loadu_ps(x + i * K2 + j);
        for (int c = 0; c < NR; c++) acc[4 * i + c] = _mm512_fmadd_ps(xv, wv[c], acc[4 * i + c]);
      }
    }
  }
  return sum16_ps(acc);
}

#if defined(__AVX512BF16__)
#define I4_BF16 1
/* tile_f32 on bf16 pairs (AVX512-BF16's dot product: 32 products per instruction, twice the
   fp32 rate): chunk j of a row is 32 bf16, the 16 even columns j..j+15 then the 16 odd ones,
   the same order for inputs and weights, so each product meets its own column. Accumulators
   stay fp32 and are fed in the same order for any MR and NR. */
static inline __attribute__((always_inline)) __m512 tile_bf16(const __m512bh* x, const __m512bh* w,
                                                              int64_t chunks, int MR, int NR) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < chunks; j++) {
    __m512bh wv[4];
    for (int c = 0; c < NR; c++)
      wv[c] = (__m512bh)_mm512_loadu_si512((const void*)(w + c * chunks + j));
    for (int i = 0; i < MR; i++) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512((const void*)(x + i * chunks + j));
      for (int c = 0; c < NR; c++) acc[4 * i + c] = _mm512_dpbf16_ps(acc[4 * i + c], xv, wv[c]);
    }
  }
  return sum16_ps(acc);
}

/* dequant_row straight to bf16 chunks (the same fp32 values, rounded to nearest even). */
static void dequant_row_bf16(const uint8_t* qr, const float* sr, const float* orow,
                             __m512bh* out, int64_t K2, int64_t H) {
  for (int64_t j = 0; j < K2; j += 16) {
    const int64_t g = j / H; /* H is a multiple of 16: a chunk lies in one group */
    const __m512 vs = _mm512_set1_ps(sr[g]), vo = _mm512_set1_ps(orow ? orow[g] : 0.0f);
    const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(qr + j)));
    const __m512i lo = _mm512_srai_epi32(_mm512_slli_epi32(w, 28), 28);
    const __m512i hi = _mm512_srai_epi32(_mm512_slli_epi32(w, 24), 28);
    const __m512 even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), vs, vo);
    const __m512 odd = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), vs, vo);
    _mm512_storeu_si512((void*)(out + j / 16), (__m512i)_mm512_cvtne2ps_pbh(odd, even));
  }
}

/* Even and odd halves (K2 floats each) as bf16 chunks (round to nearest even). */
static inline void to_bf16_chunks(const float* even, const float* odd, int64_t K2, __m512bh* out) {
  for (int64_t j = 0; j < K2; j += 16)
    _mm512_storeu_si512(
        (void*)(out + j / 16),
        (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(odd + j), _mm512_loadu_ps(even + j)));
}
#endif

/* y (M, N) = x w^T + bias, four weight rows at a time decoded into scratch, each meeting
   the inputs four rows at a time. scratch: 4 * K floats for the decoded rows, then (with
   bf16) the rows and the inputs as bf16 chunks, (4 + M) * K / 2 floats' worth. */
static void i4_linear_tiled(const float* xe, const float* xo, const uint8_t* q, const float* s,
                            const float* off, const float* bias, float* y, int64_t M, int64_t N,
                            int64_t K, int64_t G, float* scratch) {
  const int64_t K2 = K / 2, NG = K / G, H = G / 2;
#ifdef I4_BF16
  const int64_t chunks = K2 / 16;
  __m512bh* wb = (__m512bh*)(scratch + 4 * K);
  __m512bh* xb = wb + 4 * chunks;
  for (int64_t m = 0; m < M; m++) to_bf16_chunks(xe + m * K2, xo + m * K2, K2, xb + m * chunks);
#endif
  float lanes[16];
  for (int64_t n0 = 0; n0 < N; n0 += 4) {
    const int64_t nr = N - n0 < 4 ? N - n0 : 4;
    for (int64_t c = 0; c < nr; c++) {
      const int64_t n = n0 + c;
#ifdef I4_BF16
      dequant_row_bf16(q + n * K2, s + n * NG, off ? off + n * NG : NULL, wb + c * chunks, K2, H);
#else
      float* w4 = scratch;
      dequant_row(q + n * K2, s + n * NG, off ? off + n * NG : NULL, w4 + c * K, w4 + c * K + K2,
                  K2, H);
#endif
    }
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
      const int64_t mr = M - m0 < 4 ? M - m0 : 4;
      __m512 r;
#ifdef I4_BF16
      const __m512bh* xr = xb + m0 * chunks;
      if (nr == 4 && mr == 4) r = tile_bf16(xr, wb, chunks, 4, 4);
      else if (nr == 4 && mr == 1) r = tile_bf16(xr, wb, chunks, 1, 4);
      else if (nr == 4 && mr == 2) r = tile_bf16(xr, wb, chunks, 2, 4);
      else if (nr == 4 && mr == 3) r = tile_bf16(xr, wb, chunks, 3, 4);
      else r = tile_bf16(xr, wb, chunks, (int)mr, (int)nr);
#else
      const float* w4 = scratch;
      const float* e = xe + m0 * K2;
      const float* o = xo + m0 * K2;
      if (nr == 4 && mr == 4) r = tile_f32(e, o, w4, K, K2, 4, 4);
      else if (nr == 4 && mr == 1) r = tile_f32(e, o, w4, K, K2, 1, 4);
      else if (nr == 4 && mr == 2) r = tile_f32(e, o, w4, K, K2, 2, 4);
      else if (nr == 4 && mr == 3) r = tile_f32(e, o, w4, K, K2, 3, 4);
      else r = tile_f32(e, o, w4, K, K2, (int)mr, (int)nr);
#endif
      _mm512_storeu_ps(lanes, r);
      for (int64_t i = 0; i < mr; i++)
        for (int64_t c = 0; c < nr; c++)
          y[(m0 + i) * N + n0 + c] = lanes[4 * i + c] + (bias ? bias[n0 + c] : 0.0f);
    }
  }
}
#endif

/* y (M, N) = x w^T + bias for x (M, K); scratch holds (2 * M + 8) * K floats. The inputs are split
   into even and odd columns once, then weight rows are decoded into scratch (they stay in
   L1) and meet every input row. */
void fedota_i4_linear(const float* x, const uint8_t* q, const float* s, const float* off,
                      const float* bias, float* y, int64_t M, int64_t N, int64_t K, int64_t G,
                      float* scratch) {
  const int64_t K2 = K / 2, NG = K / G, H = G / 2;
  float* we = scratch;
  float* wo = scratch + K2;
  float* xe = scratch + (M + 8) * K;
  float* xo = xe + M * K2;
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < K2; j++) {
      xe[m * K2 + j] = x[m * K + 2 * j];
      xo[m * K2 + j] = x[m * K + 2 * j + 1];
    }
#if defined(__AVX512F__)
  if (K2 % 16 == 0) {
    i4_linear_tiled(xe, xo, q, s, off, bias, y, M, N, K, G, scratch);
    return;
  }
#endif
  for (int64_t n = 0; n < N; n++) {
    dequant_row(q + n * K2, s + n * NG, off ? off + n * NG : NULL, we, wo, K2, H);
    const float b = bias ? bias[n] : 0.0f;
    for (int64_t m = 0; m < M; m++)
      y[m * N + n] = dot_row(xe + m * K2, xo + m * K2, we, wo, K2) + b;
  }
}

/* Each row of x * cs (M, K; cs per column, may be NULL) to symmetric int8 with its own step
   (peak / 127), for torch._int_mm; work holds K floats. */
void fedota_rows_quantize(const float* x, const float* cs, int8_t* q, float* step, int64_t M,
                          int64_t K, float* work) {
  for (int64_t m = 0; m < M; m++) {
    const float* r = x + m * K;
    if (cs) {
      for (int64_t k = 0; k < K; k++) work[k] = r[k] * cs[k];
      r = work;
    }
    float lane[16] = {0};
    int64_t k = 0;
    /* Compare-and-select, not fmaxf: without -ffast-math gcc calls libm's fmaxf per element. */
    for (; k + 16 <= K; k += 16)
      for (int j = 0; j < 16; j++) {
        const float a = fabsf(r[k + j]);
        lane[j] = a > lane[j] ? a : lane[j];
      }
    float peak = 0.0f;
    for (; k < K; k++) peak = fabsf(r[k]) > peak ? fabsf(r[k]) : peak;
    for (int j = 0; j < 16; j++) peak = lane[j] > peak ? lane[j] : peak;
    const float s = peak > 0.0f ? peak / 127.0f : 1.0f;
    const float inv = 1.0f / s;
    step[m] = s;
    for (k = 0; k < K; k++) {
      const float v = r[k] * inv;
      q[m * K + k] = (int8_t)(int32_t)(v + (v >= 0.0f ? 0.5f : -0.5f));
    }
  }
}

/* y (M, N) = acc * step[m] * scale[n] + bias[n]. */
void fedota_rows_dequant(const int32_t* acc, const float* step, const float* scale,
                         const float* bias, float* y, int64_t M, int64_t N) {
  for (int64_t m = 0; m < M; m++) {
    const float s = step[m];
    const int32_t* a = acc + m * N;
    float* r = y + m * N;
    if (bias)
      for (int64_t n = 0; n < N; n++) r[n] = (float)a[n] * s * scale[n] + bias[n];
    else
      for (int64_t n = 0; n < N; n++) r[n] = (float)a[n] * s * scale[n];
  }
}

/* The whole weight as fp32, even columns to we (N, K/2) and odd columns to wo (N, K/2). */
void fedota_i4_dequant(const uint8_t* q, const float* s, const float* off, float* we, float* wo,
                       int64_t N, int64_t K, int64_t G) {
  const int64_t K2 = K / 2, NG = K / G, H = G / 2;
  for (int64_t n = 0; n < N; n++)
    dequant_row(q + n * K2, s + n * NG, off ? off + n * NG : NULL, we + n * K2, wo + n * K2, K2, H);
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* Lane sums of a, b, c, d, each partial per 128-bit chunk: chunk j holds [a, b, c, d]'s
   sums over their chunk j. */
static inline __m512i sum4_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

/* The 16 lane sums of v[0..15] as one vector (lane i = sum of v[i]): a transpose-and-add
   tree, ~45 instructions where 16 separate reductions take ~130. */
static inline __m512i sum16_epi32(const __m512i* v) {
  const __m512i s0 = sum4_epi32(v[0], v[1], v[2], v[3]);
  const __m512i s1 = sum4_epi32(v[4], v[5], v[6], v[7]);
  const __m512i s2 = sum4_epi32(v[8], v[9], v[10], v[11]);
  const __m512i s3 = sum4_epi32(v[12], v[13], v[14], v[15]);
  const __m512i x = _mm512_add_epi32(_mm512_shuffle_i32x4(s0, s1, 0x88),
                                     _mm512_shuffle_i32x4(s0, s1, 0xdd));
  const __m512i y = _mm512_add_epi32(_mm512_shuffle_i32x4(s2, s3, 0x88),
                                     _mm512_shuffle_i32x4(s2, s3, 0xdd));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(x, y, 0x88), _mm512_shuffle_i32x4(x, y, 0xdd));
}

/* Lane 4 * i + j: u8 row u_i . s8 row w_j over K (a multiple of 64) for 4 input rows (K
   apart, from u) and 4 weight rows (K apart, from w): each weight and input vector is loaded
   once for four products, where one input row at a time loads a weight vector per product. */
static inline __m512i tile4x4_u8s8(const uint8_t* u, const int8_t* w, int64_t K) {
  __m512i acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 64) {
    const __m512i w0 = _mm512_loadu_si512((const void*)(w + k));
    const __m512i w1 = _mm512_loadu_si512((const void*)(w + K + k));
    const __m512i w2 = _mm512_loadu_si512((const void*)(w + 2 * K + k));
    const __m512i w3 = _mm512_loadu_si512((const void*)(w + 3 * K + k));
    for (int i = 0; i < 4; i++) {
      const __m512i uv = _mm512_loadu_si512((const void*)(u + i * K + k));
      acc[4 * i + 0] = _mm512_dpbusd_epi32(acc[4 * i + 0], uv, w0);
      acc[4 * i + 1] = _mm512_dpbusd_epi32(acc[4 * i + 1], uv, w1);
      acc[4 * i + 2] = _mm512_dpbusd_epi32(acc[4 * i + 2], uv, w2);
      acc[4 * i + 3] = _mm512_dpbusd_epi32(acc[4 * i + 3], uv, w3);
    }
  }
  return sum16_epi32(acc);
}
#endif

/* int8 x int8 for few rows (decode): y (M, N) = x w^T * scale + bias for int8 w (N, K) with
   per-row scales, rowsum[n] = sum_k w[n, k]. Each input row (times cs per column, when given;
   work holds K floats) is quantized alone to 8 bits
   (symmetric, then offset by 128 into u8 for VNNI's u8 x s8 products; 7 bits without VNNI,
   where u8 x s8 pair sums would saturate int16); xq holds M * K bytes and xs M floats. */
void fedota_i8_linear(const float* x, const float* cs, const int8_t* w, const float* scale,
                      const int32_t* rowsum, const float* bias, float* y, int64_t M, int64_t N,
                      int64_t K, uint8_t* xq, float* xs, float* work) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  const float levels = 127.0f;
#else
  const float levels = 63.0f;
#endif
  const int32_t zero = (int32_t)levels + 1;
  for (int64_t m = 0; m < M; m++) {
    const float* r = x + m * K;
    if (cs) {
      for (int64_t k = 0; k < K; k++) work[k] = r[k] * cs[k];
      r = work;
    }
    float peak = 0.0f;
    for (int64_t k = 0; k < K; k++) {
      const float a = r[k] < 0 ? -r[k] : r[k];
      peak = a > peak ? a : peak;
    }
    const float step = peak > 0.0f ? peak / levels : 1.0f;
    const float inv = 1.0f / step;
    xs[m] = step;
    for (int64_t k = 0; k < K; k++) {
      const float v = r[k] * inv; /* rounded as fedota_rows_quantize rounds */
      xq[m * K + k] = (uint8_t)((int32_t)(v + (v >= 0.0f ? 0.5f : -0.5f)) + zero);
    }
  }
  /* Rows in tiles of four: four input rows by four weight rows per pass over K (VNNI, K a
     multiple of 64); the rest (M % 4 rows, N % 4 outputs) one input row at a time below.
     Integer sums, so the tiling cannot change a result. */
  int64_t tiled = 0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  if (K % 64 == 0) {
    tiled = M - M % 4;
    /* lane 4 * i + j is input row m0 + i, output n0 + j; the scaling is the scalar one below
       (multiply, multiply, add: no fused multiply-add, as C11 does not contract either) */
    const __m512i row_of = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i zeros = _mm512_set1_epi32(zero);
    for (int64_t n0 = 0; n0 + 4 <= N; n0 += 4) {
      const __m512i offset = _mm512_mullo_epi32(
          zeros, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(rowsum + n0))));
      const __m512 sc = _mm512_broadcast_f32x4(_mm_loadu_ps(scale + n0));
      const __m512 bs =
          bias ? _mm512_broadcast_f32x4(_mm_loadu_ps(bias + n0)) : _mm512_setzero_ps();
      for (int64_t m0 = 0; m0 < tiled; m0 += 4) {
        const __m512i t = tile4x4_u8s8(xq + m0 * K, w + n0 * K, K);
        const __m512 steps = _mm512_permutexvar_ps(
            row_of, _mm512_castps128_ps512(_mm_loadu_ps(xs + m0)));
        __m512 out = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(t, offset)),
                                                 steps), sc);
        if (bias) out = _mm512_add_ps(out, bs);
        _mm_storeu_ps(y + (m0 + 0) * N + n0, _mm512_extractf32x4_ps(out, 0));
        _mm_storeu_ps(y + (m0 + 1) * N + n0, _mm512_extractf32x4_ps(out, 1));
        _mm_storeu_ps(y + (m0 + 2) * N + n0, _mm512_extractf32x4_ps(out, 2));
        _mm_storeu_ps(y + (m0 + 3) * N + n0, _mm512_extractf32x4_ps(out, 3));
      }
    }
  }
#endif
  for (int64_t n0 = 0; n0 < N; n0 += 4) {
    const int64_t nr = N - n0 < 4 ? N - n0 : 4;
    for (int64_t m = (nr == 4 ? tiled : 0); m < M; m++) {
      const uint8_t* u = xq + m * K;
      int32_t acc[4] = {0, 0, 0, 0};
      int64_t k = 0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
      if (nr == 4) {
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        __m512i a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
        for (; k + 64 <= K; k += 64) {
          const __m512i uv = _mm512_loadu_si512((const void*)(u + k));
          a0 = _mm512_dpbusd_epi32(a0, uv, _mm512_loadu_si512((const void*)(w + (n0 + 0) * K + k)));
          a1 = _mm512_dpbusd_epi32(a1, uv, _mm512_loadu_si512((const void*)(w + (n0 + 1) * K + k)));
          a2 = _mm512_dpbusd_epi32(a2, uv, _mm512_loadu_si512((const void*)(w + (n0 + 2) * K + k)));
          a3 = _mm512_dpbusd_epi32(a3, uv, _mm512_loadu_si512((const void*)(w + (n0 + 3) * K + k)));
        }
        acc[0] = _mm512_reduce_add_epi32(a0);
        acc[1] = _mm512_reduce_add_epi32(a1);
        acc[2] = _mm512_reduce_add_epi32(a2);
        acc[3] = _mm512_reduce_add_epi32(a3);
      }
#elif defined(__AVX2__)
      if (nr == 4) {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
        for (; k + 32 <= K; k += 32) {
          const __m256i uv = _mm256_loadu_si256((const __m256i*)(u + k));
          for (int i = 0; i < 4; i++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i*)(w + (n0 + i) * K + k));
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(uv, wv), ones));
          }
        }
        for (int i = 0; i < 4; i++) {
          __m128i h = _mm256_extracti128_si256(a[i], 1);
          h = _mm_add_epi32(h, _mm256_castsi256_si128(a[i]));
          h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
          h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
          acc[i] = _mm_cvtsi128_si32(h);
        }
      }
#endif
      for (int64_t i = 0; i < nr; i++) {
        int32_t t = acc[i];
        const int8_t* wr = w + (n0 + i) * K;
        for (int64_t j = (nr == 4 ? k : 0); j < K; j++) t += (int32_t)u[j] * (int32_t)wr[j];
        float out = (float)(t - zero * rowsum[n0 + i]) * xs[m] * scale[n0 + i];
        if (bias) out += bias[n0 + i];
        y[m * N + n0 + i] = out;
      }
    }
  }
}

/* 1 when the int4 row kernel multiplies bf16 operands (then it beats the BLAS matmul at any
   row count and serves every batch), 0 when fp32 ones. */
int fedota_i4_bf16(void) {
#ifdef I4_BF16
  return 1;
#else
  return 0;
#endif
}

int fedota_quant_abi(void) { return 6; }
"""
)

__all__ = ["REDUCE_F32", "SOURCE"]
