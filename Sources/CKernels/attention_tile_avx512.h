// What the float32 and bfloat16 attention kernels' tiles share: 8 rows of 48
// queries (3 vectors each) accumulated in registers. Only the products in
// between differ (FMA on floats, dot products on bfloat16 pairs).
#ifndef NEST_ATTENTION_TILE_AVX512_H
#define NEST_ATTENTION_TILE_AVX512_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <stddef.h>

#define NEST_TILE_INLINE __attribute__((target("avx512f,fma"), always_inline)) static inline

NEST_TILE_INLINE void nest_tile_zero(__m512 acc[8][3]) {
    for (int j = 0; j < 8; j++)
        for (int v = 0; v < 3; v++) acc[j][v] = _mm512_setzero_ps();
}

// Stores the 8 score rows (`stride` floats apart) and folds the first `valid`
// of them into the running column max `mx`.
NEST_TILE_INLINE void nest_tile_store_scores(__m512 acc[8][3], ptrdiff_t valid, float *st, ptrdiff_t stride,
                                             __m512 mx[3]) {
    for (int j = 0; j < 8; j++) {
        const __mmask16 live = j < valid ? (__mmask16)0xFFFF : 0;
        for (int v = 0; v < 3; v++) {
            _mm512_store_ps(st + j * stride + 16 * v, acc[j][v]);
            mx[v] = _mm512_mask_max_ps(mx[v], live, mx[v], acc[j][v]);
        }
    }
}

// The first `nc` output rows (`stride` floats apart) rescaled by `corr`, the rest zero.
NEST_TILE_INLINE void nest_tile_load_rescaled(__m512 acc[8][3], const float *ot, ptrdiff_t stride, int nc,
                                              const __m512 corr[3]) {
    for (int c = 0; c < 8; c++)
        for (int w = 0; w < 3; w++)
            acc[c][w] = c < nc ? _mm512_mul_ps(_mm512_load_ps(ot + c * stride + 16 * w), corr[w]) : _mm512_setzero_ps();
}

// Stores the first `nc` output rows back.
NEST_TILE_INLINE void nest_tile_store_rows(__m512 acc[8][3], float *ot, ptrdiff_t stride, int nc) {
    for (int c = 0; c < nc; c++)
        for (int w = 0; w < 3; w++) _mm512_store_ps(ot + c * stride + 16 * w, acc[c][w]);
}

#endif
#endif
