// Non-causal attention with bfloat16 products (AVX512_BF16), float32
// softmax and sums: the layout of attention_avx512.c (blocks of 48 queries
// of one head, scores transposed so every vector holds 16 queries), with
// both products on VDPBF16PS, which multiplies pairs and so does two
// multiply-adds per lane where an FMA does one:
//   - Sᵀ = K·Qᵀ pairs channels: Qᵀ is packed as words (two bfloat16
//     channels) per query, and each key's word is broadcast;
//   - Oᵀ += V·Pᵀ pairs keys: the probabilities of keys 2j and 2j+1 are
//     interleaved into words per query, and V is packed once per head as
//     words (V[2j][c], V[2j+1][c]).
// The exponentials and the running max and sum stay float32; the rounding is
// that of Q, K, V and P to 8 bits of mantissa.
#include "CKernels.h"
#include <math.h>
#include <stdint.h>

#define BQB 48    // queries per block: 3 vectors
#define BKB 128   // keys per softmax step (even: key pairs never straddle steps)

ptrdiff_t nest_attention_bf16_scratch_floats(ptrdiff_t d, ptrdiff_t dv) {
    return ((d + 1) / 2 + BKB + BKB / 2 + dv) * BQB + (d + 1) / 2 + 16;
}

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp_avx512.h"
#include "attention_finish.h"
#include "attention_tile_avx512.h"
#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define INLINE static inline __attribute__((always_inline))

static inline uint32_t bf16_pair(float lo, float hi) {
    uint32_t a, b;
    __builtin_memcpy(&a, &lo, 4);
    __builtin_memcpy(&b, &hi, 4);
    a = (a + 0x7fffu + ((a >> 16) & 1)) >> 16;  // inputs are finite activations: no NaN case
    b = (b + 0x7fffu + ((b >> 16) & 1)) >> 16;
    return a | b << 16;
}

void nest_attention_pack_keys_bf16(const float *k, ptrdiff_t kStride, ptrdiff_t nk, ptrdiff_t d, unsigned int *out) {
    ptrdiff_t dp = (d + 1) / 2;
    for (ptrdiff_t j = 0; j < nk; j++)
        for (ptrdiff_t p = 0; p < dp; p++)
            out[j * dp + p] = bf16_pair(k[j * kStride + 2 * p], 2 * p + 1 < d ? k[j * kStride + 2 * p + 1] : 0);
}

void nest_attention_pack_values_bf16(const float *v, ptrdiff_t vStride, ptrdiff_t nk, ptrdiff_t dv, unsigned int *out) {
    for (ptrdiff_t jp = 0; jp < (nk + 1) / 2; jp++)
        for (ptrdiff_t c = 0; c < dv; c++)
            out[jp * dv + c] = bf16_pair(v[2 * jp * vStride + c], 2 * jp + 1 < nk ? v[(2 * jp + 1) * vStride + c] : 0);
}

BF16 INLINE __m512 exp_nonpositive_bf(__m512 x) {
    return nest_exp_core16(_mm512_max_ps(_mm512_set1_ps(-87.33f), x));
}

// Sᵀ rows for 8 keys (packed words, dp per key); keys past `valid` read the zero row.
BF16 INLINE void score_tile_bf16(const uint32_t *k, ptrdiff_t valid, const uint32_t *zero, const uint32_t *qt,
                                 ptrdiff_t dp, float *st, __m512 mx[3]) {
    const uint32_t *row[8];
    for (int j = 0; j < 8; j++) row[j] = j < valid ? k + j * dp : zero;
    __m512 acc[8][3];
    nest_tile_zero(acc);
    for (ptrdiff_t p = 0; p < dp; p++) {
        const __m512bh q0 = (__m512bh)_mm512_load_si512(qt + p * BQB), q1 = (__m512bh)_mm512_load_si512(qt + p * BQB + 16),
                       q2 = (__m512bh)_mm512_load_si512(qt + p * BQB + 32);
        for (int j = 0; j < 8; j++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)row[j][p]);
            acc[j][0] = _mm512_dpbf16_ps(acc[j][0], b, q0);
            acc[j][1] = _mm512_dpbf16_ps(acc[j][1], b, q1);
            acc[j][2] = _mm512_dpbf16_ps(acc[j][2], b, q2);
        }
    }
    nest_tile_store_scores(acc, valid, st, BQB, mx);
}

// Oᵀ rows c0..c0+nc (nc ≤ 8): ot[c] = ot[c]·corr + Σ_pairs v-word[c]·pt-pair.
BF16 INLINE void value_tile_bf16(const uint32_t *v, ptrdiff_t dv, ptrdiff_t pairs, const uint32_t *pt,
                                 float *ot, int nc, const __m512 corr[3]) {
    __m512 acc[8][3];
    nest_tile_load_rescaled(acc, ot, BQB, nc, corr);
    for (ptrdiff_t j = 0; j < pairs; j++) {
        const uint32_t *vr = v + j * dv;
        const __m512bh p0 = (__m512bh)_mm512_load_si512(pt + j * BQB), p1 = (__m512bh)_mm512_load_si512(pt + j * BQB + 16),
                       p2 = (__m512bh)_mm512_load_si512(pt + j * BQB + 32);
        for (int c = 0; c < 8; c++) {
            if (c >= nc) break;
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)vr[c]);
            acc[c][0] = _mm512_dpbf16_ps(acc[c][0], b, p0);
            acc[c][1] = _mm512_dpbf16_ps(acc[c][1], b, p1);
            acc[c][2] = _mm512_dpbf16_ps(acc[c][2], b, p2);
        }
    }
    nest_tile_store_rows(acc, ot, BQB, nc);
}

