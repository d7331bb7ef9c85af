/*
 * chat: internals shared by the chat module's files (templates, the
 * conversation with KV prefix reuse, its save file). The module sits above
 * model in the dependency order (core -> ... -> model -> chat) and, apart from
 * model_ext.c and kv_shift.c, uses only the public API plus core's error helpers.
 */
#ifndef PL_CHAT_IMPL_H
#define PL_CHAT_IMPL_H

#include "../core/core.h"

#include <stddef.h>

/* A growable byte buffer, kept NUL-terminated. */
typedef struct chat_buf {
    char *p;
    size_t n, cap;
} chat_buf;

pl_status chat_buf_put(chat_buf *b, const char *s, size_t n);
pl_status chat_buf_puts(chat_buf *b, const char *s);
void chat_buf_free(chat_buf *b);

/* ------------------------------------------------------------ templates */

typedef struct chat_tmpl chat_tmpl;

const chat_tmpl *chat_tmpl_find(const char *name);
const char *chat_tmpl_name(const chat_tmpl *t);
/* NULL-terminated list of the template's stop strings. */
const char *const *chat_tmpl_stops(const chat_tmpl *t);

/* Rendering is sequential: each message's text only depends on the messages
 * before it, so the text of messages [0, i) is a prefix of that of [0, i+1).
 * The chat cuts its token cache at these message boundaries. */
typedef struct chat_render {
    int n_done;      /* messages rendered so far */
    int inside_turn; /* llama2 family: an [INST] is open */
} chat_render;

void chat_render_init(chat_render *r);
/* Append message m's text. open: leave the message unterminated (an assistant
 * reply the model is to continue). */
pl_status chat_render_msg(const chat_tmpl *t, chat_render *r, const pl_chat_msg *m, int open, chat_buf *out);
/* Append the text that opens the assistant's reply. */
pl_status chat_render_gen_prompt(const chat_tmpl *t, chat_buf *out);

/* ------------------------------------------------------------- KV cache */

/* Move n cached positions of every layer from `from` to `to` (either way),
 * keys re-roped by to - from (kv_shift.c). The caller truncates the cache.
 * PL_ERR_UNSUPPORTED on a GPU context. */
pl_status chat_ctx_shift(pl_ctx *c, int from, int to, int n);

/* ---------------------------------------------------------- conversation */

typedef struct chat_cut {
    int tok;
    size_t off;
} chat_cut;

/* The conversation (chat.c documents the mirror and its invariant). */
struct pl_chat {
    pl_ctx *ctx;
    const pl_model *model;
    const chat_tmpl *tmpl;
    pl_chat_overflow overflow;
    int n_reserve;
    pl_token *toks;
    int n_tok, cap_tok;
    chat_buf text;
    chat_cut *cuts;
    int n_cut, cap_cut;
};

#endif
