// The AVX2 e^x core shared by the kernels: n = round(x / ln 2),
// r = x - n ln 2 (two-part constant) and a degree-6 polynomial for e^r. The
// caller clamps x to [-87.33, 88.376] first and applies 2^n itself: one
// exponent step where n stays a float's exponent (x ≤ 0), two halves where
// n reaches 128 at the upper clamp.
#ifndef NEST_EXP_AVX2_H
#define NEST_EXP_AVX2_H
#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 nest_exp_core8(__m256 c, __m256i *n_out) {
    __m256 n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), c);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    *n_out = _mm256_cvtps_epi32(n);
    return p;
}

#endif
#endif
