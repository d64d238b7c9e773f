#ifndef NEST_CKERNELS_H
#define NEST_CKERNELS_H
/* Hot loops that need instructions Swift cannot reach from a baseline
 * x86-64 build (AVX-512, or AVX2 with FMA). Each entry point checks nothing:
 * callers ask nest_kernels_avx512() / nest_kernels_avx2() once and pick these
 * or their Swift versions. */
#include <stddef.h>

/* A spin-wait hint (x86 PAUSE): lets a spinning thread yield the core's
 * pipeline to its sibling and saves power; a no-op elsewhere. */
static inline void nest_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* 1 when the CPU (and OS) support AVX-512F, else 0. */
int nest_kernels_avx512(void);

/* 1 when the CPU supports AVX2 and FMA, else 0. */
int nest_kernels_avx2(void);

/* x[i] = exp(x[i] - shift) for i < n; returns the sum of the results.
 * Same approximation and edge cases as the engine's Swift vexp. */
float nest_exp_shift_sum(float *x, ptrdiff_t n, float shift);

/* Largest of n floats (-inf when n == 0). */
float nest_row_max(const float *x, ptrdiff_t n);

/* y[i] = x[i] * sigmoid(x[i]). */
void nest_silu(const float *x, float *y, ptrdiff_t n);

/* GEGLU over rows of [value | gate] (each half w wide): out = value * gelu(gate),
 * exact (erf) GELU. The backward writes d[value | gate] from dy. */
void nest_geglu_forward(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w);
void nest_geglu_backward(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w);

/* y[j] = silu(x[j] * scale[j] + shift[j]) for j < n (group norm's affine step fused with SiLU). */
void nest_affine_silu(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n);

/* One AdamW step over n elements (optim_avx512.c), the arithmetic of
 * AdamW.update in the same order: m = b1·m + (1−b1)·g, v = b2·v + (1−b2)·g·g,
 * w = w·decay − stepSize·m / (√v / sqrtBc2 + eps). AVX-512 only. */
void nest_adamw(float *w, float *m, float *v, const float *g, ptrdiff_t n, float beta1, float beta2,
                float decay, float stepSize, float sqrtBc2, float eps);
/* Σ x[i]² in double. AVX-512 only. */
double nest_sum_squares(const float *x, ptrdiff_t n);

/* The same six kernels for CPUs with AVX2 and FMA but no AVX-512
 * (kernels_avx2.c; callers ask nest_kernels_avx2()). */
float nest_exp_shift_sum_avx2(float *x, ptrdiff_t n, float shift);
float nest_row_max_avx2(const float *x, ptrdiff_t n);
void nest_silu_avx2(const float *x, float *y, ptrdiff_t n);
void nest_geglu_forward_avx2(const float *x, float *out, ptrdiff_t rows, ptrdiff_t w);
void nest_geglu_backward_avx2(const float *x, const float *dy, float *dx, ptrdiff_t rows, ptrdiff_t w);
void nest_affine_silu_avx2(const float *x, const float *scale, const float *shift, float *y, ptrdiff_t n);

/* IEEE binary16 <-> binary32 for n values (round to nearest even when
 * narrowing). Dispatches by itself: AVX-512F, else F16C, else scalar. */
void nest_f16_to_f32(const unsigned short *src, float *dst, ptrdiff_t n);
void nest_f32_to_f16(const float *src, unsigned short *dst, ptrdiff_t n);

/* Non-causal softmax(scale·q·kᵀ)·v for one block of at most
 * nest_attention_block_queries() queries of one head, over nk keys; rows are
 * strided (heads side by side). Writes rows × dv outputs and, when lse is not
 * NULL, each query's log-sum-exp of its scaled scores. scratch: 64-byte
 * aligned, nest_attention_scratch_floats(d, dv) floats. AVX-512 only. */
ptrdiff_t nest_attention_block_queries(void);
ptrdiff_t nest_attention_scratch_floats(ptrdiff_t d, ptrdiff_t dv);
void nest_attention_block(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                          const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                          float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                          float scale, float *scratch);
/* The same for AVX2 and FMA (attention_avx2.c): blocks of at most
 * nest_attention_block_queries_avx2() queries, 32-byte aligned scratch of
 * nest_attention_scratch_floats_avx2(d, dv) floats. */
ptrdiff_t nest_attention_block_queries_avx2(void);
ptrdiff_t nest_attention_scratch_floats_avx2(ptrdiff_t d, ptrdiff_t dv);
void nest_attention_block_avx2(const float *q, ptrdiff_t qStride, const float *k, ptrdiff_t kStride,
                               const float *v, ptrdiff_t vStride, float *out, ptrdiff_t outStride,
                               float *lse, ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv,
                               float scale, float *scratch);

