// nest_attention_block (attention_avx512.c) for CPUs with AVX2 and FMA but no
// AVX-512: the same transposed block with an online softmax, in 8-lane vectors.
//
// With 16 ymm registers the tiles shrink: a block holds 16 queries (2
// vectors), and the score and value tiles take 6 keys or 6 value channels at a
// time, so 12 accumulators, 2 loaded query (or probability) vectors and one
// broadcast fill the register file without spilling.
#include "CKernels.h"
#include <math.h>

#define NV 2         // vectors of 8 queries per block
#define QB (8 * NV)  // queries per block
#define KB 128       // keys per softmax step: an 8 KiB Sᵀ tile stays in L1
#define TILE 6       // keys per score tile, value channels per value tile
#define ST_ROWS (KB + TILE)  // the last score tile of a step may run past KB keys

ptrdiff_t nest_attention_block_queries_avx2(void) { return QB; }

ptrdiff_t nest_attention_scratch_floats_avx2(ptrdiff_t d, ptrdiff_t dv) {
    return (d + ST_ROWS + dv + 2) * QB + d + 8;
}

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp_avx2.h"
#include "attention_finish.h"
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// e^x for x ≤ 0 (a score minus its running max). Clamped at -87.33, where it
// gives ~1e-38 instead of 0 (no softmax sum, which is ≥ 1, can tell); there n ≥
// -126, so 2^n is one normal float built from its exponent bits. NaN stays NaN.
AVX2 INLINE __m256 exp_nonpositive(__m256 x) {
    __m256i n;
    const __m256 p = nest_exp_core8(_mm256_max_ps(_mm256_set1_ps(-87.33f), x), &n);  // second operand when x is NaN
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23)));
}

// Sᵀ rows for TILE keys: st[j][i] = Σ_c k_j[c]·qt[c][i]. Keys past `valid` read
// a zero row and are left out of the running column max `mx`.
AVX2 INLINE void score_tile(const float *k, ptrdiff_t kStride, ptrdiff_t valid, const float *zero,
                            const float *qt, ptrdiff_t d, float *st, __m256 mx[NV]) {
    const float *row[TILE];
    for (int j = 0; j < TILE; j++) row[j] = j < valid ? k + j * kStride : zero;
    __m256 acc[TILE][NV];
    for (int j = 0; j < TILE; j++)
        for (int w = 0; w < NV; w++) acc[j][w] = _mm256_setzero_ps();
    for (ptrdiff_t c = 0; c < d; c++) {
        __m256 qv[NV];
        for (int w = 0; w < NV; w++) qv[w] = _mm256_load_ps(qt + c * QB + 8 * w);
        for (int j = 0; j < TILE; j++) {
            const __m256 b = _mm256_broadcast_ss(row[j] + c);
            for (int w = 0; w < NV; w++) acc[j][w] = _mm256_fmadd_ps(b, qv[w], acc[j][w]);
        }
    }
    for (int j = 0; j < TILE; j++) {
        for (int w = 0; w < NV; w++) {
            _mm256_store_ps(st + j * QB + 8 * w, acc[j][w]);
            if (j < valid) mx[w] = _mm256_max_ps(mx[w], acc[j][w]);
        }
    }
}

// Oᵀ rows c0..c0+nc (nc ≤ TILE): ot[c] = ot[c]·corr + Σ_j v_j[c]·pt[j].
AVX2 INLINE void value_tile(const float *v, ptrdiff_t vStride, ptrdiff_t cols, const float *pt,
                            float *ot, int nc, const __m256 corr[NV]) {
    __m256 acc[TILE][NV];
    for (int c = 0; c < TILE; c++)
        for (int w = 0; w < NV; w++)
            acc[c][w] = c < nc ? _mm256_mul_ps(_mm256_load_ps(ot + c * QB + 8 * w), corr[w]) : _mm256_setzero_ps();
    for (ptrdiff_t j = 0; j < cols; j++) {
        const float *vr = v + j * vStride;
        __m256 pv[NV];
        for (int w = 0; w < NV; w++) pv[w] = _mm256_load_ps(pt + j * QB + 8 * w);
        for (int c = 0; c < TILE; c++) {
            if (c >= nc) break;
            const __m256 b = _mm256_broadcast_ss(vr + c);
            for (int w = 0; w < NV; w++) acc[c][w] = _mm256_fmadd_ps(b, pv[w], acc[c][w]);
        }
    }
    for (int c = 0; c < nc; c++)
        for (int w = 0; w < NV; w++) _mm256_store_ps(ot + c * QB + 8 * w, acc[c][w]);
}

