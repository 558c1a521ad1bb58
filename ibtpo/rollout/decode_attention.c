/* Single-query attention over the plain decode loop's KV cache (ibtpo/rollout/decode_kernel.py).
 *
 * For every (row b, head h), with n = the filled columns of the cache:
 *
 *     s_j   = scale * <q[b,h], K[b,h,j]>            (j < n; s_j = -FLT_MAX where mask[b,j] == 0)
 *     p_j   = exp(s_j - max_j s_j) / sum_j exp(s_j - max_j s_j)
 *     out[b,h] = sum_j p_j V[b,h,j]
 *
 * Layouts (float32, C-contiguous): q (rows, heads, dim); kt (cache rows, heads, dim, width): the
 * keys transposed, so the scores of one (b, h) are dim AXPYs over contiguous columns; v (cache rows,
 * heads, width, dim), so the output is n AXPYs over contiguous rows; mask (cache rows, mask_stride)
 * bytes, or NULL for "attend to every filled column"; out (rows, heads, dim). rowmap (rows): the
 * cache row of batch row b (finished rows leave the batch, their cache rows stay), NULL = identity. Both inner loops vectorise
 * without reassociation; K and V are each read once per call (the CPU's matmul path reads them with
 * one small GEMM per (b, h), which costs ~2x on the tiny model), and the next (b, h)'s block is
 * prefetched while this one is computed (the cache does not fit the CPU caches, and the hardware
 * prefetcher does not cross to the next block: measured ~1.5-2x faster). Compiled by decode_kernel.py with
 * -ffast-math for the vectorised expf (so no infinities here: masked scores are -FLT_MAX).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

void decode_attention(const float *restrict q, const float *restrict kt, const float *restrict v,
                      const uint8_t *restrict mask, const int64_t *restrict rowmap, float *restrict out,
                      int64_t rows, int64_t heads, int64_t dim, int64_t width, int64_t n,
                      int64_t mask_stride, float scale) {
    float s[n];
    for (int64_t b = 0; b < rows; b++) {
        const int64_t c = rowmap ? rowmap[b] : b;
        const uint8_t *restrict mb = mask ? mask + c * mask_stride : 0;
        for (int64_t h = 0; h < heads; h++) {
            const int64_t bh = b * heads + h, ch = c * heads + h;
            const float *restrict qq = q + bh * dim;
            const float *restrict kk = kt + ch * dim * width;
            const float *restrict vv = v + ch * width * dim;
            float *restrict oo = out + bh * dim;
            /* the next (row, head)'s cache block, fetched while this one is computed */
            const int64_t nb = bh + 1 < rows * heads ? bh + 1 : bh;
            const int64_t nc = (rowmap ? rowmap[nb / heads] : nb / heads) * heads + nb % heads;
            const char *nk = (const char *)(kt + nc * dim * width), *nv = (const char *)(v + nc * width * dim);
            for (int64_t j = 0; j < n; j++) s[j] = 0.f;
            for (int64_t d = 0; d < dim; d++) {
                const float qd = qq[d] * scale;
                const float *restrict kd = kk + d * width;
                for (int64_t l = 0; l < n * 4; l += 64) __builtin_prefetch(nk + d * width * 4 + l, 0, 3);
                for (int64_t j = 0; j < n; j++) s[j] += qd * kd[j];
            }
            if (mb)
                for (int64_t j = 0; j < n; j++) s[j] = mb[j] ? s[j] : -FLT_MAX;
            float m = -FLT_MAX;
            for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
            float z = 0.f;
            for (int64_t j = 0; j < n; j++) {
                s[j] = expf(s[j] - m);
                z += s[j];
            }
            const float inv = 1.f / z;
            for (int64_t d = 0; d < dim; d++) oo[d] = 0.f;
            for (int64_t j = 0; j < n; j++) {
                __builtin_prefetch(nv + j * dim * 4, 0, 3);
                __builtin_prefetch(nv + j * dim * 4 + 64, 0, 3);
                const float p = s[j] * inv;
                const float *restrict vj = vv + j * dim;
                for (int64_t d = 0; d < dim; d++) oo[d] += p * vj[d];
            }
        }
    }
}
