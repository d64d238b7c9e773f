// float32 GEMM against the pre-packed panels of gemm_f32.c, for CPUs with
// AVX2 and FMA but no AVX-512: C = A·Wᵀ.
//
// Same packed layout ([N/32][K][32], zero-padded), so the weight packing is
// shared. With 16 ymm registers a 32-column panel is covered in two
// 16-column halves; the micro-kernel keeps 6×16 of C in 12 registers, plus
// two for the panel row and one for the broadcast A value.
#include "CKernels.h"

#define PANEL 32
#define AVX2_MR 6

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

// Lane masks for the first `cols` of 8 columns (cols clamped to 0...8).
AVX2 static inline __m256i lane_mask(ptrdiff_t cols) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int n = cols < 0 ? 0 : cols > 8 ? 8 : (int)cols;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

// C[rows × cols] = A[rows × k] · half-panel b (16 columns at stride PANEL);
// rows past `rows` repeat the last one and are not stored; cols ≤ 16.
AVX2 static void kernel_6x16(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *b, float *c,
                             ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols) {
    const float *r[AVX2_MR];
    for (int i = 0; i < AVX2_MR; i++) r[i] = a + (i < rows ? i : rows - 1) * lda;
    __m256 acc[AVX2_MR][2];
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX2_MR; i++) { acc[i][0] = _mm256_setzero_ps(); acc[i][1] = _mm256_setzero_ps(); }
    for (ptrdiff_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_load_ps(b + p * PANEL), b1 = _mm256_load_ps(b + p * PANEL + 8);
#pragma clang loop unroll(full)
        for (int i = 0; i < AVX2_MR; i++) {
            __m256 x = _mm256_broadcast_ss(r[i] + p);
            acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
        }
    }
    if (cols == 16) {
#pragma clang loop unroll(full)
        for (int i = 0; i < AVX2_MR; i++)
            if (i < rows) { _mm256_storeu_ps(c + i * ldc, acc[i][0]); _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]); }
        return;
    }
    // The last columns of C: masked stores never touch memory past them.
    __m256i m0 = lane_mask(cols), m1 = lane_mask(cols - 8);
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX2_MR; i++)
        if (i < rows) { _mm256_maskstore_ps(c + i * ldc, m0, acc[i][0]); _mm256_maskstore_ps(c + i * ldc + 8, m1, acc[i][1]); }
}

AVX2 void nest_f32_gemm_packed_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                                    const float *packed, float *c, ptrdiff_t ldc) {
    ptrdiff_t halves = (n + 15) / 16;
    for (ptrdiff_t h = 0; h < halves; h++) {
        const float *b = packed + (h / 2) * k * PANEL + (h % 2) * 16;
        ptrdiff_t cols = n - h * 16 < 16 ? n - h * 16 : 16;
        for (ptrdiff_t t = 0; t < m; t += AVX2_MR) {
            ptrdiff_t rows = m - t < AVX2_MR ? m - t : AVX2_MR;
            kernel_6x16(k, a + t * lda, lda, b, c + t * ldc + h * 16, ldc, rows, cols);
        }
    }
}
#else
void nest_f32_gemm_packed_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                               const float *packed, float *c, ptrdiff_t ldc) {
    nest_f32_gemm_packed(m, n, k, a, lda, packed, c, ldc);
}
#endif
