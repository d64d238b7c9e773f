// float32 GEMM against a pre-packed right-hand side, AVX-512: C = A·Wᵀ.
//
// Why: Winograd convolutions run 36 GEMMs per block of 64 tiles, each only
// 64 rows tall. A general sgemm packs both operands for every one of them:
// the weights (O×C values for 64 rows of work) and the tiles. Here the
// transformed weights are packed once per call into 32-column panels and the
// tile rows are read where they lie (one broadcast per row and k), so neither
// operand is copied per GEMM. The micro-kernel keeps 12×32 of C in 24
// registers.
//
// Packed layout: [N/32 column blocks][K][32 columns] floats, zero-padded.
#include "CKernels.h"
#include <string.h>

#define F32_MR 12
#define F32_NR 32

ptrdiff_t nest_f32_packed_floats(ptrdiff_t n, ptrdiff_t k) { return (n + F32_NR - 1) / F32_NR * k * F32_NR; }

void nest_f32_pack_panels(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, float *out) {
    ptrdiff_t blocks = (n + F32_NR - 1) / F32_NR;
    for (ptrdiff_t nb = 0; nb < blocks; nb++) {
        float *panel = out + nb * k * F32_NR;
        for (ptrdiff_t j = 0; j < F32_NR; j++) {
            ptrdiff_t col = nb * F32_NR + j;
            for (ptrdiff_t p = 0; p < k; p++) panel[p * F32_NR + j] = col < n ? w[col * ldw + p] : 0;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,fma")))

// C[rows × 32] = A[rows × k] · panel; rows of A at stride lda (rows past
// `rows` repeat the last one and are not stored).
AVX512 static void kernel_12x32(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *b, float *c,
                                ptrdiff_t ldc, ptrdiff_t rows, __mmask16 m0, __mmask16 m1, int accumulate) {
    const float *r[F32_MR];
    for (int i = 0; i < F32_MR; i++) r[i] = a + (i < rows ? i : rows - 1) * lda;
    __m512 acc[F32_MR][2];
#pragma clang loop unroll(full)
    for (int i = 0; i < F32_MR; i++) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    for (ptrdiff_t p = 0; p < k; p++) {
        __m512 b0 = _mm512_load_ps(b + p * F32_NR), b1 = _mm512_load_ps(b + p * F32_NR + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < F32_MR; i++) {
            __m512 x = _mm512_set1_ps(r[i][p]);
            acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
        }
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < F32_MR; i++) {
        if (i < rows) {
            if (accumulate) {
                acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_maskz_loadu_ps(m0, c + i * ldc));
                acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_maskz_loadu_ps(m1, c + i * ldc + 16));
            }
            _mm512_mask_storeu_ps(c + i * ldc, m0, acc[i][0]);
            _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc[i][1]);
        }
    }
}

AVX512 void nest_f32_gemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                                 const float *packed, float *c, ptrdiff_t ldc) {
    ptrdiff_t blocks = (n + F32_NR - 1) / F32_NR;
    for (ptrdiff_t nb = 0; nb < blocks; nb++) {
        const float *panel = packed + nb * k * F32_NR;
        ptrdiff_t cols = n - nb * F32_NR;
        __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
        __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
        for (ptrdiff_t t = 0; t < m; t += F32_MR) {
            ptrdiff_t rows = m - t < F32_MR ? m - t : F32_MR;
            kernel_12x32(k, a + t * lda, lda, panel, c + t * ldc + nb * F32_NR, ldc, rows, m0, m1, 0);
        }
    }
}

// Linear layers: C[m × panels nb0..<nb1] (+)= A·Wᵀ, rows taken in blocks
// whose A rows (about 384 KiB) stay in L2 while every panel of W streams past
// them once; nest_f32_gemm_packed's panel-outer order would re-read all of A
// from memory for each panel.
AVX512 void nest_f32_gemm_packed_blocked(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                                         const float *packed, ptrdiff_t nb0, ptrdiff_t nb1, float *c, ptrdiff_t ldc,
                                         int accumulate) {
    ptrdiff_t mc = (384 * 1024 / 4) / (k > 0 ? k : 1) / F32_MR * F32_MR;
    if (mc < F32_MR) mc = F32_MR;
    if (mc > 16 * F32_MR) mc = 16 * F32_MR;
    for (ptrdiff_t i0 = 0; i0 < m; i0 += mc) {
        ptrdiff_t rowsBlock = m - i0 < mc ? m - i0 : mc;
        for (ptrdiff_t nb = nb0; nb < nb1; nb++) {
            const float *panel = packed + nb * k * F32_NR;
            ptrdiff_t cols = n - nb * F32_NR;
            __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
            for (ptrdiff_t t = 0; t < rowsBlock; t += F32_MR) {
                ptrdiff_t rows = rowsBlock - t < F32_MR ? rowsBlock - t : F32_MR;
                kernel_12x32(k, a + (i0 + t) * lda, lda, panel, c + (i0 + t) * ldc + nb * F32_NR, ldc, rows, m0, m1,
                             accumulate);
            }
        }
    }
}
#else
void nest_f32_gemm_packed_blocked(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                                  const float *packed, ptrdiff_t nb0, ptrdiff_t nb1, float *c, ptrdiff_t ldc,
                                  int accumulate) {
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = nb0 * F32_NR; j < n && j < nb1 * F32_NR; j++) {
            const float *panel = packed + (j / F32_NR) * k * F32_NR + j % F32_NR;
            float s = accumulate ? c[i * ldc + j] : 0;
            for (ptrdiff_t p = 0; p < k; p++) s += a[i * lda + p] * panel[p * F32_NR];
            c[i * ldc + j] = s;
        }
}
void nest_f32_gemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                          const float *packed, float *c, ptrdiff_t ldc) {
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            const float *panel = packed + (j / F32_NR) * k * F32_NR + j % F32_NR;
            float s = 0;
            for (ptrdiff_t p = 0; p < k; p++) s += a[i * lda + p] * panel[p * F32_NR];
            c[i * ldc + j] = s;
        }
}
#endif

