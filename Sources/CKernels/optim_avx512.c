// The optimizer's per-element loops with AVX-512. Swift does not vectorize
// them (four pointers it cannot prove apart, a square root and a division per
// element), and at the miniature world's batch sizes AdamW alone took 8% of a
// training step. Same operations in the same order as the Swift loops in
// AdamW.swift, no fused multiply-adds: the two paths give identical weights.
#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))

static inline __mmask16 lanes16(ptrdiff_t count) {
    return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
}

AVX512 void nest_adamw(float *w, float *m, float *v, const float *g, ptrdiff_t n, float beta1, float beta2,
                       float decay, float stepSize, float sqrtBc2, float eps) {
    const __m512 b1 = _mm512_set1_ps(beta1), c1 = _mm512_set1_ps(1 - beta1);
    const __m512 b2 = _mm512_set1_ps(beta2), c2 = _mm512_set1_ps(1 - beta2);
    const __m512 d = _mm512_set1_ps(decay), s = _mm512_set1_ps(stepSize);
    const __m512 root = _mm512_set1_ps(sqrtBc2), e = _mm512_set1_ps(eps);
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 k = lanes16(n - i);
        __m512 gi = _mm512_maskz_loadu_ps(k, g + i);
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(c1, gi));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k, v + i)),
                                  _mm512_mul_ps(_mm512_mul_ps(c2, gi), gi));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), root), e);
        __m512 wi = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), d),
                                  _mm512_div_ps(_mm512_mul_ps(s, mi), denom));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        _mm512_mask_storeu_ps(w + i, k, wi);
    }
}

AVX512 double nest_sum_squares(const float *x, ptrdiff_t n) {
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __m512 xi = _mm512_maskz_loadu_ps(lanes16(n - i), x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(xi));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xi), 1)));
        acc0 = _mm512_fmadd_pd(lo, lo, acc0);
        acc1 = _mm512_fmadd_pd(hi, hi, acc1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

#else
void nest_adamw(float *w, float *m, float *v, const float *g, ptrdiff_t n, float beta1, float beta2,
                float decay, float stepSize, float sqrtBc2, float eps) {
    (void)w; (void)m; (void)v; (void)g; (void)n; (void)beta1; (void)beta2; (void)decay; (void)stepSize;
    (void)sqrtBc2; (void)eps;
}
double nest_sum_squares(const float *x, ptrdiff_t n) { (void)x; (void)n; return 0; }
#endif
