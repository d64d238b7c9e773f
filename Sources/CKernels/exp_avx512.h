// The AVX-512 e^x core shared by the kernels: n = round(x / ln 2),
// r = x - n ln 2 (two-part constant), a degree-6 polynomial for e^r, then
// scalef multiplies by 2^n. The caller clamps x to [-87.33, 88.376] first
// (and decides what the edges give).
#ifndef NEST_EXP_AVX512_H
#define NEST_EXP_AVX512_H
#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f,fma"), always_inline)) static inline __m512 nest_exp_core16(__m512 c) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

#endif
#endif
