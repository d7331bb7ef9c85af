/*
 * pl_chat: a conversation on one pl_ctx that reuses the KV cache between
 * replies. The chat mirrors the cache: toks[0, n_tok) are the cached tokens
 * and text[0, text.n) the text they were made from, with "cuts" marking where
 * a token boundary is also an exact text boundary (the end of each separately
 * tokenized unit: a rendered message, the generation prompt, each generated
 * token). A new prompt keeps the cached tokens up to the last cut inside its
 * common text prefix with the cache and tokenizes only the rest, message by
 * message — the way llama.cpp's interactive chat tokenizes only each new turn.
 *
 * Invariant between calls: n_tok == pl_ctx_pos(ctx), cuts ascend in both tok
 * and off, the last cut (if any) is (n_tok, text.n).
 *
 * Overflow: the oldest turns after the system messages are left out until
 * the prompt and the reply's reserve fit. With "shift" the cached tokens of
 * the turns that stay are then moved down to follow the system part (keys
 * re-roped, kv_shift.c) and the mirror with them, so only new text is
 * evaluated; whatever cannot be matched that way is evaluated again as with
 * drop-oldest.
 */
#include "chat_impl.h"

#include <stdlib.h>
#include <string.h>

/* A prompt ready to place: the full text, where its tokenization units end,
 * and (after planning) what the cache keeps and the new tokens. */
typedef struct chat_prompt {
    chat_buf text;
    size_t *ends;       /* ascending unit end offsets; the last is text.n */
    int n_ends, cap_ends;
    int keep_cut;       /* cuts of the cache kept */
    int keep_tok;       /* cached tokens kept */
    size_t keep_off;    /* text they cover */
    pl_token *toks;     /* new tokens */
    int n_toks, cap_toks;
    chat_cut *cuts;     /* cuts inside the new tokens (absolute tok/off) */
    int n_cuts, cap_cuts;
} chat_prompt;

pl_chat_params pl_chat_default_params(void) {
    pl_chat_params p = {0};
    return p;
}

pl_chat_gen_params pl_chat_default_gen_params(void) {
    pl_chat_gen_params g = {0};
    g.n_predict = 256;
    g.sampling = pl_sampler_default_params();
    return g;
}

/* Grow an array to hold `need` elements. */
static pl_status chat_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return PL_OK;
    int c = *cap ? *cap : 64;
    while (c < need) {
        if (c > (1 << 29)) return pl_fail(PL_ERR_NOMEM, "chat: too many elements");
        c *= 2;
    }
    void *np = realloc(*p, (size_t)c * elem);
    if (!np) return pl_fail(PL_ERR_NOMEM, "chat: out of memory");
    *p = np;
    *cap = c;
    return PL_OK;
}

static pl_status chat_push_cut(chat_cut **cuts, int *n, int *cap, int tok, size_t off) {
    pl_status st = chat_grow((void **)cuts, cap, *n + 1, sizeof **cuts);
    if (st) return st;
    (*cuts)[(*n)++] = (chat_cut){tok, off};
    return PL_OK;
}