// Winograd F(4×4, 3×3) weight transform U = G·g·Gᵀ straight into the packed
// panels above, for the 32-column panels nb0..<nb1 of o output channels: 36
// planes of nest_f32_packed_floats(o, c) floats. The 32 kernels of a panel
// are first transposed to [tap][channel][32] (scratch: 9·c·32 floats), so
// the transform then runs on vectors of 32 output channels and writes whole
// panel rows; scattering scalars into the panels cost more than the packing
// saved at SD's 32×32 latents. One body, compiled for AVX-512, for AVX2+FMA
// and for baseline x86-64 (the compiler vectorizes the 32-wide loops to
// each width); the entry point picks by the CPU.
static inline __attribute__((always_inline)) void winograd4_pack(const float *w, ptrdiff_t o, ptrdiff_t c,
                                                                 ptrdiff_t nb0, ptrdiff_t nb1, float *out,
                                                                 float *scratch) {
    const ptrdiff_t plane = nest_f32_packed_floats(o, c);
    for (ptrdiff_t nb = nb0; nb < nb1; nb++) {
        // scratch[(tap·c + ch)·32 + j] = w[nb·32 + j][ch][tap] (OIHW), zero past o.
        for (ptrdiff_t j = 0; j < F32_NR; j++) {
            ptrdiff_t oc = nb * F32_NR + j;
            if (oc < o) {
                const float *src = w + oc * 9 * c;
                for (ptrdiff_t ch = 0; ch < c; ch++)
                    for (int tap = 0; tap < 9; tap++) scratch[(tap * c + ch) * F32_NR + j] = src[ch * 9 + tap];
            } else {
                for (ptrdiff_t e = 0; e < 9 * c; e++) scratch[e * F32_NR + j] = 0;
            }
        }
        float *panel = out + nb * c * F32_NR;
        for (ptrdiff_t ch = 0; ch < c; ch++) {
            const float *g[9];
            for (int tap = 0; tap < 9; tap++) g[tap] = scratch + (tap * c + ch) * F32_NR;
            float t[6][3][F32_NR];
            // G·g down each kernel column kx ...
            for (int kx = 0; kx < 3; kx++)
                for (int j = 0; j < F32_NR; j++) {
                    float a = g[kx][j], b = g[3 + kx][j], d = g[6 + kx][j], s = a + d;
                    t[0][kx][j] = 0.25f * a; t[1][kx][j] = -(s + b) / 6; t[2][kx][j] = -(s - b) / 6;
                    t[3][kx][j] = a / 24 + b / 12 + d / 6; t[4][kx][j] = a / 24 - b / 12 + d / 6; t[5][kx][j] = d;
                }
            // ... then (G·g)·Gᵀ along each row i, into planes i·6 + 0..5.
            for (int i = 0; i < 6; i++) {
                float *u = panel + (i * 6) * plane + ch * F32_NR;
                for (int j = 0; j < F32_NR; j++) {
                    float a = t[i][0][j], b = t[i][1][j], d = t[i][2][j], s = a + d;
                    u[j] = 0.25f * a; u[plane + j] = -(s + b) / 6; u[2 * plane + j] = -(s - b) / 6;
                    u[3 * plane + j] = a / 24 + b / 12 + d / 6; u[4 * plane + j] = a / 24 - b / 12 + d / 6;
                    u[5 * plane + j] = d;
                }
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) static void winograd4_pack_avx512(const float *w, ptrdiff_t o, ptrdiff_t c,
                                                                        ptrdiff_t nb0, ptrdiff_t nb1, float *out,
                                                                        float *scratch) {
    winograd4_pack(w, o, c, nb0, nb1, out, scratch);
}
__attribute__((target("avx2,fma"))) static void winograd4_pack_avx2(const float *w, ptrdiff_t o, ptrdiff_t c,
                                                                    ptrdiff_t nb0, ptrdiff_t nb1, float *out,
                                                                    float *scratch) {
    winograd4_pack(w, o, c, nb0, nb1, out, scratch);
}
#endif

void nest_winograd4_pack_weights(const float *w, ptrdiff_t o, ptrdiff_t c, ptrdiff_t nb0, ptrdiff_t nb1,
                                 float *out, float *scratch) {
#if defined(__x86_64__)
    if (nest_kernels_avx512()) { winograd4_pack_avx512(w, o, c, nb0, nb1, out, scratch); return; }
    if (nest_kernels_avx2()) { winograd4_pack_avx2(w, o, c, nb0, nb1, out, scratch); return; }
#endif
    winograd4_pack(w, o, c, nb0, nb1, out, scratch);
}
