/*
 * pl_complete: tokenize the prompt, evaluate it as one batch, then sample and
 * evaluate one token at a time, streaming each token's text to a callback.
 * Text bytes are handed out only as complete UTF-8 characters, so a callback
 * never sees half a character (byte-fallback tokens can split one).
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>

pl_complete_params pl_complete_default_params(void) {
    pl_complete_params p = {0};
    p.n_predict = 128;
    p.add_bos = -1;
    p.sampling = pl_sampler_default_params();
    return p;
}

/* Length of the longest prefix of buf[0..n) that ends on a UTF-8 character
 * boundary (an incomplete trailing sequence is held back). */
static size_t utf8_complete_prefix(const char *buf, size_t n) {
    size_t i = n, back = 0;
    while (i > 0 && back < 4) {
        unsigned char b = (unsigned char)buf[i - 1];
        if ((b & 0xC0) != 0x80) { /* lead byte or ASCII */
            size_t need = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
            return back + 1 >= need ? n : i - 1;
        }
        i--;
        back++;
    }
    return n; /* not valid UTF-8 anyway: pass it through */
}

pl_status pl_complete(pl_ctx *ctx, const pl_complete_params *params, pl_on_token on_token, void *user,
                      pl_timings *timings) {
    if (!ctx || !params) return pl_fail(PL_ERR_INVALID_ARG, "pl_complete: ctx and params are required");
    const pl_model *m = ctx->model;
    pl_timings tm = {0};
    pl_status st = PL_OK;
    pl_token *prompt = NULL;
    pl_sampler *smp = NULL;
    int n_prompt = 0;
    atomic_store(&ctx->cancel, 0);
    if (params->prompt_tokens) {
        n_prompt = params->n_prompt_tokens;
        prompt = malloc(sizeof(pl_token) * (size_t)(n_prompt > 0 ? n_prompt : 1));
        if (!prompt) return pl_fail(PL_ERR_NOMEM, "pl_complete: out of memory");
        memcpy(prompt, params->prompt_tokens, sizeof(pl_token) * (size_t)n_prompt);
    } else {
        const char *text = params->prompt ? params->prompt : "";
        const size_t len = strlen(text);
        const int add_bos = params->add_bos < 0 ? pl_model_add_bos(m) : params->add_bos;
        if (len > (size_t)1 << 28) return pl_fail(PL_ERR_INVALID_ARG, "pl_complete: prompt of %zu bytes is too long", len);
        /* first guess; the tokenizer says how many it needs when more (a byte
         * can become several tokens, e.g. byte-fallback of the space prefix) */
        int cap = (int)len + 16;
        for (int attempt = 0; attempt < 2; attempt++) {
            prompt = malloc(sizeof(pl_token) * (size_t)cap);
            if (!prompt) return pl_fail(PL_ERR_NOMEM, "pl_complete: out of memory");
            st = tok_encode(m->tok, text, len, add_bos, params->parse_special != 0, prompt, cap, &n_prompt);
            if (st != PL_ERR_INVALID_ARG || n_prompt <= cap) break;
            free(prompt);
            prompt = NULL;
            cap = n_prompt;
        }
        if (st) goto done;
    }
    if (n_prompt <= 0 && ctx->pos == 0) {
        st = pl_fail(PL_ERR_INVALID_ARG, "pl_complete: empty prompt and empty context: nothing to continue from");
        goto done;
    }
    if ((st = pl_sampler_new(&params->sampling, &smp))) goto done;
    for (int i = 0; i < n_prompt; i++) pl_sampler_accept(smp, prompt[i]);

    double t0 = pl_time_ms();
    if (n_prompt > 0 && (st = model_forward(ctx, prompt, n_prompt, n_prompt - 1))) goto done;
    tm.n_prompt = n_prompt;
    tm.prompt_ms = pl_time_ms() - t0;

    char pend[64];
    size_t n_pend = 0;
    t0 = pl_time_ms();
    for (int i = 0; params->n_predict < 0 || i < params->n_predict; i++) {
        if (atomic_load(&ctx->cancel)) {
            st = pl_fail(PL_ERR_CANCELLED, "generation cancelled");
            break;
        }
        const float *logits = pl_ctx_logits(ctx, -1);
        if (!logits) {
            st = pl_fail(PL_ERR_INVALID_ARG, "pl_complete: no logits to sample from");
            break;
        }
        pl_token tok = pl_sampler_sample(smp, logits, m->hp.n_vocab);
        if (tok < 0) {
            st = pl_fail(PL_ERR_NOMEM, "pl_complete: sampler out of memory");
            break;
        }
        if (!params->ignore_eos && tok_is_eog(m->tok, tok)) break;
        pl_sampler_accept(smp, tok);
        tm.n_gen++;
        char piece[64];
        int np = tok_piece(m->tok, tok, piece, sizeof piece);
        if (np < 0 || np > (int)sizeof piece) np = 0;
        if (n_pend + (size_t)np > sizeof pend) n_pend = 0; /* never happens with real vocabularies */
        memcpy(pend + n_pend, piece, (size_t)np);
        n_pend += (size_t)np;
        size_t ready = utf8_complete_prefix(pend, n_pend);
        int stop = on_token ? on_token(user, tok, pend, ready) : 0;
        memmove(pend, pend + ready, n_pend - ready);
        n_pend -= ready;
        if (stop) break;
        if (ctx->pos >= ctx->n_ctx) break; /* context full: stop cleanly */
        if (params->n_predict >= 0 && i + 1 >= params->n_predict) break;
        if ((st = model_forward(ctx, &tok, 1, 0))) break;
    }
    tm.gen_ms = pl_time_ms() - t0;
done:
    if (timings) *timings = tm;
    pl_sampler_free(smp);
    free(prompt);
    return st;
}
