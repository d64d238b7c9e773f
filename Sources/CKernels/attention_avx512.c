// Non-causal attention for one block of queries of one head, AVX-512.
//
// Why its own kernel: attention heads in the Stable Diffusion UNets are
// narrow (40–160 wide), so calling a general GEMM per 128×256 tile spends
// much of its time packing operands and underfills the FMA units. Here the
// block works transposed: scores are kept as Sᵀ[key][query], so every vector
// holds 16 queries. Then
//   - Sᵀ = K·Qᵀ broadcasts one key element against query vectors of the packed Qᵀ,
//   - the softmax's max, exp and sum run down the key axis, vector-wise over queries,
//   - Oᵀ[channel][query] += Σ_key V[key][channel]·Pᵀ[key][query] broadcasts
//     value elements straight from V (rows of one head are contiguous),
// so neither K nor V is ever packed and all inner loops are FMA streams.
// Keys are taken ATTN_KB at a time with an online softmax (running max and
// sum per query), so scratch stays small whatever the number of keys.
#include "CKernels.h"
#include <math.h>

#define ATTN_QB 48   // queries per block: 3 vectors
#ifndef ATTN_KB
#define ATTN_KB 128
#endif  // keys per softmax step: a 24 KiB Sᵀ tile stays in L1

ptrdiff_t nest_attention_block_queries(void) { return ATTN_QB; }

ptrdiff_t nest_attention_scratch_floats(ptrdiff_t d, ptrdiff_t dv) {
    return (d + ATTN_KB + dv + 2) * ATTN_QB + d + 16;
}

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp_avx512.h"
#include "attention_finish.h"
#include "attention_tile_avx512.h"
#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE static inline __attribute__((always_inline))

// e^x for x ≤ 0 (a score minus its running max), as exp16 in kernels_avx512.c
// except below -87.33, where it gives e^-87.33 (~1e-38) instead of 0, which no
// softmax sum (≥ 1) can tell apart. NaN stays NaN (max keeps its second operand).
AVX512 INLINE __m512 exp_nonpositive(__m512 x) {
    return nest_exp_core16(_mm512_max_ps(_mm512_set1_ps(-87.33f), x));
}