/* bfloat16 GEMM with float32 sums (gemm_bf16.c). nest_kernels_bf16(): 1 when
 * the CPU has AVX512F, AVX512BW and AVX512_BF16. Weights W[N][K] (row stride
 * ldw) are packed once into nest_bf16_packed_words(n, k) words (64-byte
 * aligned) by nest_bf16_pack_weights; nest_bf16_gemm then computes
 * C[m × columns of blocks nb0..<nb1] (+)= A·Wᵀ, a block being
 * nest_bf16_column_block() columns (each thread keeps its own packing buffer).
 * Rounding: to nearest even. The conversions
 * and packing work everywhere; nest_bf16_gemm only where the CPU has BF16. */
int nest_kernels_bf16(void);
ptrdiff_t nest_bf16_packed_words(ptrdiff_t n, ptrdiff_t k);
ptrdiff_t nest_bf16_column_block(void);
void nest_f32_to_bf16(const float *src, unsigned short *dst, ptrdiff_t n);
void nest_bf16_to_f32(const unsigned short *src, float *dst, ptrdiff_t n);
void nest_bf16_pack_weights(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, unsigned int *out);
void nest_bf16_unpack_weights(const unsigned int *packed, ptrdiff_t n, ptrdiff_t k, float *w);
void nest_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                    const unsigned int *packed, ptrdiff_t nb0, ptrdiff_t nb1,
                    float *c, ptrdiff_t ldc, int accumulate);
/* C[m × n] = alpha·op(A)·op(B) + beta·C (row-major, like cblas_sgemm) with
 * both operands float32 in memory, rounded to bfloat16 as they are packed,
 * sums in float32; single-threaded; needs nest_kernels_bf16(). */
/* Multiply-adds per second of VDPBF16PS over float32 FMA on this core
 * (measured, ~3 ms); 0 without AVX512_BF16. */
double nest_bf16_fma_rate_ratio(void);
void nest_bf16_gemm_general(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                            const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                            float *c, ptrdiff_t ldc);

/* float32 C[m × n] = A[m × k] (rows at stride lda) · Wᵀ with W pre-packed by
 * nest_f32_pack_panels into nest_f32_packed_floats(n, k) floats (64-byte
 * aligned): 32-column panels [n/32][k][32], zero-padded (gemm_f32.c). */
ptrdiff_t nest_f32_packed_floats(ptrdiff_t n, ptrdiff_t k);
void nest_f32_pack_panels(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, float *out);
void nest_f32_gemm_packed(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                          const float *packed, float *c, ptrdiff_t ldc);
/* C[m × the columns of panels nb0..<nb1] (+)= A·Wᵀ on the same packed panels,
 * rows in L2-sized blocks (linear layers); AVX-512 only (portable C elsewhere). */
void nest_f32_gemm_packed_blocked(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                                  const float *packed, ptrdiff_t nb0, ptrdiff_t nb1, float *c, ptrdiff_t ldc,
                                  int accumulate);
/* The same product for CPUs with AVX2 and FMA (nest_kernels_avx2()), on the
 * same packed panels (gemm_f32_avx2.c). */
void nest_f32_gemm_packed_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                               const float *packed, float *c, ptrdiff_t ldc);
/* Winograd F(4×4, 3×3) weights U = G·g·Gᵀ of w [o][c][3][3] (OIHW), panels nb0..<nb1
 * of 36 packed planes (each nest_f32_packed_floats(o, c) floats; padding
 * columns zero); scratch: 9·c·32 floats. Built for AVX-512, AVX2 and baseline
 * x86-64; picks by itself. */
void nest_winograd4_pack_weights(const float *w, ptrdiff_t o, ptrdiff_t c, ptrdiff_t nb0, ptrdiff_t nb1,
                                 float *out, float *scratch);

/* nest_attention_block with bfloat16 products (attention_bf16.c; needs
 * nest_kernels_bf16()): keys and values are packed once per head, keys as
 * [nk][ceil(d/2)] words, values as [ceil(nk/2)][dv] words pairing keys 2j
 * and 2j+1; scratch: 64-byte aligned, nest_attention_bf16_scratch_floats(d, dv). */
ptrdiff_t nest_attention_bf16_scratch_floats(ptrdiff_t d, ptrdiff_t dv);
void nest_attention_pack_keys_bf16(const float *k, ptrdiff_t kStride, ptrdiff_t nk, ptrdiff_t d, unsigned int *out);
void nest_attention_pack_values_bf16(const float *v, ptrdiff_t vStride, ptrdiff_t nk, ptrdiff_t dv, unsigned int *out);
void nest_attention_block_bf16(const float *q, ptrdiff_t qStride, const unsigned int *k,
                               const unsigned int *v, float *out, ptrdiff_t outStride, float *lse,
                               ptrdiff_t rows, ptrdiff_t nk, ptrdiff_t d, ptrdiff_t dv, float scale,
                               float *scratch);

#endif
