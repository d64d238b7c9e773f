// bfloat16 GEMM with float32 accumulation, for CPUs with AVX512_BF16.
//
// Why: VDPBF16PS multiplies pairs of bfloat16 values and adds both products
// to a float32 lane, 32 multiply-adds per instruction where a float32 FMA does
// 16; measured on this project's machine (AMD EPYC, one core) 493 against
// 268 GFLOP/s. Weights are rounded to bfloat16 once and kept packed
// (half the memory of float32); activations are rounded while they are
// packed, per call. Sums stay float32, so the error is that of rounding the
// operands (relative 2^-9 each), not of accumulating in low precision.
//
// Layouts (a "word" is two bfloat16 values, the even k in the low half):
//   packed B (weights): [N/32 column blocks][ceil(K/2) k pairs][32 columns] words,
//     built from a row-major W[N][K] (PyTorch's Linear layout, C = A·Wᵀ);
//   packed A (per call): MR-row tiles, each row GEMM_KCP words (one k block).
// The micro-kernel keeps a 14×32 block of C in 28 registers; per k pair it
// loads two vectors of B and broadcasts one word of A per row.
#include "CKernels.h"
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <pthread.h>
#include <time.h>

#define GEMM_MR 14
#define GEMM_NR 32
// Blocking, measured on one core (AMD EPYC, sizes of SD UNet layers): whole
// k ranges up to 2,560 in one block beat L1-sized blocks (192 pairs: 333 vs
// 459 GFLOP/s at 8192×320×1280), since every further block re-reads C; the
// B panel then streams from L2, which the 28-register tile absorbs.
#define GEMM_KCP 1280                // k pairs per block
#define GEMM_MC (GEMM_MR * 10)       // rows per packed A block: 700 KiB, in L2

ptrdiff_t nest_bf16_packed_words(ptrdiff_t n, ptrdiff_t k) {
    return (n + GEMM_NR - 1) / GEMM_NR * ((k + 1) / 2) * GEMM_NR;
}


ptrdiff_t nest_bf16_column_block(void) { return GEMM_NR; }

// float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
static inline uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

void nest_f32_to_bf16(const float *src, unsigned short *dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}

void nest_bf16_to_f32(const unsigned short *src, float *dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, 4);
    }
}

void nest_bf16_pack_weights(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, unsigned int *out) {
    ptrdiff_t kp = (k + 1) / 2, blocks = (n + GEMM_NR - 1) / GEMM_NR;
    for (ptrdiff_t nb = 0; nb < blocks; nb++) {
        unsigned int *panel = out + nb * kp * GEMM_NR;
        for (ptrdiff_t j = 0; j < GEMM_NR; j++) {
            ptrdiff_t col = nb * GEMM_NR + j;
            const float *row = w + col * ldw;
            for (ptrdiff_t p = 0; p < kp; p++) {
                uint32_t lo = 0, hi = 0;
                if (col < n) {
                    lo = bf16_round(row[2 * p]);
                    if (2 * p + 1 < k) hi = bf16_round(row[2 * p + 1]);
                }
                panel[p * GEMM_NR + j] = lo | hi << 16;
            }
        }
    }
}

void nest_bf16_unpack_weights(const unsigned int *packed, ptrdiff_t n, ptrdiff_t k, float *w) {
    // Panel by panel, reading the words in order (each row of W is written as a stream).
    ptrdiff_t kp = (k + 1) / 2, blocks = (n + GEMM_NR - 1) / GEMM_NR;
    for (ptrdiff_t nb = 0; nb < blocks; nb++) {
        const unsigned int *panel = packed + nb * kp * GEMM_NR;
        ptrdiff_t cols = n - nb * GEMM_NR < GEMM_NR ? n - nb * GEMM_NR : GEMM_NR;
        for (ptrdiff_t p = 0; p < kp; p++)
            for (ptrdiff_t j = 0; j < cols; j++) {
                uint32_t word = panel[p * GEMM_NR + j], lo = word << 16, hi = word & 0xffff0000u;
                float *row = w + (nb * GEMM_NR + j) * k + 2 * p;
                memcpy(row, &lo, 4);
                if (2 * p + 1 < k) memcpy(row + 1, &hi, 4);
            }
    }
}

