// Float16 storage for weights: widening to float32 before a GEMM, and the
// one-time narrowing. Vector paths by CPU feature, chosen once; the scalar
// path handles the whole format (subnormals, infinities, NaN) by bits.
#include "CKernels.h"
#include <stdint.h>
#include <string.h>

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0) {
        if (mantissa == 0) { bits = sign; }
        else {  // subnormal: normalize
            int e = -1;
            do { e++; mantissa <<= 1; } while ((mantissa & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mantissa & 0x3FF) << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7F800000 | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f; memcpy(&f, &bits, 4); return f;
}

static uint16_t float_to_half(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, abs = x & 0x7FFFFFFF;
    if (abs >= 0x7F800000) return (uint16_t)(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));
    if (abs >= 0x477FF000) return (uint16_t)(sign | 0x7C00);  // rounds to infinity
    if (abs < 0x38800000) {  // a half subnormal (or zero): units of 2^-24
        if (abs < 0x33000000) return (uint16_t)sign;  // at most 2^-25: ties to even give 0
        uint32_t e = abs >> 23, shift = 126 - e;     // value = m24 · 2^(e-150) = (m24 >> shift) units
        uint32_t m24 = (abs & 0x7FFFFF) | 0x800000;
        uint32_t q = m24 >> shift, rem = m24 & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((abs >> 13) - (112 << 10));
    uint32_t rem = abs & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f")))
static void f16_to_f32_avx512(const uint16_t *src, float *dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

__attribute__((target("avx512f")))
static void f32_to_f16_avx512(const float *src, uint16_t *dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = float_to_half(src[i]);
}

__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

static int level(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("f16c") ? 1 : 0);
    }
    return cached;
}
#endif

void nest_f16_to_f32(const unsigned short *src, float *dst, ptrdiff_t n) {
#if defined(__x86_64__)
    int l = level();
    if (l == 2) { f16_to_f32_avx512(src, dst, n); return; }
    if (l == 1) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

void nest_f32_to_f16(const float *src, unsigned short *dst, ptrdiff_t n) {
#if defined(__x86_64__)
    if (level() == 2) { f32_to_f16_avx512(src, dst, n); return; }
#endif
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = float_to_half(src[i]);
}
