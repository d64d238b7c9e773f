// AVX-512 versions of the engine's transcendental hot loops. Compiled with a
// per-function target attribute so the rest of the package stays baseline
// x86-64; the Swift side calls these only after nest_kernels_avx512().
#include "CKernels.h"
#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp_avx512.h"
#define AVX512 __attribute__((target("avx512f,fma")))

int nest_kernels_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

int nest_kernels_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

// e^x for 16 lanes (nest_exp_core16 in exp_avx512.h). Inputs are clamped as
// the Swift version: below -87.33 gives 0, above 88.376 gives +inf, NaN stays NaN.
AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.376f), lo = _mm512_set1_ps(-87.33f);
    __m512 e = nest_exp_core16(_mm512_min_ps(_mm512_max_ps(x, lo), hi));
    e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

AVX512 float nest_exp_shift_sum(float *x, ptrdiff_t n, float shift) {
    const __m512 s = _mm512_set1_ps(shift);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s));
        _mm512_storeu_ps(x + i, e0);
        _mm512_storeu_ps(x + i + 16, e1);
        acc0 = _mm512_add_ps(acc0, e0);
        acc1 = _mm512_add_ps(acc1, e1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = (n - i) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc0 = _mm512_add_ps(acc0, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 float nest_row_max(const float *x, ptrdiff_t n) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) {
        __mmask16 m = (n - i) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        m0 = _mm512_mask_max_ps(m0, m, m0, _mm512_maskz_loadu_ps(m, x + i));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

AVX512 void nest_silu(const float *x, float *y, ptrdiff_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = (n - i) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
        _mm512_mask_storeu_ps(y + i, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}

// erf as the Swift verf: Abramowitz–Stegun 7.1.26 for |x| >= 0.5, a Taylor
// series below (where 7.1.26 loses relative accuracy).
AVX512 static inline __m512 erf16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ax = _mm512_abs_ps(x);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 big = _mm512_fnmadd_ps(p, exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax))), one);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 s = _mm512_set1_ps(-1.0f / 1320);
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(1.0f / 216));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(-1.0f / 42));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(1.0f / 10));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(-1.0f / 3));
    s = _mm512_fmadd_ps(s, x2, one);
    __m512 small = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(1.1283791670955126f), x), s);
    __m512 signedBig = _mm512_mask_sub_ps(big, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), big);
    return _mm512_mask_mov_ps(signedBig, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.5f), _CMP_LT_OQ), small);
}

static inline __mmask16 tail_mask(ptrdiff_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

AVX512 void nest_geglu_forward(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rs2 = _mm512_set1_ps(0.7071067811865476f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * w, *g = a + w;
        float *o = out + r * w;
        for (ptrdiff_t i = 0; i < w; i += 16) {
            __mmask16 m = tail_mask(w - i);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
            __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(half, gv), _mm512_add_ps(one, erf16(_mm512_mul_ps(gv, rs2))));
            _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), gelu));
        }
    }
}

AVX512 void nest_geglu_backward(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rs2 = _mm512_set1_ps(0.7071067811865476f);
    const __m512 invSqrt2Pi = _mm512_set1_ps(0.3989422804014327f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * w, *g = a + w, *d = dy + r * w;
        float *da = dx + r * 2 * w, *dg = da + w;
        for (ptrdiff_t i = 0; i < w; i += 16) {
            __mmask16 m = tail_mask(w - i);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + i), dv = _mm512_maskz_loadu_ps(m, d + i);
            __m512 cdf = _mm512_mul_ps(half, _mm512_add_ps(one, erf16(_mm512_mul_ps(gv, rs2))));
            __m512 pdf = _mm512_mul_ps(invSqrt2Pi, exp16(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(gv, gv))));
            _mm512_mask_storeu_ps(da + i, m, _mm512_mul_ps(dv, _mm512_mul_ps(gv, cdf)));
            __m512 grad = _mm512_fmadd_ps(gv, pdf, cdf);
            _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(_mm512_mul_ps(dv, _mm512_maskz_loadu_ps(m, a + i)), grad));
        }
    }
}

AVX512 void nest_affine_silu(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, scale + i),
                                   _mm512_maskz_loadu_ps(m, shift + i));
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
        _mm512_mask_storeu_ps(y + i, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}

#else
int nest_kernels_avx512(void) { return 0; }
int nest_kernels_avx2(void) { return 0; }
float nest_exp_shift_sum(float *x, ptrdiff_t n, float shift) { (void)x; (void)n; (void)shift; return 0; }
float nest_row_max(const float *x, ptrdiff_t n) { (void)x; (void)n; return -INFINITY; }
void nest_silu(const float *x, float *y, ptrdiff_t n) { (void)x; (void)y; (void)n; }
void nest_affine_silu(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n) {
    (void)x; (void)scale; (void)shift; (void)y; (void)n;
}
void nest_geglu_forward(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w) { (void)x; (void)out; (void)rows; (void)w; }
void nest_geglu_backward(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w) {
    (void)x; (void)dy; (void)dx; (void)rows; (void)w;
}
#endif