// Sᵀ rows for 8 keys: st[j][i] = Σ_c k_j[c]·qt[c][i]. Keys past `valid` read a
// zero row and are left out of the running column max `mx`.
AVX512 INLINE void score_tile(const float *k, ptrdiff_t kStride, ptrdiff_t valid, const float *zero,
                              const float *qt, ptrdiff_t d, float *st, __m512 mx[3]) {
    const float *row[8];
    for (int j = 0; j < 8; j++) row[j] = j < valid ? k + j * kStride : zero;
    // The next tile's keys come from L2 or beyond (rows are strided by all heads):
    // ask for them now so the broadcasts below do not wait.
    if (valid > 8)
        for (int j = 8; j < 16 && j < valid; j++)
            for (ptrdiff_t c = 0; c < d; c += 16) _mm_prefetch((const char *)(k + j * kStride + c), _MM_HINT_T0);
    __m512 acc[8][3];
    nest_tile_zero(acc);
    for (ptrdiff_t c = 0; c < d; c++) {
        const __m512 q0 = _mm512_load_ps(qt + c * ATTN_QB), q1 = _mm512_load_ps(qt + c * ATTN_QB + 16),
                     q2 = _mm512_load_ps(qt + c * ATTN_QB + 32);
        for (int j = 0; j < 8; j++) {
            const __m512 b = _mm512_set1_ps(row[j][c]);
            acc[j][0] = _mm512_fmadd_ps(b, q0, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(b, q1, acc[j][1]);
            acc[j][2] = _mm512_fmadd_ps(b, q2, acc[j][2]);
        }
    }
    nest_tile_store_scores(acc, valid, st, ATTN_QB, mx);
}

// Oᵀ rows c0..c0+nc (nc ≤ 8): ot[c] = ot[c]·corr + Σ_j v_j[c]·pt[j]. Inlined
// with nc = 8 for whole tiles, so the guards fold away.
AVX512 INLINE void value_tile(const float *v, ptrdiff_t vStride, ptrdiff_t cols, const float *pt,
                              float *ot, int nc, const __m512 corr[3]) {
    __m512 acc[8][3];
    nest_tile_load_rescaled(acc, ot, ATTN_QB, nc, corr);
    for (ptrdiff_t j = 0; j < cols; j++) {
        const float *vr = v + j * vStride;
        _mm_prefetch((const char *)(vr + 8 * vStride), _MM_HINT_T0);
        const __m512 p0 = _mm512_load_ps(pt + j * ATTN_QB), p1 = _mm512_load_ps(pt + j * ATTN_QB + 16),
                     p2 = _mm512_load_ps(pt + j * ATTN_QB + 32);
        for (int c = 0; c < 8; c++) {
            if (c >= nc) break;
            const __m512 b = _mm512_set1_ps(vr[c]);
            acc[c][0] = _mm512_fmadd_ps(b, p0, acc[c][0]);
            acc[c][1] = _mm512_fmadd_ps(b, p1, acc[c][1]);
            acc[c][2] = _mm512_fmadd_ps(b, p2, acc[c][2]);
        }
    }
    nest_tile_store_rows(acc, ot, ATTN_QB, nc);
}

AVX512 void nest_attention_block(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                                  const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                                  float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                                  float scale, float *scratch) {
    // Scratch (64-byte aligned by the caller): Qᵀ, Sᵀ/Pᵀ, Oᵀ, then a zero key row.
    float *qt = scratch, *st = qt + d * ATTN_QB, *ot = st + ATTN_KB * ATTN_QB;
    float *zero = ot + dv * ATTN_QB;
    for (ptrdiff_t c = 0; c < d; c++) {
        for (ptrdiff_t i = 0; i < rows; i++) qt[c * ATTN_QB + i] = q[i * qStride + c] * scale;
        for (ptrdiff_t i = rows; i < ATTN_QB; i++) qt[c * ATTN_QB + i] = 0;
    }
    for (ptrdiff_t i = 0; i < dv * ATTN_QB; i++) ot[i] = 0;
    for (ptrdiff_t c = 0; c < d; c++) zero[c] = 0;

    __m512 m[3], l[3];
    for (int w = 0; w < 3; w++) { m[w] = _mm512_set1_ps(-INFINITY); l[w] = _mm512_setzero_ps(); }
    for (ptrdiff_t k0 = 0; k0 < nk; k0 += ATTN_KB) {
        const ptrdiff_t cols = nk - k0 < ATTN_KB ? nk - k0 : ATTN_KB;
        __m512 bm[3] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY)};
        for (ptrdiff_t j0 = 0; j0 < cols; j0 += 8)
            score_tile(k + (k0 + j0) * kStride, kStride, cols - j0, zero, qt, d, st + j0 * ATTN_QB, bm);
        __m512 corr[3], sum[3];
        for (int w = 0; w < 3; w++) {
            const __m512 mnew = _mm512_max_ps(m[w], bm[w]);
            // The first block has no running max (-inf): its correction is 0, not exp(-inf - -inf).
            const __mmask16 seen = _mm512_cmp_ps_mask(m[w], _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
            corr[w] = _mm512_maskz_mov_ps(seen, exp_nonpositive(_mm512_sub_ps(m[w], mnew)));
            m[w] = mnew;
            sum[w] = _mm512_setzero_ps();
        }
        for (ptrdiff_t j = 0; j < cols; j++) {
            for (int w = 0; w < 3; w++) {
                const __m512 p = exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(st + j * ATTN_QB + 16 * w), m[w]));
                _mm512_store_ps(st + j * ATTN_QB + 16 * w, p);
                sum[w] = _mm512_add_ps(sum[w], p);
            }
        }
        for (int w = 0; w < 3; w++) l[w] = _mm512_fmadd_ps(l[w], corr[w], sum[w]);
        const float *vb = v + k0 * vStride;
        ptrdiff_t c0 = 0;
        for (; c0 + 8 <= dv; c0 += 8) value_tile(vb + c0, vStride, cols, st, ot + c0 * ATTN_QB, 8, corr);
        if (c0 < dv) value_tile(vb + c0, vStride, cols, st, ot + c0 * ATTN_QB, (int)(dv - c0), corr);
    }
    float lsum[ATTN_QB] __attribute__((aligned(64))), lmax[ATTN_QB] __attribute__((aligned(64)));
    for (int w = 0; w < 3; w++) { _mm512_store_ps(lsum + 16 * w, l[w]); _mm512_store_ps(lmax + 16 * w, m[w]); }
    nest_attention_finish_block(ot, ATTN_QB, lsum, lmax, rows, dv, out, outStride, lse);
}

#else
void nest_attention_block(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                          const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                          float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                          float scale, float *scratch) {
    (void)q; (void)qStride; (void)k; (void)kStride; (void)v; (void)vStride; (void)out; (void)outStride;
    (void)lse; (void)rows; (void)nk; (void)d; (void)dv; (void)scale; (void)scratch;
}
#endif