pl_status pl_chat_new(pl_ctx *ctx, const pl_chat_params *params, pl_chat **out) {
    if (!ctx || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_new: ctx and out are required");
    *out = NULL;
    pl_chat_params p = params ? *params : pl_chat_default_params();
    if (p.overflow != PL_CHAT_OVERFLOW_REFUSE && p.overflow != PL_CHAT_OVERFLOW_DROP_OLDEST &&
        p.overflow != PL_CHAT_OVERFLOW_SHIFT)
        return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_new: unknown overflow policy %d", (int)p.overflow);
    if (p.n_reserve < 0) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_new: negative n_reserve");
    const pl_model *m = pl_ctx_model(ctx);
    const char *name = p.template_name ? p.template_name : pl_chat_template_for_model(m);
    const chat_tmpl *t = chat_tmpl_find(name);
    if (!t) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_new: chat template '%s' is unknown", name);
    pl_chat *c = calloc(1, sizeof *c);
    if (!c) return pl_fail(PL_ERR_NOMEM, "pl_chat_new: out of memory");
    c->ctx = ctx;
    c->model = m;
    c->tmpl = t;
    c->overflow = p.overflow;
    const int n_ctx = pl_ctx_n_ctx(ctx);
    c->n_reserve = p.n_reserve ? p.n_reserve : (n_ctx / 4 < 128 ? n_ctx / 4 : 128);
    pl_ctx_truncate(ctx, 0); /* the mirror starts empty, so must the cache */
    *out = c;
    return PL_OK;
}

void pl_chat_free(pl_chat *c) {
    if (!c) return;
    free(c->toks);
    chat_buf_free(&c->text);
    free(c->cuts);
    free(c);
}

const char *pl_chat_template(const pl_chat *c) { return c ? chat_tmpl_name(c->tmpl) : NULL; }
int pl_chat_n_cached(const pl_chat *c) { return c ? c->n_tok : 0; }

void pl_chat_reset(pl_chat *c) {
    if (!c) return;
    c->n_tok = 0;
    c->text.n = 0;
    c->n_cut = 0;
    pl_ctx_truncate(c->ctx, 0);
}

/* Shrink the mirror (and the cache) to the last cut at or below n tokens. */
static void chat_rollback(pl_chat *c, int n) {
    while (c->n_cut > 0 && c->cuts[c->n_cut - 1].tok > n) c->n_cut--;
    c->n_tok = c->n_cut ? c->cuts[c->n_cut - 1].tok : 0;
    c->text.n = c->n_cut ? c->cuts[c->n_cut - 1].off : 0;
    pl_ctx_truncate(c->ctx, c->n_tok);
}

static void chat_prompt_free(chat_prompt *p) {
    chat_buf_free(&p->text);
    free(p->ends);
    free(p->toks);
    free(p->cuts);
    memset(p, 0, sizeof *p);
}

static pl_status chat_prompt_end_unit(chat_prompt *p) {
    if (p->n_ends > 0 && p->ends[p->n_ends - 1] == p->text.n) return PL_OK; /* empty unit */
    pl_status st = chat_grow((void **)&p->ends, &p->cap_ends, p->n_ends + 1, sizeof *p->ends);
    if (st) return st;
    p->ends[p->n_ends++] = p->text.n;
    return PL_OK;
}

/* Render msgs[idx[0..n_idx)] into p: one unit per message, one for the
 * generation prompt (none when the last message is an assistant's to continue). */
static pl_status chat_prompt_render(const chat_tmpl *t, const pl_chat_msg *msgs, const int *idx, int n_idx,
                                    chat_prompt *p) {
    chat_render r;
    chat_render_init(&r);
    p->text.n = 0;
    p->n_ends = 0;
    pl_status st = chat_buf_put(&p->text, "", 0);
    const int open = n_idx > 0 && msgs[idx[n_idx - 1]].role && !strcmp(msgs[idx[n_idx - 1]].role, "assistant");
    for (int i = 0; !st && i < n_idx; i++) {
        st = chat_render_msg(t, &r, &msgs[idx[i]], open && i == n_idx - 1, &p->text);
        if (!st) st = chat_prompt_end_unit(p);
    }
    if (!st && !open) st = chat_render_gen_prompt(t, &p->text);
    if (!st) st = chat_prompt_end_unit(p);
    return st;
}

/* Decide what the cache keeps of p and tokenize the rest. */
static pl_status chat_plan(const pl_chat *c, chat_prompt *p) {
    const char *R = p->text.p;
    const size_t RN = p->text.n;
    size_t L = 0;
    while (L < RN && L < c->text.n && R[L] == c->text.p[L]) L++;
    int ci = c->n_cut - 1;
    while (ci >= 0 && c->cuts[ci].off > L) ci--;
    const int add_bos_model = pl_model_add_bos(c->model);
    for (;;) {
        p->keep_cut = ci + 1;
        p->keep_tok = ci >= 0 ? c->cuts[ci].tok : 0;
        p->keep_off = ci >= 0 ? c->cuts[ci].off : 0;
        p->n_toks = 0;
        p->n_cuts = 0;
        size_t a = p->keep_off;
        int e = 0;
        while (e < p->n_ends && p->ends[e] <= a) e++;
        if (p->keep_tok == 0 && add_bos_model && RN == 0) {
            /* an empty prompt on an empty cache: BOS alone */
            pl_status st = chat_grow((void **)&p->toks, &p->cap_toks, 1, sizeof *p->toks);
            if (st) return st;
            p->toks[p->n_toks++] = pl_model_bos(c->model);
            return chat_push_cut(&p->cuts, &p->n_cuts, &p->cap_cuts, 1, 0);
        }
        for (; e < p->n_ends; e++) {
            const size_t b = p->ends[e];
            const int bos = p->keep_tok == 0 && a == 0 && add_bos_model;
            int need = 0;
            pl_status st = chat_grow((void **)&p->toks, &p->cap_toks, p->n_toks + (int)(b - a) + 8, sizeof *p->toks);
            if (st) return st;
            st = pl_tokenize(c->model, R + a, b - a, bos, 1, p->toks + p->n_toks, p->cap_toks - p->n_toks, &need);
            if (st == PL_ERR_INVALID_ARG && need > p->cap_toks - p->n_toks) { /* more tokens than guessed */
                if ((st = chat_grow((void **)&p->toks, &p->cap_toks, p->n_toks + need, sizeof *p->toks))) return st;
                st = pl_tokenize(c->model, R + a, b - a, bos, 1, p->toks + p->n_toks, p->cap_toks - p->n_toks, &need);
            }
            if (st) return st;
            p->n_toks += need;
            if ((st = chat_push_cut(&p->cuts, &p->n_cuts, &p->cap_cuts, p->keep_tok + p->n_toks, b))) return st;
            a = b;
        }
        if (p->n_toks > 0) return PL_OK;
        /* Everything is cached, but sampling needs fresh logits: evaluate
         * again from the cut before. */
        if (ci < 0) return pl_fail(PL_ERR_INVALID_ARG, "chat: empty prompt and no BOS: nothing to generate from");
        ci--;
    }
}

/* Bytes the first n_sys messages render to (the part every window keeps). */
static pl_status chat_sys_len(const chat_tmpl *t, const pl_chat_msg *msgs, int n_sys, size_t *out) {
    chat_render r;
    chat_render_init(&r);
    chat_buf b = {0};
    pl_status st = chat_buf_put(&b, "", 0);
    for (int i = 0; !st && i < n_sys; i++) st = chat_render_msg(t, &r, &msgs[i], 0, &b);
    *out = b.n;
    chat_buf_free(&b);
    return st;
}

/* The shift policy, after turns were left out of p (rendered): p's text is
 * the system part [0, S) and then the kept turns. Find the cut of the cache
 * after the system part from which the cached text continues p's the
 * longest, move those cached tokens down to follow the system part, and
 * make the mirror say so; planning p then reuses them. Best effort: when the
 * system part is not cached as such, nothing matches or the cache cannot be
 * moved (GPU), the cache is left alone for the normal path. */
static void chat_shift(pl_chat *c, const chat_prompt *p, size_t S) {
    if (c->text.n < S || p->text.n < S || memcmp(c->text.p, p->text.p, S)) return;
    const int bos = S == 0 && pl_model_add_bos(c->model);
    int pre_tok = 0, pre_cut = 0;
    if (S > 0) {
        while (pre_cut < c->n_cut && c->cuts[pre_cut].off < S) pre_cut++;
        if (pre_cut == c->n_cut || c->cuts[pre_cut].off != S) return;
        pre_tok = c->cuts[pre_cut++].tok;
    } else if (bos) {
        if (c->n_tok == 0 || c->toks[0] != pl_model_bos(c->model)) return;
        pre_tok = 1; /* the BOS stays; its cut (1, 0) is added below */
    }
    const char *R = p->text.p + S;
    const size_t RN = p->text.n - S;
    int best_ci = -1, best_ce = -1, best_gain = 0;
    for (int ci = pre_cut; ci < c->n_cut; ci++) {
        if (c->cuts[ci].tok <= pre_tok) continue;
        const size_t o = c->cuts[ci].off, avail = c->text.n - o;
        size_t L = 0;
        while (L < avail && L < RN && c->text.p[o + L] == R[L]) L++;
        if (!L) continue;
        int ce = ci;
        while (ce + 1 < c->n_cut && c->cuts[ce + 1].off <= o + L) ce++;
        const int gain = c->cuts[ce].tok - c->cuts[ci].tok;
        if (gain > best_gain) best_ci = ci, best_ce = ce, best_gain = gain;
    }
    if (best_gain <= 0) return;
    const int from = c->cuts[best_ci].tok, d = from - pre_tok;
    const size_t o = c->cuts[best_ci].off, len = c->cuts[best_ce].off - o;
    if (chat_ctx_shift(c->ctx, from, pre_tok, best_gain)) return;
    memmove(c->toks + pre_tok, c->toks + from, sizeof *c->toks * (size_t)best_gain);
    c->n_tok = pre_tok + best_gain;
    memmove(c->text.p + S, c->text.p + o, len);
    c->text.n = S + len;
    c->text.p[c->text.n] = 0;
    int w = pre_cut;
    if (bos) c->cuts[w++] = (chat_cut){1, 0};
    for (int j = best_ci + 1; j <= best_ce; j++) c->cuts[w++] = (chat_cut){c->cuts[j].tok - d, c->cuts[j].off - (o - S)};
    c->n_cut = w;
    pl_ctx_truncate(c->ctx, c->n_tok);
}

/* ------------------------------------------------------------ generation */

typedef struct chat_gen {
    pl_chat *chat;
    const char *stops[16];
    size_t stop_len[16];
    int n_stops;
    pl_on_token cb;
    void *user;
    pl_token *toks; /* generated */
    int n_toks, cap_toks;
    chat_buf out;   /* reply text so far */
    size_t emitted; /* bytes of out handed to cb */
    int hit_stop, user_stop;
    pl_status err;
} chat_gen;

static int chat_on_token(void *user, pl_token tok, const char *text, size_t len) {
    chat_gen *g = user;
    if ((g->err = chat_grow((void **)&g->toks, &g->cap_toks, g->n_toks + 1, sizeof *g->toks))) return 1;
    g->toks[g->n_toks++] = tok;
    if ((g->err = chat_buf_put(&g->out, text, len))) return 1;
    /* A stop string can only end inside the new text: emitted text holds
     * none and never ends with a proper prefix of one. */
    size_t cut = (size_t)-1;
    for (int i = 0; i < g->n_stops; i++) {
        const size_t sl = g->stop_len[i];
        const size_t from = g->emitted + 1 > sl ? g->emitted + 1 - sl : 0;
        if (g->out.n < from + sl) continue;
        const char *hit = memmem(g->out.p + from, g->out.n - from, g->stops[i], sl);
        if (hit && (size_t)(hit - g->out.p) < cut) cut = (size_t)(hit - g->out.p);
    }
    size_t safe;
    if (cut != (size_t)-1) {
        g->hit_stop = 1;
        g->out.n = cut;
        g->out.p[cut] = 0;
        safe = cut;
    } else {
        size_t hold = 0;
        for (int i = 0; i < g->n_stops; i++) {
            const size_t sl = g->stop_len[i];
            for (size_t k = sl - 1 < g->out.n ? sl - 1 : g->out.n; k > hold; k--)
                if (!memcmp(g->out.p + g->out.n - k, g->stops[i], k)) {
                    hold = k;
                    break;
                }
        }
        safe = g->out.n - hold;
    }
    if (safe < g->emitted) safe = g->emitted;
    int stop = 0;
    if (g->cb) stop = g->cb(g->user, tok, g->out.p + g->emitted, safe - g->emitted);
    g->emitted = safe;
    if (stop) g->user_stop = 1;
    return g->hit_stop || stop;
}

static pl_status chat_gen_init(chat_gen *g, pl_chat *c, const char *const *tmpl_stops, const pl_chat_gen_params *gp) {
    memset(g, 0, sizeof *g);
    g->chat = c;
    const int max = (int)(sizeof g->stops / sizeof g->stops[0]);
    for (int i = 0; tmpl_stops && tmpl_stops[i] && g->n_stops < max; i++) g->stops[g->n_stops++] = tmpl_stops[i];
    if (gp->n_stop < 0 || (gp->n_stop > 0 && !gp->stop))
        return pl_fail(PL_ERR_INVALID_ARG, "chat: stop list and n_stop disagree");
    for (int i = 0; i < gp->n_stop; i++) {
        if (!gp->stop[i] || !gp->stop[i][0]) continue;
        if (g->n_stops == max) return pl_fail(PL_ERR_INVALID_ARG, "chat: at most %d stop strings", max - 4);
        g->stops[g->n_stops++] = gp->stop[i];
    }
    for (int i = 0; i < g->n_stops; i++) g->stop_len[i] = strlen(g->stops[i]);
    return chat_buf_put(&g->out, "", 0);
}

/* Place prompt p (planned) in the cache, generate, and bring the mirror up to
 * date with what the cache holds afterwards. */
static pl_status chat_exec(pl_chat *c, chat_prompt *p, chat_gen *g, const pl_chat_gen_params *gp,
                           pl_chat_result *res) {
    c->n_cut = p->keep_cut;
    c->n_tok = p->keep_tok;
    c->text.n = p->keep_off;
    pl_ctx_truncate(c->ctx, c->n_tok);
    pl_status st = PL_OK;
    if ((st = chat_grow((void **)&c->toks, &c->cap_tok, c->n_tok + p->n_toks, sizeof *c->toks))) return st;
    memcpy(c->toks + c->n_tok, p->toks, sizeof *p->toks * (size_t)p->n_toks);
    if ((st = chat_buf_put(&c->text, p->text.p + p->keep_off, p->text.n - p->keep_off))) return st;
    for (int i = 0; i < p->n_cuts && !st; i++)
        st = chat_push_cut(&c->cuts, &c->n_cut, &c->cap_cut, p->cuts[i].tok, p->cuts[i].off);
    if (st) {
        chat_rollback(c, p->keep_tok);
        return st;
    }
    c->n_tok += p->n_toks;
    const int base = c->n_tok;

    pl_complete_params cp = pl_complete_default_params();
    cp.prompt_tokens = p->toks;
    cp.n_prompt_tokens = p->n_toks;
    cp.n_predict = gp->n_predict;
    cp.add_bos = 0;
    cp.sampling = gp->sampling;
    cp.ignore_eos = gp->ignore_eos;
    pl_timings tm = {0};
    pl_status cst = pl_complete(c->ctx, &cp, chat_on_token, g, &tm);
    if (g->err) cst = g->err;

    /* Reconcile: the cache holds `pos` tokens now. */
    const int pos = pl_ctx_pos(c->ctx);
    if (pos < base) {
        chat_rollback(c, pos);
    } else {
        const int n_new = pos - base <= g->n_toks ? pos - base : g->n_toks;
        if ((st = chat_grow((void **)&c->toks, &c->cap_tok, base + n_new, sizeof *c->toks))) {
            chat_rollback(c, base);
            return st;
        }
        for (int i = 0; i < n_new && !st; i++) {
            char piece[256];
            int np = pl_token_to_piece(c->model, g->toks[i], piece, sizeof piece);
            if (np < 0 || np > (int)sizeof piece) np = 0;
            st = chat_buf_put(&c->text, piece, (size_t)np);
            c->toks[c->n_tok++] = g->toks[i];
            if (!st) st = chat_push_cut(&c->cuts, &c->n_cut, &c->cap_cut, c->n_tok, c->text.n);
        }
        if (st) chat_rollback(c, base);
        else if (pos != c->n_tok) chat_rollback(c, pos < c->n_tok ? pos : c->n_tok);
    }
    if (cst && cst != PL_ERR_CANCELLED) return cst;
    if (st) return st;

    /* Text held back as a possible stop-string start is reply after all. */
    if (!g->hit_stop && g->emitted < g->out.n && g->cb && g->n_toks > 0 && !g->user_stop)
        g->cb(g->user, g->toks[g->n_toks - 1], g->out.p + g->emitted, g->out.n - g->emitted);
    g->emitted = g->out.n;

    memset(res, 0, sizeof *res);
    if (g->hit_stop) res->finish = PL_CHAT_FINISH_STOP;
    else if (g->user_stop || cst == PL_ERR_CANCELLED) res->finish = PL_CHAT_FINISH_CANCELLED;
    else if ((gp->n_predict >= 0 && g->n_toks >= gp->n_predict) || pos >= pl_ctx_n_ctx(c->ctx))
        res->finish = PL_CHAT_FINISH_LENGTH;
    else res->finish = PL_CHAT_FINISH_STOP;
    res->text = g->out.p;
    res->len = g->out.n;
    g->out.p = NULL;
    g->out.n = g->out.cap = 0;
    res->n_prompt = p->keep_tok + p->n_toks;
    res->n_reused = p->keep_tok;
    res->n_gen = g->n_toks;
    res->timings = tm;
    return PL_OK;
}

static pl_status chat_check_args(const pl_chat *c, const pl_chat_gen_params *gp, pl_chat_result *res) {
    if (!c || !gp || !res) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_complete: chat, gen and res are required");
    memset(res, 0, sizeof *res);
    return PL_OK;
}

/* Tokens the reply must have room for. */
static int chat_reserve(const pl_chat *c, const pl_chat_gen_params *gp) {
    int r = c->n_reserve;
    if (gp->n_predict >= 0 && gp->n_predict < r) r = gp->n_predict;
    return r;
}

pl_status pl_chat_complete(pl_chat *c, const pl_chat_msg *msgs, int n, const pl_chat_gen_params *gp,
                           pl_on_token on_token, void *user, pl_chat_result *res) {
    pl_status st = chat_check_args(c, gp, res);
    if (st) return st;
    if (n <= 0 || !msgs) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_complete: no messages");
    chat_prompt p = {0};
    chat_gen g;
    int *idx = malloc(sizeof *idx * (size_t)n);
    if (!idx) return pl_fail(PL_ERR_NOMEM, "pl_chat_complete: out of memory");
    int n_idx = n, n_sys = 0, dropped = 0;
    for (int i = 0; i < n; i++) idx[i] = i;
    while (n_sys < n && msgs[n_sys].role && !strcmp(msgs[n_sys].role, "system")) n_sys++;
    const int n_ctx = pl_ctx_n_ctx(c->ctx), reserve = chat_reserve(c, gp);
    if ((st = chat_gen_init(&g, c, chat_tmpl_stops(c->tmpl), gp))) goto done;
    g.cb = on_token;
    g.user = user;
    for (;;) {
        if ((st = chat_prompt_render(c->tmpl, msgs, idx, n_idx, &p))) goto done;
        if ((st = chat_plan(c, &p))) goto done;
        const int total = p.keep_tok + p.n_toks;
        if (total + reserve <= n_ctx) break;
        /* Too long. The turns after the system messages go oldest first; the
         * last message stays, and the window starts at a user message. */
        const int drops = c->overflow == PL_CHAT_OVERFLOW_DROP_OLDEST || c->overflow == PL_CHAT_OVERFLOW_SHIFT;
        const int can_drop = drops && n_idx - n_sys > 1;
        if (!can_drop) {
            if (drops && total < n_ctx) break; /* reply gets what is left */
            st = pl_fail(PL_ERR_CONTEXT_FULL,
                         "chat: the conversation needs %d tokens plus %d for the reply, the context holds %d%s", total,
                         reserve, n_ctx,
                         c->overflow == PL_CHAT_OVERFLOW_REFUSE ? " (start a new chat, or drop the oldest turns)" : "");
            goto done;
        }
        int k = 1;
        while (n_sys + k < n_idx - 1 && strcmp(msgs[idx[n_sys + k]].role ? msgs[idx[n_sys + k]].role : "", "user"))
            k++;
        memmove(idx + n_sys, idx + n_sys + k, sizeof *idx * (size_t)(n_idx - n_sys - k));
        n_idx -= k;
        dropped += k;
    }
    if (dropped && c->overflow == PL_CHAT_OVERFLOW_SHIFT) {
        size_t S;
        if ((st = chat_sys_len(c->tmpl, msgs, n_sys, &S))) goto done;
        chat_shift(c, &p, S);
        if ((st = chat_plan(c, &p))) goto done; /* now reusing the moved tokens */
        if (p.keep_tok + p.n_toks >= n_ctx) {
            st = pl_fail(PL_ERR_CONTEXT_FULL, "chat: the kept turns need %d tokens, the context holds %d",
                         p.keep_tok + p.n_toks, n_ctx);
            goto done;
        }
    }
    if ((st = chat_exec(c, &p, &g, gp, res))) goto done;
    res->n_dropped = dropped;
done:
    free(idx);
    chat_prompt_free(&p);
    chat_buf_free(&g.out);
    free(g.toks);
    return st;
}

pl_status pl_chat_complete_text(pl_chat *c, const char *prompt, const pl_chat_gen_params *gp, pl_on_token on_token,
                                void *user, pl_chat_result *res) {
    pl_status st = chat_check_args(c, gp, res);
    if (st) return st;
    chat_prompt p = {0};
    chat_gen g;
    if ((st = chat_gen_init(&g, c, NULL, gp))) goto done;
    g.cb = on_token;
    g.user = user;
    if ((st = chat_buf_puts(&p.text, prompt ? prompt : ""))) goto done;
    if ((st = chat_prompt_end_unit(&p))) goto done;
    if ((st = chat_plan(c, &p))) goto done;
    const int total = p.keep_tok + p.n_toks, n_ctx = pl_ctx_n_ctx(c->ctx), reserve = chat_reserve(c, gp);
    if (total + reserve > n_ctx) {
        st = pl_fail(PL_ERR_CONTEXT_FULL, "chat: the prompt needs %d tokens plus %d for the reply, the context holds %d",
                     total, reserve, n_ctx);
        goto done;
    }
    st = chat_exec(c, &p, &g, gp, res);
done:
    chat_prompt_free(&p);
    chat_buf_free(&g.out);
    free(g.toks);
    return st;
}

void pl_chat_result_free(pl_chat_result *res) {
    if (!res) return;
    free(res->text);
    res->text = NULL;
    res->len = 0;
}