BF16 void nest_attention_block_bf16(const float *q, ptrdiff_t qStride, const unsigned int *k,
                                    const unsigned int *v, float *out, ptrdiff_t outStride, float *lse,
                                    ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv, float scale,
                                    float *scratch) {
    const ptrdiff_t dp = (d + 1) / 2;
    uint32_t *qt = (uint32_t *)scratch;
    float *st = scratch + dp * BQB;
    uint32_t *pt = (uint32_t *)(st + BKB * BQB);
    float *ot = (float *)(pt + BKB / 2 * BQB);
    uint32_t *zero = (uint32_t *)(ot + dv * BQB);
    for (ptrdiff_t p = 0; p < dp; p++) {
        for (ptrdiff_t i = 0; i < rows; i++)
            qt[p * BQB + i] = bf16_pair(q[i * qStride + 2 * p] * scale, 2 * p + 1 < d ? q[i * qStride + 2 * p + 1] * scale : 0);
        for (ptrdiff_t i = rows; i < BQB; i++) qt[p * BQB + i] = 0;
    }
    for (ptrdiff_t i = 0; i < dv * BQB; i++) ot[i] = 0;
    for (ptrdiff_t p = 0; p < dp; p++) zero[p] = 0;
    // Interleaves two rows of 16 bfloat16 values: word i = (a[i], b[i]).
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);

    __m512 m[3], l[3];
    for (int w = 0; w < 3; w++) { m[w] = _mm512_set1_ps(-INFINITY); l[w] = _mm512_setzero_ps(); }
    for (ptrdiff_t k0 = 0; k0 < nk; k0 += BKB) {
        const ptrdiff_t cols = nk - k0 < BKB ? nk - k0 : BKB;
        __m512 bm[3] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY)};
        for (ptrdiff_t j0 = 0; j0 < cols; j0 += 8)
            score_tile_bf16(k + (k0 + j0) * dp, cols - j0, zero, qt, dp, st + j0 * BQB, bm);
        __m512 corr[3], sum[3];
        for (int w = 0; w < 3; w++) {
            const __m512 mnew = _mm512_max_ps(m[w], bm[w]);
            const __mmask16 seen = _mm512_cmp_ps_mask(m[w], _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
            corr[w] = _mm512_maskz_mov_ps(seen, exp_nonpositive_bf(_mm512_sub_ps(m[w], mnew)));
            m[w] = mnew;
            sum[w] = _mm512_setzero_ps();
        }
        // Probabilities of keys j and j + 1 (zero past the last key), summed in
        // float32 and stored as interleaved bfloat16 pairs.
        for (ptrdiff_t j = 0; j < cols; j += 2) {
            for (int w = 0; w < 3; w++) {
                const __m512 a = exp_nonpositive_bf(_mm512_sub_ps(_mm512_load_ps(st + j * BQB + 16 * w), m[w]));
                const __m512 b = j + 1 < cols
                    ? exp_nonpositive_bf(_mm512_sub_ps(_mm512_load_ps(st + (j + 1) * BQB + 16 * w), m[w]))
                    : _mm512_setzero_ps();
                sum[w] = _mm512_add_ps(sum[w], _mm512_add_ps(a, b));
                const __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(b, a);
                _mm512_store_si512(pt + (j / 2) * BQB + 16 * w, _mm512_permutexvar_epi16(interleave, ab));
            }
        }
        for (int w = 0; w < 3; w++) l[w] = _mm512_fmadd_ps(l[w], corr[w], sum[w]);
        const uint32_t *vb = v + (k0 / 2) * dv;
        const ptrdiff_t pairs = (cols + 1) / 2;
        ptrdiff_t c0 = 0;
        for (; c0 + 8 <= dv; c0 += 8) value_tile_bf16(vb + c0, dv, pairs, pt, ot + c0 * BQB, 8, corr);
        if (c0 < dv) value_tile_bf16(vb + c0, dv, pairs, pt, ot + c0 * BQB, (int)(dv - c0), corr);
    }
    float lsum[BQB] __attribute__((aligned(64))), lmax[BQB] __attribute__((aligned(64)));
    for (int w = 0; w < 3; w++) { _mm512_store_ps(lsum + 16 * w, l[w]); _mm512_store_ps(lmax + 16 * w, m[w]); }
    nest_attention_finish_block(ot, BQB, lsum, lmax, rows, dv, out, outStride, lse);
}

#else
void nest_attention_pack_keys_bf16(const float *k, ptrdiff_t kStride, ptrdiff_t nk, ptrdiff_t d, unsigned int *out) {
    (void)k; (void)kStride; (void)nk; (void)d; (void)out;
}
void nest_attention_pack_values_bf16(const float *v, ptrdiff_t vStride, ptrdiff_t nk, ptrdiff_t dv, unsigned int *out) {
    (void)v; (void)vStride; (void)nk; (void)dv; (void)out;
}
void nest_attention_block_bf16(const float *q, ptrdiff_t qStride, const unsigned int *k,
                               const unsigned int *v, float *out, ptrdiff_t outStride, float *lse,
                               ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv, float scale,
                               float *scratch) {
    (void)q; (void)qStride; (void)k; (void)v; (void)out; (void)outStride; (void)lse;
    (void)rows; (void)nk; (void)d; (void)dv; (void)scale; (void)scratch;
}
#endif