// Each thread packs into buffers of its own, kept for the thread's life (a
// fresh 700 KiB-5 MiB allocation per call would be mapped and faulted in
// anew): buffer 0 holds packed A for every bfloat16 GEMM, buffer 1 packed B
// for the training path's (nest_bf16_gemm_general).
static pthread_key_t scratch_keys[2];
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void make_scratch_keys(void) { for (int i = 0; i < 2; i++) pthread_key_create(&scratch_keys[i], free); }

static uint32_t *thread_buffer(int which, size_t words) {
    pthread_once(&scratch_once, make_scratch_keys);
    uint32_t *buffer = pthread_getspecific(scratch_keys[which]);
    if (!buffer) {
        buffer = aligned_alloc(64, words * 4);
        if (!buffer) abort();
        pthread_setspecific(scratch_keys[which], buffer);
    }
    return buffer;
}

static uint32_t *thread_scratch(void) { return thread_buffer(0, (size_t)GEMM_MC * GEMM_KCP); }

static double probe_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// The first `count` of a vector's 16 lanes (none for count <= 0, all from 16).
static inline __mmask16 lanes(ptrdiff_t count) {
    return count >= 16 ? 0xffff : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

int nest_kernels_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16") ? 1 : 0;
}

// Rows [0, rows) of A (fp32, stride lda), columns [k0, k0 + 2·kp) → words,
// one row per GEMM_KCP words; rows up to the next multiple of MR are zero.
BF16 static void pack_a(const float *a, ptrdiff_t lda, ptrdiff_t rows, ptrdiff_t k0, ptrdiff_t k,
                        ptrdiff_t kp, uint32_t *out) {
    ptrdiff_t padded = (rows + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    ptrdiff_t len = k - k0 < 2 * kp ? k - k0 : 2 * kp;  // floats to read from each row
    for (ptrdiff_t r = 0; r < padded; r++) {
        uint32_t *dst = out + r * GEMM_KCP;
        if (r >= rows) { memset(dst, 0, (size_t)kp * 4); continue; }
        const float *src = a + r * lda + k0;
        ptrdiff_t j = 0;
        for (; j + 32 <= len; j += 32) {
            __m512 lo = _mm512_loadu_ps(src + j), hi = _mm512_loadu_ps(src + j + 16);
            _mm512_storeu_si512(dst + j / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        if (j < len) {
            ptrdiff_t left = len - j;  // 1..31 floats; the pair count rounds up
            __mmask16 mlo = lanes(left), mhi = lanes(left - 16);
            __m512 lo = _mm512_maskz_loadu_ps(mlo, src + j), hi = _mm512_maskz_loadu_ps(mhi, src + j + 16);
            __mmask16 words = lanes((left + 1) / 2);
            _mm512_mask_storeu_epi32(dst + j / 2, words, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

// C[rows × 32] (+)= packed A tile · packed B panel over kp pairs. Columns
// outside (m0, m1) are neither read nor written.
BF16 static void kernel_14x32(ptrdiff_t kp, const uint32_t *a, const uint32_t *b, float *c, ptrdiff_t ldc,
                              ptrdiff_t rows, __mmask16 m0, __mmask16 m1, int accumulate, float alpha) {
    __m512 acc[GEMM_MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < GEMM_MR; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (ptrdiff_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * GEMM_NR);
        __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * GEMM_NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < GEMM_MR; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * GEMM_KCP + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    if (alpha != 1.0f) {
        __m512 scale = _mm512_set1_ps(alpha);
#pragma clang loop unroll(full)
        for (int r = 0; r < GEMM_MR; r++) {
            acc[r][0] = _mm512_mul_ps(acc[r][0], scale);
            acc[r][1] = _mm512_mul_ps(acc[r][1], scale);
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < GEMM_MR; r++) {
        if (r < rows) {
            float *row = c + r * ldc;
            if (accumulate) {
                acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, row));
                acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, row + 16));
            }
            _mm512_mask_storeu_ps(row, m0, acc[r][0]);
            _mm512_mask_storeu_ps(row + 16, m1, acc[r][1]);
        }
    }
}

BF16 void nest_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                         const unsigned int *packed, ptrdiff_t nb0, ptrdiff_t nb1,
                         float *c, ptrdiff_t ldc, int accumulate) {
    ptrdiff_t kpTotal = (k + 1) / 2;
    if (k == 0) {
        if (!accumulate)
            for (ptrdiff_t i = 0; i < m; i++)
                for (ptrdiff_t j = nb0 * GEMM_NR; j < n && j < nb1 * GEMM_NR; j++) c[i * ldc + j] = 0;
        return;
    }
    uint32_t *apack = thread_scratch();
    for (ptrdiff_t p0 = 0; p0 < kpTotal; p0 += GEMM_KCP) {
        ptrdiff_t kp = kpTotal - p0 < GEMM_KCP ? kpTotal - p0 : GEMM_KCP;
        int acc = accumulate || p0 > 0;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += GEMM_MC) {
            ptrdiff_t mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
            pack_a(a + i0 * lda, lda, mc, 2 * p0, k, kp, apack);
            for (ptrdiff_t nb = nb0; nb < nb1; nb++) {
                const uint32_t *panel = packed + (nb * kpTotal + p0) * GEMM_NR;
                ptrdiff_t cols = n - nb * GEMM_NR;
                __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
                for (ptrdiff_t t = 0; t < mc; t += GEMM_MR) {
                    ptrdiff_t rows = mc - t < GEMM_MR ? mc - t : GEMM_MR;
                    kernel_14x32(kp, apack + t * GEMM_KCP, panel, c + (i0 + t) * ldc + nb * GEMM_NR, ldc,
                                 rows, m0, m1, acc, 1.0f);
                }
            }
        }
    }
}

// ---- Both operands rounded per call: the training path ----
//
// C = alpha·op(A)·op(B) + beta·C with A and B float32 in memory (activations,
// gradients, weights that train), each rounded to bfloat16 as it is packed.
// B is packed per (k block, NC columns) into the same panels as packed
// weights; A per (k block, MC rows) as above.

#define GEMM_NC 1024                 // columns per packed B chunk (≤ 5 MiB)


// Two rows of 16 floats → 16 words, the first row's value in each low half.
BF16 static inline __m512i pair_words(__m512 lo, __m512 hi) {
    __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
    __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
    return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

// r[i][j] ↔ r[j][i] for a 16×16 block of 32-bit words: interleave words,
// then pairs, within 128-bit lanes, then gather the lanes.
BF16 static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    // u[4g + c], lane L: rows 4g..4g+3 of column c + 4L.
    for (int c = 0; c < 4; c++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88), w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[c + 8] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        r[c + 4] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[c + 12] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

// A stored transposed (element (i, kk) at a[kk·lda + i]): rows [0, rows),
// k from k0, kp pairs → the layout of pack_a. Blocks of 16 pairs × 16 rows
// are built as 16 pair-vectors and transposed in registers; the edges
// scatter each pair's 16 rows.
BF16 static void pack_a_transposed(const float *a, ptrdiff_t lda, ptrdiff_t rows, ptrdiff_t k0, ptrdiff_t k,
                                   ptrdiff_t kp, uint32_t *out) {
    ptrdiff_t padded = (rows + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                       _mm512_set1_epi32(GEMM_KCP));
    for (ptrdiff_t r = rows; r < padded; r++) memset(out + r * GEMM_KCP, 0, (size_t)kp * 4);
    ptrdiff_t fullRows = rows / 16 * 16, fullPairs = kp / 16 * 16;
    for (ptrdiff_t p0 = 0; p0 < fullPairs; p0 += 16) {
        for (ptrdiff_t i = 0; i < fullRows; i += 16) {
            __m512i v[16];
            for (int q = 0; q < 16; q++) {
                ptrdiff_t kk = k0 + 2 * (p0 + q);
                const float *r0 = a + kk * lda + i;
                v[q] = pair_words(_mm512_loadu_ps(r0), kk + 1 < k ? _mm512_loadu_ps(r0 + lda) : _mm512_setzero_ps());
            }
            transpose16(v);
            for (int t = 0; t < 16; t++) _mm512_storeu_si512(out + (i + t) * GEMM_KCP + p0, v[t]);
        }
    }
    for (ptrdiff_t p = 0; p < kp; p++) {
        ptrdiff_t kk = k0 + 2 * p;
        const float *r0 = a + kk * lda, *r1 = kk + 1 < k ? r0 + lda : NULL;
        for (ptrdiff_t i = p < fullPairs ? fullRows : 0; i < rows; i += 16) {
            __mmask16 mask = lanes(rows - i);
            __m512 lo = _mm512_maskz_loadu_ps(mask, r0 + i);
            __m512 hi = r1 ? _mm512_maskz_loadu_ps(mask, r1 + i) : _mm512_setzero_ps();
            _mm512_mask_i32scatter_epi32(out + i * GEMM_KCP + p, mask, index, pair_words(lo, hi), 4);
        }
    }
}

// Columns [j0, j0 + cols) of op(B), k from k0, kp pairs → panels of 32
// columns ([cols/32][kp][32] words, zero past the last column).
BF16 static void pack_b(int transB, const float *b, ptrdiff_t ldb, ptrdiff_t j0, ptrdiff_t cols, ptrdiff_t k0,
                        ptrdiff_t k, ptrdiff_t kp, uint32_t *out) {
    ptrdiff_t blocks = (cols + GEMM_NR - 1) / GEMM_NR;
    for (ptrdiff_t nb = 0; nb < blocks; nb++) {
        uint32_t *panel = out + nb * kp * GEMM_NR;
        ptrdiff_t c0 = j0 + nb * GEMM_NR, width = cols - nb * GEMM_NR < GEMM_NR ? cols - nb * GEMM_NR : GEMM_NR;
        if (!transB) {
            // B[kk][j]: two k rows of 32 contiguous columns per pair.
            __mmask16 m0 = lanes(width), m1 = lanes(width - 16);
            for (ptrdiff_t p = 0; p < kp; p++) {
                ptrdiff_t kk = k0 + 2 * p;
                const float *r0 = b + kk * ldb + c0;
                __m512 lo0 = _mm512_maskz_loadu_ps(m0, r0), lo1 = _mm512_maskz_loadu_ps(m1, r0 + 16);
                __m512 hi0 = _mm512_setzero_ps(), hi1 = _mm512_setzero_ps();
                if (kk + 1 < k) { hi0 = _mm512_maskz_loadu_ps(m0, r0 + ldb); hi1 = _mm512_maskz_loadu_ps(m1, r0 + ldb + 16); }
                _mm512_store_si512(panel + p * GEMM_NR, pair_words(lo0, hi0));
                _mm512_store_si512(panel + p * GEMM_NR + 16, pair_words(lo1, hi1));
            }
        } else {
            // B[j][kk]: each column's pairs are adjacent floats. Blocks of 16
            // columns × 16 pairs convert a column's 32 floats at a time and
            // transpose in registers; the edges scatter down the panel.
            __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(GEMM_NR));
            ptrdiff_t len = k - k0 < 2 * kp ? k - k0 : 2 * kp;
            ptrdiff_t fullFloats = len / 32 * 32;
            for (ptrdiff_t j = 0; j + 16 <= width; j += 16) {
                for (ptrdiff_t f = 0; f < fullFloats; f += 32) {
                    __m512i v[16];
                    for (int t = 0; t < 16; t++) {
                        const float *src = b + (c0 + j + t) * ldb + k0 + f;
                        v[t] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src));
                    }
                    transpose16(v);
                    for (int q = 0; q < 16; q++) _mm512_store_si512(panel + (f / 2 + q) * GEMM_NR + j, v[q]);
                }
            }
            for (ptrdiff_t j = 0; j < GEMM_NR; j++) {
                if (j >= width) {
                    for (ptrdiff_t p = 0; p < kp; p++) panel[p * GEMM_NR + j] = 0;
                    continue;
                }
                const float *src = b + (c0 + j) * ldb + k0;
                for (ptrdiff_t f = j < width / 16 * 16 ? fullFloats : 0; f < len; f += 32) {
                    ptrdiff_t left = len - f;
                    __mmask16 mlo = lanes(left), mhi = lanes(left - 16);
                    __m512 lo = _mm512_maskz_loadu_ps(mlo, src + f), hi = _mm512_maskz_loadu_ps(mhi, src + f + 16);
                    __mmask16 wm = lanes((left + 1) / 2);
                    _mm512_mask_i32scatter_epi32(panel + (f / 2) * GEMM_NR + j, wm, index,
                                                 (__m512i)_mm512_cvtne2ps_pbh(hi, lo), 4);
                }
            }
        }
    }
}

BF16 void nest_bf16_gemm_general(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                                 const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                                 float *c, ptrdiff_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (beta != 0.0f && beta != 1.0f)
        for (ptrdiff_t i = 0; i < m; i++) for (ptrdiff_t j = 0; j < n; j++) c[i * ldc + j] *= beta;
    if (k == 0 || alpha == 0.0f) {
        if (beta == 0.0f) for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * 4);
        return;
    }
    uint32_t *apack = thread_scratch(), *bpack = thread_buffer(1, (size_t)GEMM_NC * GEMM_KCP);
    ptrdiff_t kpTotal = (k + 1) / 2;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += GEMM_NC) {
        ptrdiff_t cols = n - j0 < GEMM_NC ? n - j0 : GEMM_NC;
        ptrdiff_t blocks = (cols + GEMM_NR - 1) / GEMM_NR;
        for (ptrdiff_t p0 = 0; p0 < kpTotal; p0 += GEMM_KCP) {
            ptrdiff_t kp = kpTotal - p0 < GEMM_KCP ? kpTotal - p0 : GEMM_KCP;
            int acc = beta != 0.0f || p0 > 0;
            pack_b(transB, b, ldb, j0, cols, 2 * p0, k, kp, bpack);
            for (ptrdiff_t i0 = 0; i0 < m; i0 += GEMM_MC) {
                ptrdiff_t mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
                if (transA) pack_a_transposed(a + i0, lda, mc, 2 * p0, k, kp, apack);
                else pack_a(a + i0 * lda, lda, mc, 2 * p0, k, kp, apack);
                for (ptrdiff_t nb = 0; nb < blocks; nb++) {
                    ptrdiff_t left = cols - nb * GEMM_NR;
                    __mmask16 m0 = lanes(left), m1 = lanes(left - 16);
                    for (ptrdiff_t t = 0; t < mc; t += GEMM_MR) {
                        ptrdiff_t rows = mc - t < GEMM_MR ? mc - t : GEMM_MR;
                        kernel_14x32(kp, apack + t * GEMM_KCP, bpack + nb * kp * GEMM_NR,
                                     c + (i0 + t) * ldc + j0 + nb * GEMM_NR, ldc, rows, m0, m1, acc, alpha);
                    }
                }
            }
        }
    }
}

