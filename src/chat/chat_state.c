/*
 * Saving a conversation: its messages, the chat's cache mirror (tokens, text,
 * cuts) and the KV cache itself, so that reopening a long chat does not
 * evaluate it again. Written to "<path>.tmp" and renamed over path, so a crash
 * leaves the old file or the new one, never half of one. Every length read
 * back is checked against the bytes left in the file and the context's size.
 *
 * Layout (host byte order): "PLCHAT01", u32 n_msgs, per message u32 role
 * length + bytes and u32 content length + bytes; u32 n_tok + i32 tokens;
 * u64 text length + bytes; u32 n_cut + (i32 tok, u64 off) each; then the
 * pl_ctx_state_write block, whose position must equal n_tok.
 */
#include "chat_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_MAGIC "PLCHAT01"

static int st_put(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n; }
static int st_u32(FILE *fp, uint32_t v) { return st_put(fp, &v, sizeof v); }
static int st_u64(FILE *fp, uint64_t v) { return st_put(fp, &v, sizeof v); }
static int st_str(FILE *fp, const char *s) {
    const size_t n = s ? strlen(s) : 0;
    return n <= UINT32_MAX && st_u32(fp, (uint32_t)n) && st_put(fp, s, n);
}

pl_status pl_chat_save(const pl_chat *c, const pl_chat_msg *msgs, int n, const char *path) {
    if (!c || !path || n < 0 || (n > 0 && !msgs)) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_save: bad arguments");
    if (pl_ctx_pos(c->ctx) != c->n_tok)
        return pl_fail(PL_ERR_INTERNAL, "pl_chat_save: the context was changed behind the chat's back");
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "pl_chat_save: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    pl_status st = PL_OK;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        st = pl_fail(PL_ERR_IO, "cannot create %s", tmp);
        goto out;
    }
    int ok = st_put(fp, STATE_MAGIC, 8) && st_u32(fp, (uint32_t)n);
    for (int i = 0; ok && i < n; i++) ok = st_str(fp, msgs[i].role) && st_str(fp, msgs[i].content);
    ok = ok && st_u32(fp, (uint32_t)c->n_tok) && st_put(fp, c->toks, sizeof *c->toks * (size_t)c->n_tok);
    ok = ok && st_u64(fp, c->text.n) && st_put(fp, c->text.p, c->text.n);
    ok = ok && st_u32(fp, (uint32_t)c->n_cut);
    for (int i = 0; ok && i < c->n_cut; i++)
        ok = st_u32(fp, (uint32_t)c->cuts[i].tok) && st_u64(fp, c->cuts[i].off);
    if (!ok) st = pl_fail(PL_ERR_IO, "writing %s failed (disk full?)", tmp);
    if (!st) st = pl_ctx_state_write(c->ctx, fp);
    if (fflush(fp) != 0 && !st) st = pl_fail(PL_ERR_IO, "writing %s failed (disk full?)", tmp);
    if (fclose(fp) != 0 && !st) st = pl_fail(PL_ERR_IO, "closing %s failed", tmp);
    if (!st && rename(tmp, path) != 0) st = pl_fail(PL_ERR_IO, "cannot rename %s to %s", tmp, path);
    if (st) remove(tmp);
out:
    free(tmp);
    return st;
}

typedef struct st_reader {
    FILE *fp;
    uint64_t left; /* bytes not yet read */
    const char *path;
} st_reader;

static pl_status st_read(st_reader *r, void *p, uint64_t n, const char *what) {
    if (n > r->left || (n && fread(p, 1, (size_t)n, r->fp) != n))
        return pl_fail(PL_ERR_FORMAT, "%s: truncated in %s", r->path, what);
    r->left -= n;
    return PL_OK;
}

static pl_status st_read_u32(st_reader *r, uint32_t *v, const char *what) { return st_read(r, v, sizeof *v, what); }

