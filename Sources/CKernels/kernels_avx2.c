// AVX2+FMA versions of the transcendental hot loops in kernels_avx512.c, for
// x86-64 CPUs without AVX-512: 8 lanes, the same approximations (so the same
// results to a few ulp), masked loads and stores for the last lanes of a row.
#include "CKernels.h"
#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp_avx2.h"
#define AVX2 __attribute__((target("avx2,fma")))

// Lanes below `left` (clamped to 0...8) set.
AVX2 static inline __m256i lanes_below(ptrdiff_t left) {
    int n = left < 0 ? 0 : left > 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// e^x for 8 lanes, as exp16 in kernels_avx512.c: n = round(x / ln 2), a
// degree-6 polynomial for e^(x - n ln 2), times 2^n applied in two halves
// (n reaches 128 at the upper clamp, past a single float's exponent).
// Below -87.33 gives 0, above 88.376 gives +inf, NaN stays NaN.
AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.376f), lo = _mm256_set1_ps(-87.33f);
    __m256 c = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256i ni;
    const __m256 p = nest_exp_core8(c, &ni);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

AVX2 float nest_exp_shift_sum_avx2(float *x, ptrdiff_t n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), s));
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + 8, e1);
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
    }
    for (; i < n; i += 8) {
        __m256i m = lanes_below(n - i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), s));
        _mm256_maskstore_ps(x + i, m, e);
        acc0 = _mm256_add_ps(acc0, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

AVX2 float nest_row_max_avx2(const float *x, ptrdiff_t n) {
    const __m256 none = _mm256_set1_ps(-INFINITY);
    __m256 m0 = none, m1 = none;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i < n; i += 8) {
        __m256i m = lanes_below(n - i);
        m0 = _mm256_max_ps(m0, _mm256_blendv_ps(none, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m)));
    }
    __m256 v = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

AVX2 static inline __m256 silu8(__m256 v) {
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

AVX2 void nest_silu_avx2(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        __m256i m = lanes_below(n - i);
        _mm256_maskstore_ps(y + i, m, silu8(_mm256_maskload_ps(x + i, m)));
    }
}

AVX2 void nest_affine_silu_avx2(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        __m256i m = lanes_below(n - i);
        __m256 v = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(scale + i, m),
                                   _mm256_maskload_ps(shift + i, m));
        _mm256_maskstore_ps(y + i, m, silu8(v));
    }
}

// erf as erf16 in kernels_avx512.c: Abramowitz–Stegun 7.1.26 for |x| >= 0.5,
// a Taylor series below.
AVX2 static inline __m256 erf8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 big = _mm256_fnmadd_ps(p, exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax))), one);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 s = _mm256_set1_ps(-1.0f / 1320);
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(1.0f / 216));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(-1.0f / 42));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(1.0f / 10));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(-1.0f / 3));
    s = _mm256_fmadd_ps(s, x2, one);
    __m256 small = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(1.1283791670955126f), x), s);
    __m256 signedBig = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    return _mm256_blendv_ps(signedBig, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

AVX2 void nest_geglu_forward_avx2(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), rs2 = _mm256_set1_ps(0.7071067811865476f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * w, *g = a + w;
        float *o = out + r * w;
        for (ptrdiff_t i = 0; i < w; i += 8) {
            __m256i m = lanes_below(w - i);
            __m256 gv = _mm256_maskload_ps(g + i, m);
            __m256 gelu = _mm256_mul_ps(_mm256_mul_ps(half, gv), _mm256_add_ps(one, erf8(_mm256_mul_ps(gv, rs2))));
            _mm256_maskstore_ps(o + i, m, _mm256_mul_ps(_mm256_maskload_ps(a + i, m), gelu));
        }
    }
}

AVX2 void nest_geglu_backward_avx2(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), rs2 = _mm256_set1_ps(0.7071067811865476f);
    const __m256 invSqrt2Pi = _mm256_set1_ps(0.3989422804014327f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * w, *g = a + w, *d = dy + r * w;
        float *da = dx + r * 2 * w, *dg = da + w;
        for (ptrdiff_t i = 0; i < w; i += 8) {
            __m256i m = lanes_below(w - i);
            __m256 gv = _mm256_maskload_ps(g + i, m), dv = _mm256_maskload_ps(d + i, m);
            __m256 cdf = _mm256_mul_ps(half, _mm256_add_ps(one, erf8(_mm256_mul_ps(gv, rs2))));
            __m256 pdf = _mm256_mul_ps(invSqrt2Pi, exp8(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(gv, gv))));
            _mm256_maskstore_ps(da + i, m, _mm256_mul_ps(dv, _mm256_mul_ps(gv, cdf)));
            __m256 grad = _mm256_fmadd_ps(gv, pdf, cdf);
            _mm256_maskstore_ps(dg + i, m, _mm256_mul_ps(_mm256_mul_ps(dv, _mm256_maskload_ps(a + i, m)), grad));
        }
    }
}

#else
// Off x86 nothing calls these (nest_kernels_avx2() is 0).
float nest_exp_shift_sum_avx2(float *x, ptrdiff_t n, float shift) { (void)x; (void)n; (void)shift; return 0; }
float nest_row_max_avx2(const float *x, ptrdiff_t n) { (void)x; (void)n; return -INFINITY; }
void nest_silu_avx2(const float *x, float *y, ptrdiff_t n) { (void)x; (void)y; (void)n; }
void nest_affine_silu_avx2(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n) {
    (void)x; (void)scale; (void)shift; (void)y; (void)n;
}
void nest_geglu_forward_avx2(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w) { (void)x; (void)out; (void)rows; (void)w; }
void nest_geglu_backward_avx2(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w) {
    (void)x; (void)dy; (void)dx; (void)rows; (void)w;
}
#endif
