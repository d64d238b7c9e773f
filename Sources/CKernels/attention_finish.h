// The last step every attention block kernel shares: each query's output row is
// its accumulated Oᵀ column divided by its softmax sum, and its log-sum-exp is
// the running max plus log(sum). Scores were scaled inside Qᵀ, so the max is
// already in softmax units. Plain C: the transposed write-out is memory-bound.
#ifndef NEST_ATTENTION_FINISH_H
#define NEST_ATTENTION_FINISH_H
#include <math.h>
#include <stddef.h>

// ot: dv rows of `qb` floats (Oᵀ); lsum, lmax: one per query; lse may be NULL.
static inline void nest_attention_finish_block(const float *ot, ptrdiff_t qb, const float *lsum, const float *lmax,
                                               ptrdiff_t rows, ptrdiff_t dv, float *out, ptrdiff_t outStride,
                                               float *lse) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        const float inv = lsum[i] > 0 ? 1 / lsum[i] : 0;
        float *o = out + i * outStride;
        for (ptrdiff_t c = 0; c < dv; c++) o[c] = ot[c * qb + i] * inv;
        if (lse) lse[i] = lmax[i] + logf(lsum[i]);
    }
}

#endif
