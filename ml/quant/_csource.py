"""C source of the quantized kernels (a Python string: the wheel needs no package-data entry)."""

SOURCE = r"""/* fedota quantized kernels (see kernels.py for why they are hand-written).

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

/* y (M, N) = x w^T + bias for x (M, K); scratch holds (M + 1) * K floats. The inputs are split
   into even and odd columns once, then each weight row is decoded into scratch (it stays in
   L1) and meets every input row. */
void fedota_i4_linear(const float* x, const uint8_t* q, const float* s, const float* off,
                      const float* bias, float* y, int64_t M, int64_t N, int64_t K, int64_t G,
                      float* scratch) {
  const int64_t K2 = K / 2, NG = K / G, H = G / 2;
  float* we = scratch;
  float* wo = scratch + K2;
  float* xe = scratch + K;
  float* xo = xe + M * K2;
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < K2; j++) {
      xe[m * K2 + j] = x[m * K + 2 * j];
      xo[m * K2 + j] = x[m * K + 2 * j + 1];
    }
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
  for (int64_t n0 = 0; n0 < N; n0 += 4) {
    const int64_t nr = N - n0 < 4 ? N - n0 : 4;
    for (int64_t m = 0; m < M; m++) {
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

int fedota_quant_abi(void) { return 5; }
"""

__all__ = ["SOURCE"]