/* Read a length-prefixed string into b (NUL-terminated there); *off gets
 * where it starts. */
static pl_status st_read_str(st_reader *r, chat_buf *b, size_t *off, const char *what) {
    uint32_t len;
    pl_status st = st_read_u32(r, &len, what);
    if (st) return st;
    if (len > r->left) return pl_fail(PL_ERR_FORMAT, "%s: %s of %u bytes runs past the end", r->path, what, len);
    *off = b->n;
    char *tmp = malloc(len ? len : 1);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", r->path);
    st = st_read(r, tmp, len, what);
    if (!st && memchr(tmp, 0, len)) st = pl_fail(PL_ERR_FORMAT, "%s: %s holds a NUL byte", r->path, what);
    if (!st) st = chat_buf_put(b, tmp, len);
    if (!st) st = chat_buf_put(b, "\0", 1); /* keep the terminator in the block */
    free(tmp);
    return st;
}

pl_status pl_chat_load(pl_chat *c, const char *path, pl_chat_msg **msgs_out, int *n_out) {
    if (!c || !path) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_load: chat and path are required");
    if (msgs_out) *msgs_out = NULL;
    if (n_out) *n_out = 0;
    pl_status st = PL_OK;
    chat_buf strs = {0};
    size_t *offs = NULL;
    pl_token *toks = NULL;
    chat_buf text = {0};
    chat_cut *cuts = NULL;
    uint32_t n_msgs = 0, n_tok = 0, n_cut = 0;
    st_reader r = {.fp = fopen(path, "rb"), .path = path};
    if (!r.fp) return pl_fail(PL_ERR_IO, "cannot open %s", path);
    struct stat sb;
    if (fstat(fileno(r.fp), &sb) != 0) {
        st = pl_fail(PL_ERR_IO, "cannot stat %s", path);
        goto fail;
    }
    r.left = (uint64_t)sb.st_size;
    char magic[8];
    if ((st = st_read(&r, magic, 8, "the header"))) goto fail;
    if (memcmp(magic, STATE_MAGIC, 8) != 0) {
        st = pl_fail(PL_ERR_FORMAT, "%s: not a pocketllm chat file", path);
        goto fail;
    }
    if ((st = st_read_u32(&r, &n_msgs, "the message count"))) goto fail;
    if (n_msgs > r.left / 8) {
        st = pl_fail(PL_ERR_FORMAT, "%s: %u messages cannot fit in the file", path, n_msgs);
        goto fail;
    }
    offs = malloc(sizeof *offs * 2 * (n_msgs ? n_msgs : 1));
    if (!offs) goto nomem;
    for (uint32_t i = 0; i < n_msgs; i++) {
        if ((st = st_read_str(&r, &strs, &offs[2 * i], "a message role"))) goto fail;
        if ((st = st_read_str(&r, &strs, &offs[2 * i + 1], "a message content"))) goto fail;
    }
    if ((st = st_read_u32(&r, &n_tok, "the token count"))) goto fail;
    if (n_tok > (uint32_t)pl_ctx_n_ctx(c->ctx)) {
        st = pl_fail(PL_ERR_CONTEXT_FULL, "%s: %u cached tokens do not fit a context of %d", path, n_tok,
                     pl_ctx_n_ctx(c->ctx));
        goto fail;
    }
    toks = malloc(sizeof *toks * (n_tok ? n_tok : 1));
    if (!toks) goto nomem;
    if ((st = st_read(&r, toks, sizeof *toks * (uint64_t)n_tok, "the tokens"))) goto fail;
    const int n_vocab = pl_model_n_vocab(c->model);
    for (uint32_t i = 0; i < n_tok; i++)
        if (toks[i] < 0 || toks[i] >= n_vocab) {
            st = pl_fail(PL_ERR_FORMAT, "%s: token %d at %u is outside the vocabulary", path, toks[i], i);
            goto fail;
        }
    uint64_t text_len;
    if ((st = st_read(&r, &text_len, sizeof text_len, "the text length"))) goto fail;
    if (text_len > r.left) {
        st = pl_fail(PL_ERR_FORMAT, "%s: text of %llu bytes runs past the end", path, (unsigned long long)text_len);
        goto fail;
    }
    char *tb = malloc(text_len ? (size_t)text_len : 1);
    if (!tb) goto nomem;
    st = st_read(&r, tb, text_len, "the text");
    if (!st) st = chat_buf_put(&text, tb, (size_t)text_len);
    free(tb);
    if (st) goto fail;
    if ((st = st_read_u32(&r, &n_cut, "the cut count"))) goto fail;
    if (n_cut > r.left / 12) {
        st = pl_fail(PL_ERR_FORMAT, "%s: %u cuts for %u tokens", path, n_cut, n_tok);
        goto fail;
    }
    cuts = malloc(sizeof *cuts * (n_cut ? n_cut : 1));
    if (!cuts) goto nomem;
    for (uint32_t i = 0; i < n_cut; i++) {
        uint32_t tok;
        uint64_t off;
        if ((st = st_read_u32(&r, &tok, "a cut")) || (st = st_read(&r, &off, sizeof off, "a cut"))) goto fail;
        const int bad = tok > n_tok || off > text_len ||
                        (i > 0 && ((int)tok < cuts[i - 1].tok || off < cuts[i - 1].off));
        if (bad) {
            st = pl_fail(PL_ERR_FORMAT, "%s: cut %u (%u, %llu) is out of order or range", path, i, tok,
                         (unsigned long long)off);
            goto fail;
        }
        cuts[i] = (chat_cut){(int)tok, (size_t)off};
    }
    if (n_tok > 0 && (n_cut == 0 || cuts[n_cut - 1].tok != (int)n_tok || cuts[n_cut - 1].off != text_len)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: the last cut does not close the cached text", path);
        goto fail;
    }
    pl_chat_reset(c);
    if ((st = pl_ctx_state_read(c->ctx, r.fp))) goto fail_reset;
    if (pl_ctx_pos(c->ctx) != (int)n_tok) {
        st = pl_fail(PL_ERR_FORMAT, "%s: KV state holds %d positions, the chat %u tokens", path, pl_ctx_pos(c->ctx),
                     n_tok);
        goto fail_reset;
    }
    /* Commit the mirror. */
    free(c->toks);
    c->toks = toks;
    c->n_tok = c->cap_tok = (int)n_tok;
    toks = NULL;
    chat_buf_free(&c->text);
    c->text = text;
    text.p = NULL;
    free(c->cuts);
    c->cuts = cuts;
    c->n_cut = c->cap_cut = (int)n_cut;
    cuts = NULL;
    if (c->cap_tok == 0) {
        free(c->toks);
        c->toks = NULL;
    }
    if (c->cap_cut == 0) {
        free(c->cuts);
        c->cuts = NULL;
    }
    if (msgs_out) {
        /* One block: the message array, then the strings. */
        const size_t head = sizeof(pl_chat_msg) * n_msgs;
        char *block = malloc(head + strs.n + 1);
        if (!block) goto nomem;
        pl_chat_msg *m = (pl_chat_msg *)(void *)block;
        if (strs.n) memcpy(block + head, strs.p, strs.n);
        for (uint32_t i = 0; i < n_msgs; i++) {
            m[i].role = block + head + offs[2 * i];
            m[i].content = block + head + offs[2 * i + 1];
        }
        *msgs_out = m;
        if (n_out) *n_out = (int)n_msgs;
    }
    goto out;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
fail_reset:
    pl_chat_reset(c);
fail:
    pl_fail_prefix(st, "loading chat");
out:
    fclose(r.fp);
    chat_buf_free(&strs);
    chat_buf_free(&text);
    free(offs);
    free(toks);
    free(cuts);
    return st;
}
