/* Single-query attention over the plain decode loop's KV cache (ibtpo/rollout/decode/attention_kernel.py).
 *
 * The cache holds each prefix's keys / values once (the prompt part, shared by the `group` samples of
 * that prefix) and each sample's own generated keys / values (the response part). For every batch
 * row b (cache row c = rowmap[b], prefix g = c / group) and head h, over the wp prompt columns j
 * (s_j = -FLT_MAX where pmask[g, j] == 0: left padding) and the nr filled response columns:
 *
 *     s_j   = scale * <q[b,h], K_j>
 *     p_j   = exp(s_j - max_j s_j) / sum_j exp(s_j - max_j s_j)
 *     out[b,h] = sum_j p_j V_j
 *
 * Layouts (float32, C-contiguous): q, out (rows, heads, dim); kp (prefixes, heads, dim, wp) and kr
 * (cache rows, heads, dim, wr): keys transposed, so the scores of one (b, h) are dim AXPYs over
 * contiguous columns; vp (prefixes, heads, wp, dim) and vr (cache rows, heads, wr, dim), so the
 * output is AXPYs over contiguous rows; pmask (prefixes, pmask_stride) bytes or NULL (no padding);
 * rowmap (rows) or NULL (identity): finished rows leave the batch, their cache rows stay; s: the
 * caller's scratch of wp + nr floats for the scores (one per calling thread; no array on the stack).
 *
 * Each key and value is read once per call, and a prefix's prompt block once for all its samples
 * while it sits in the CPU cache (rows of one prefix are adjacent); the next (b, h)'s response
 * block is prefetched while this one is computed (the cache does not fit the CPU caches, and the
 * hardware prefetcher does not cross to the next block: measured ~1.5-2x faster). Both inner loops
 * vectorise without reassociation. Compiled by attention_kernel.py with IEEE semantics (no
 * -ffast-math): the softmax's max, exp and sum are scalar loops in index order. Masked scores are
 * -FLT_MAX (exp gives 0 against the finite max of the unmasked ones).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

static void scores(const float *restrict qq, const float *restrict kk, int64_t dim, int64_t width, int64_t n,
                   float scale, float *restrict s, const char *restrict next) {
    for (int64_t j = 0; j < n; j++) s[j] = 0.f;
    for (int64_t d = 0; d < dim; d++) {
        const float qd = qq[d] * scale;
        const float *restrict kd = kk + d * width;
        if (next)
            for (int64_t l = 0; l < n * 4; l += 64) __builtin_prefetch(next + d * width * 4 + l, 0, 3);
        for (int64_t j = 0; j < n; j++) s[j] += qd * kd[j];
    }
}

static void weighted_sum(const float *restrict s, const float *restrict vv, int64_t dim, int64_t n, float inv,
                         float *restrict oo, const char *restrict next) {
    for (int64_t j = 0; j < n; j++) {
        if (next) {
            __builtin_prefetch(next + j * dim * 4, 0, 3);
            __builtin_prefetch(next + j * dim * 4 + 64, 0, 3);
        }
        const float p = s[j] * inv;
        const float *restrict vj = vv + j * dim;
        for (int64_t d = 0; d < dim; d++) oo[d] += p * vj[d];
    }
}

void decode_attention(const float *restrict q, const float *restrict kp, const float *restrict vp,
                      const uint8_t *restrict pmask, const float *restrict kr, const float *restrict vr,
                      const int64_t *restrict rowmap, float *restrict out, float *restrict s, int64_t rows,
                      int64_t heads, int64_t dim, int64_t wp, int64_t wr, int64_t nr, int64_t group,
                      int64_t pmask_stride, float scale) {
    for (int64_t b = 0; b < rows; b++) {
        const int64_t c = rowmap ? rowmap[b] : b, g = c / group;
        const uint8_t *restrict mb = pmask ? pmask + g * pmask_stride : 0;
        for (int64_t h = 0; h < heads; h++) {
            const int64_t bh = b * heads + h, ch = c * heads + h, gh = g * heads + h;
            /* the next (row, head)'s response block, fetched while this one is computed */
            const int64_t nb = bh + 1 < rows * heads ? bh + 1 : bh;
            const int64_t nch = (rowmap ? rowmap[nb / heads] : nb / heads) * heads + nb % heads;
            const float *restrict qq = q + bh * dim;
            float *restrict oo = out + bh * dim;
            scores(qq, kp + gh * dim * wp, dim, wp, wp, scale, s, 0);
            scores(qq, kr + ch * dim * wr, dim, wr, nr, scale, s + wp, (const char *)(kr + nch * dim * wr));
            if (mb)
                for (int64_t j = 0; j < wp; j++) s[j] = mb[j] ? s[j] : -FLT_MAX;
            float m = -FLT_MAX;
            for (int64_t j = 0; j < wp + nr; j++) m = s[j] > m ? s[j] : m;
            float z = 0.f;
            for (int64_t j = 0; j < wp + nr; j++) {
                s[j] = expf(s[j] - m);
                z += s[j];
            }
            const float inv = 1.f / z;
            for (int64_t d = 0; d < dim; d++) oo[d] = 0.f;
            weighted_sum(s, vp + gh * wp * dim, dim, wp, inv, oo, 0);
            weighted_sum(s + wp, vr + ch * wr * dim, dim, nr, inv, oo, (const char *)(vr + nch * wr * dim));
        }
    }
}