// How many times float32 FMA's multiply-add rate VDPBF16PS reaches on this
// core: 20 independent accumulators each, ~0.5 ms per loop. Zen 4 runs
// VDPBF16PS at twice the FMA rate; Intel Xeons without AMX (measured on an
// Emerald Rapids VM) at half of it, where bfloat16 products would slow down.
#define PROBE_ACCS 20
BF16 __attribute__((noinline)) static double probe_bf16(long n) {
    __m512 acc[PROBE_ACCS];
    for (int i = 0; i < PROBE_ACCS; i++) acc[i] = _mm512_setzero_ps();
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    double start = probe_now();
    for (long j = 0; j < n; j++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < PROBE_ACCS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], x, x);
        __asm__ volatile("" : "+v"(x));
    }
    double t = probe_now() - start;
    float sink = 0;
    for (int i = 0; i < PROBE_ACCS; i++) sink += _mm512_reduce_add_ps(acc[i]);
    __asm__ volatile("" : : "x"(sink));
    return (double)n * PROBE_ACCS * 32 / t;  // multiply-adds per second
}

BF16 __attribute__((noinline)) static double probe_fma(long n) {
    __m512 acc[PROBE_ACCS];
    for (int i = 0; i < PROBE_ACCS; i++) acc[i] = _mm512_setzero_ps();
    __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(0.5f);
    double start = probe_now();
    for (long j = 0; j < n; j++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < PROBE_ACCS; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
        __asm__ volatile("" : "+v"(x));
    }
    double t = probe_now() - start;
    float sink = 0;
    for (int i = 0; i < PROBE_ACCS; i++) sink += _mm512_reduce_add_ps(acc[i]);
    __asm__ volatile("" : : "x"(sink));
    return (double)n * PROBE_ACCS * 16 / t;
}

double nest_bf16_fma_rate_ratio(void) {
    if (!nest_kernels_bf16()) return 0;
    double best = 0;
    for (int round = 0; round < 3; round++) {  // the best of three: a preempted loop reads low
        double ratio = probe_bf16(20000) / probe_fma(20000);
        if (ratio > best) best = ratio;
    }
    return best;
}

#else
int nest_kernels_bf16(void) { return 0; }
void nest_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                    const unsigned int *packed, ptrdiff_t nb0, ptrdiff_t nb1,
                    float *c, ptrdiff_t ldc, int accumulate) {
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed; (void)nb0; (void)nb1;
    (void)c; (void)ldc; (void)accumulate; (void)thread_scratch;
}
double nest_bf16_fma_rate_ratio(void) { (void)probe_now; return 0; }
void nest_bf16_gemm_general(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                            const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                            float *c, ptrdiff_t ldc) {
    (void)transA; (void)transB; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
}
#endif