AVX2 void nest_attention_block_avx2(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                                    const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                                    float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                                    float scale, float *scratch) {
    // Scratch (32-byte aligned by the caller): Qᵀ, Sᵀ/Pᵀ, Oᵀ, then a zero key row.
    float *qt = scratch, *st = qt + d * QB, *ot = st + ST_ROWS * QB;
    float *zero = ot + dv * QB;
    for (ptrdiff_t c = 0; c < d; c++) {
        for (ptrdiff_t i = 0; i < rows; i++) qt[c * QB + i] = q[i * qStride + c] * scale;
        for (ptrdiff_t i = rows; i < QB; i++) qt[c * QB + i] = 0;
    }
    for (ptrdiff_t i = 0; i < dv * QB; i++) ot[i] = 0;
    for (ptrdiff_t c = 0; c < d; c++) zero[c] = 0;

    const __m256 minusInf = _mm256_set1_ps(-INFINITY);
    __m256 m[NV], l[NV];
    for (int w = 0; w < NV; w++) { m[w] = minusInf; l[w] = _mm256_setzero_ps(); }
    for (ptrdiff_t k0 = 0; k0 < nk; k0 += KB) {
        const ptrdiff_t cols = nk - k0 < KB ? nk - k0 : KB;
        __m256 bm[NV];
        for (int w = 0; w < NV; w++) bm[w] = minusInf;
        for (ptrdiff_t j0 = 0; j0 < cols; j0 += TILE)
            score_tile(k + (k0 + j0) * kStride, kStride, cols - j0, zero, qt, d, st + j0 * QB, bm);
        __m256 corr[NV], sum[NV];
        for (int w = 0; w < NV; w++) {
            const __m256 mnew = _mm256_max_ps(m[w], bm[w]);
            // The first block has no running max (-inf): its correction is 0, not exp(-inf - -inf).
            const __m256 seen = _mm256_cmp_ps(m[w], minusInf, _CMP_NEQ_OQ);
            corr[w] = _mm256_and_ps(seen, exp_nonpositive(_mm256_sub_ps(m[w], mnew)));
            m[w] = mnew;
            sum[w] = _mm256_setzero_ps();
        }
        for (ptrdiff_t j = 0; j < cols; j++) {
            for (int w = 0; w < NV; w++) {
                const __m256 p = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(st + j * QB + 8 * w), m[w]));
                _mm256_store_ps(st + j * QB + 8 * w, p);
                sum[w] = _mm256_add_ps(sum[w], p);
            }
        }
        for (int w = 0; w < NV; w++) l[w] = _mm256_fmadd_ps(l[w], corr[w], sum[w]);
        const float *vb = v + k0 * vStride;
        ptrdiff_t c0 = 0;
        for (; c0 + TILE <= dv; c0 += TILE) value_tile(vb + c0, vStride, cols, st, ot + c0 * QB, TILE, corr);
        if (c0 < dv) value_tile(vb + c0, vStride, cols, st, ot + c0 * QB, (int)(dv - c0), corr);
    }
    float lsum[QB] __attribute__((aligned(32))), lmax[QB] __attribute__((aligned(32)));
    for (int w = 0; w < NV; w++) { _mm256_store_ps(lsum + 8 * w, l[w]); _mm256_store_ps(lmax + 8 * w, m[w]); }
    nest_attention_finish_block(ot, QB, lsum, lmax, rows, dv, out, outStride, lse);
}

#else
void nest_attention_block_avx2(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                               const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                               float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                               float scale, float *scratch) {
    (void)q; (void)qStride; (void)k; (void)kStride; (void)v; (void)vStride; (void)out; (void)outStride;
    (void)lse; (void)rows; (void)nk; (void)d; (void)dv; (void)scale; (void)scratch;
}
#endif
