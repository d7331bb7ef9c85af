/*
 * Moving cached positions, for the chat's "shift" overflow policy: n K/V rows
 * of every layer from position `from` to `to`, the keys re-roped by
 * d = to - from so that they read as if evaluated at their new positions.
 * Rotations compose, R(p + d) = R(d) R(p), and R(d) comes from the context's
 * own rope table at |d| (sine negated for d < 0), so a moved key equals the
 * one the forward pass stores at the new position up to the cache type's
 * rounding (one more f16 or q8_0 conversion). Values carry no position: their
 * rows are copied. Like model_ext.c this file reads model internals
 * (model.h): the cache is (L, P) rows of kv_row_bytes of the context's KV type.
 */
#include "../model/model.h"

#include "chat_impl.h"

#include <stdlib.h>
#include <string.h>

pl_status chat_ctx_shift(pl_ctx *c, int from, int to, int n) {
    if (!c || from < 0 || to < 0 || n < 0 || from + n > c->pos || to + n > c->n_ctx)
        return pl_fail(PL_ERR_INVALID_ARG, "chat: cannot move %d cached positions from %d to %d (%d cached, context %d)", n,
                       from, to, c ? c->pos : 0, c ? c->n_ctx : 0);
    if (c->gpu) return pl_fail(PL_ERR_UNSUPPORTED, "chat: the GPU holds its own KV cache; positions are not moved there");
    const int d = to - from, ad = d < 0 ? -d : d;
    if (d == 0 || n == 0) return PL_OK;
    if (ad >= c->n_ctx) return pl_fail(PL_ERR_INVALID_ARG, "chat: a move by %d passes the rope table", d);
    const model_hparams *hp = &c->model->hp;
    const int G = hp->n_head_kv, D = hp->head_dim, GD = G * D, half = hp->n_rot / 2;
    const bool neox = c->model->arch->rope == ARCH_ROPE_NEOX;
    const quant_traits *tr = quant_get(c->kv_qt);
    if (!tr || !tr->to_float) return pl_fail(PL_ERR_UNSUPPORTED, "chat: KV cache type %u cannot be read back", c->kv_qt);
    float *f = malloc(sizeof *f * (size_t)GD);
    if (!f) return pl_fail(PL_ERR_NOMEM, "chat: out of memory");
    const float *cs = c->rope_cos + (size_t)ad * half, *sn = c->rope_sin + (size_t)ad * half;
    const float sgn = d < 0 ? -1.0f : 1.0f;
    const size_t row = c->kv_row_bytes, layer = (size_t)c->n_ctx * row;
    for (int il = 0; il < hp->n_layer; il++) {
        uint8_t *kc = (uint8_t *)c->k_cache + il * layer, *vc = (uint8_t *)c->v_cache + il * layer;
        /* towards lower positions front to back, towards higher back to front:
         * a row is read before its place is written */
        for (int j = 0; j < n; j++) {
            const int i = d < 0 ? j : n - 1 - j;
            const size_t src = (size_t)(from + i) * row, dst = (size_t)(to + i) * row;
            tr->to_float(kc + src, f, GD);
            for (int g = 0; g < G; g++) {
                float *x = f + (size_t)g * D;
                for (int k = 0; k < half; k++) {
                    const int i0 = neox ? k : 2 * k, i1 = neox ? k + half : 2 * k + 1;
                    const float x0 = x[i0], x1 = x[i1], s = sgn * sn[k];
                    x[i0] = x0 * cs[k] - x1 * s;
                    x[i1] = x0 * s + x1 * cs[k];
                }
            }
            kern_kv_store(c->kv_qt, kc + dst, f, GD);
            memmove(vc + dst, vc + src, row);
        }
    }
    free(f);
    c->n_logits_rows = 0;
    return PL_OK;
}
