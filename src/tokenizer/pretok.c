/*
 * pretok: the byte-level BPE pre-tokenizers, i.e. the regexes llama.cpp lists
 * per `tokenizer.ggml.pre` (src/llama-vocab.cpp), written as hand matchers
 * over codepoints and their Unicode classes — no regex engine.
 *
 * How llama.cpp applies them (src/unicode.cpp, unicode_regex_split), which is
 * what the reference token ids depend on: the text starts as one piece; each
 * regex of the list, in order, splits every piece further. For the GPT-2 and
 * Llama-3 patterns llama.cpp runs hand-written splitters in which every
 * codepoint lands in some word; for the others it runs std::regex search, where
 * the text between two matches becomes a word of its own. A piece's boundaries
 * are hard: lookahead and \s+(?!\S) see the end of the piece, not what follows.
 *
 * Invariant: every matcher returns 0 (no match at pos) or a length that stays
 * inside [pos, end); the splitter matchers (GPT2, LLAMA3, QWEN2) never return 0.
 */
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the table */

static const tok_pre k_pre[] = {
    {"default", 4, {TOK_SPLIT_PUNCT_DEFAULT, TOK_SPLIT_GPT2, TOK_SPLIT_NUMBERS, TOK_SPLIT_DIGITS3}, false, false},
    {"gpt-2|mpt|phi-2|olmo|jais|trillion|granite-docling|exaone4|jina-es|jina-de|jina-v2-es|jina-v2-de|"
     "jina-v1-en|jina-v2-code|roberta-bpe|gigachat|a.x-4.0|mellum|modern-bert",
     1, {TOK_SPLIT_GPT2}, false, false},
    {"falcon", 3, {TOK_SPLIT_PUNCT_FALCON, TOK_SPLIT_GPT2, TOK_SPLIT_DIGITS3}, false, false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", 2,
     {TOK_SPLIT_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", 1, {TOK_SPLIT_LLAMA3},
     true, true},
    {"dbrx|smaug-bpe|glm4|chatglm-bpe", 1, {TOK_SPLIT_LLAMA3}, false, false},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|megrez|stablelm2|hunyuan|solar-open|grok-2", 1, {TOK_SPLIT_QWEN2},
     false, false},
    {"deepseek-llm", 6,
     {TOK_SPLIT_NEWLINE, TOK_SPLIT_DS_LETTERS, TOK_SPLIT_DS_PUNCT, TOK_SPLIT_TRAILING_SPACE, TOK_SPLIT_DS_CJK,
      TOK_SPLIT_NUMBERS},
     false, false},
};

const tok_pre *tok_pre_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++) {
        const char *p = k_pre[i].names;
        while (*p) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == len && memcmp(p, name, len) == 0) return &k_pre[i];
            p += n + (bar != NULL);
        }
    }
    return NULL;
}

const char *tok_pre_supported(void) {
    return "default, gpt-2, mpt, falcon, starcoder, smollm, llama3/llama-bpe, qwen2, deepseek-llm and aliases";
}

/* ------------------------------------------------------ decoded text */

typedef struct pt_text {
    uint32_t *cpt;   /* n codepoints (U+FFFD for an invalid byte) */
    uint16_t *flags; /* n TOK_CPT_* sets */
    uint32_t *off;   /* n + 1 byte offsets */
    size_t n;
} pt_text;

#define PT_NONE 0xFFFFFFFFu /* "codepoint" past the end of a piece */

static inline unsigned pt_flags(const pt_text *t, size_t i, size_t end) { return i < end ? t->flags[i] : 0; }
static inline uint32_t pt_cpt(const pt_text *t, size_t i, size_t end) { return i < end ? t->cpt[i] : PT_NONE; }
static inline uint32_t pt_lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at pos: its length, or 0. Case-folded when `fold`. */
static size_t pt_contraction(const pt_text *t, size_t pos, size_t end, bool fold) {
    if (pt_cpt(t, pos, end) != '\'' || pos + 1 >= end) return 0;
    uint32_t a = pt_cpt(t, pos + 1, end);
    if (fold) a = pt_lower_ascii(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t b = pt_cpt(t, pos + 2, end);
    if (fold) b = pt_lower_ascii(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

#define PT_SLN (TOK_CPT_SPACE | TOK_CPT_LETTER | TOK_CPT_NUMBER)

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (llama.cpp's splitter; the final \s+ covers what the regex leaves between
 * matches). */
static size_t pt_gpt2(const pt_text *t, size_t pos, size_t end) {
    size_t n = pt_contraction(t, pos, end, false);
    if (n) return n;
    const uint32_t c = t->cpt[pos];
    const size_t first = pos + (c == ' ');
    const unsigned f2 = pt_flags(t, first, end);
    size_t i = first;
    if (f2 & TOK_CPT_LETTER) {
        while (pt_flags(t, i, end) & TOK_CPT_LETTER) i++;
        return i - pos;
    }
    if (f2 & TOK_CPT_NUMBER) {
        while (pt_flags(t, i, end) & TOK_CPT_NUMBER) i++;
        return i - pos;
    }
    if (f2 && !(f2 & PT_SLN)) {
        while (pt_flags(t, i, end) && !(pt_flags(t, i, end) & PT_SLN)) i++;
        return i - pos;
    }
    size_t ws = 0;
    while (pt_flags(t, pos + ws, end) & TOK_CPT_SPACE) ws++;
    if (ws > 1 && pos + ws < end) return ws - 1; /* \s+(?!\S): leave the last one to the next word */
    return ws ? ws : 1;
}

/* Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * and Qwen 2, the same with \p{N} (max_digits 1). */
static size_t pt_llama3(const pt_text *t, size_t pos, size_t end, size_t max_digits) {
    size_t n = pt_contraction(t, pos, end, true);
    if (n) return n;
    const uint32_t c = t->cpt[pos];
    const unsigned f = t->flags[pos];
    size_t i;
    if (!(c == '\r' || c == '\n' || (f & TOK_CPT_NUMBER)) &&
        ((f & TOK_CPT_LETTER) || (pt_flags(t, pos + 1, end) & TOK_CPT_LETTER))) {
        i = pos + 1;
        while (pt_flags(t, i, end) & TOK_CPT_LETTER) i++;
        return i - pos;
    }
    if (f & TOK_CPT_NUMBER) {
        i = pos;
        while (i - pos < max_digits && (pt_flags(t, i, end) & TOK_CPT_NUMBER)) i++;
        return i - pos;
    }
    /* (llama.cpp's splitter lets a lone space at the very end of a piece in
     * here; it comes out as a one-space word, as \s+ would make it.) */
    const unsigned f2 = c == ' ' ? pt_flags(t, pos + 1, end) : f;
    if (!(f2 & PT_SLN)) {
        i = pos + (c == ' ');
        while (pt_flags(t, i, end) && !(pt_flags(t, i, end) & PT_SLN)) i++;
        while (pt_cpt(t, i, end) == '\r' || pt_cpt(t, i, end) == '\n') i++;
        return i - pos;
    }
    size_t ws = 0, last_nl = 0;
    while (pt_flags(t, pos + ws, end) & TOK_CPT_SPACE) {
        const uint32_t w = t->cpt[pos + ws];
        ws++;
        if (w == '\r' || w == '\n') last_nl = ws;
    }
    if (last_nl) return last_nl;                 /* \s*[\r\n]+ */
    if (ws > 1 && pos + ws < end) return ws - 1; /* \s+(?!\S) */
    return ws ? ws : 1;                          /* \s+ */
}

/* deepseek-llm's letter class (cased letters, as listed in llama.cpp). */
static const uint32_t k_ds_letters[][2] = {
    {0x0041, 0x005A}, {0x0061, 0x007A}, {0x00B5, 0x00B5}, {0x00C0, 0x00D6}, {0x00D8, 0x00F6},
    {0x00F8, 0x01BA}, {0x01BC, 0x01BF}, {0x01C4, 0x0293}, {0x0295, 0x02AF}, {0x0370, 0x0373},
    {0x0376, 0x0377}, {0x037B, 0x037D}, {0x037F, 0x037F}, {0x0386, 0x0386}, {0x0388, 0x038A},
    {0x038C, 0x038C}, {0x038E, 0x03A1}, {0x03A3, 0x03F5}, {0x03F7, 0x0481}, {0x048A, 0x052F},
    {0x0531, 0x0556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107},
    {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126},
    {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F},
    {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
    {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static bool pt_in_ranges(uint32_t c, const uint32_t (*r)[2], int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid - 1;
        else if (c > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

/* Class tests on one unit. llama.cpp feeds std::regex a copy of the text in
 * which non-ASCII White_Space codepoints became U+000B, so a literal such as
 * U+3000 in a class never matches: only \s does. */
static bool pt_is(const pt_text *t, size_t i, size_t end, tok_split k) {
    if (i >= end) return false;
    const uint32_t c = t->cpt[i];
    const unsigned f = t->flags[i];
    if (c >= 0x80 && (f & TOK_CPT_SPACE)) return false;
    switch (k) {
    case TOK_SPLIT_PUNCT_DEFAULT:
        return (f & TOK_CPT_PUNCT) || (c < 0x80 && strchr("$+<=>^~|", (int)c) && c);
    case TOK_SPLIT_PUNCT_FALCON:
        return (f & TOK_CPT_PUNCT) || (c < 0x80 && strchr("$+<=>^~|`", (int)c) && c);
    case TOK_SPLIT_NUMBER:
    case TOK_SPLIT_NUMBERS:
        return (f & TOK_CPT_NUMBER) != 0;
    case TOK_SPLIT_DS_LETTERS:
        return pt_in_ranges(c, k_ds_letters, (int)(sizeof k_ds_letters / sizeof k_ds_letters[0]));
    case TOK_SPLIT_DS_PUNCT:
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
               (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
    case TOK_SPLIT_DS_CJK:
        return (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
    default:
        return false;
    }
}

static size_t pt_run(const pt_text *t, size_t i, size_t end, tok_split k) {
    size_t j = i;
    while (pt_is(t, j, end, k)) j++;
    return j - i;
}

/* Length of the match of split k at pos (0 = none). On no match, *next is
 * the next position where a match can start. */
static size_t pt_match(const pt_text *t, tok_split k, size_t pos, size_t end, size_t *next) {
    *next = pos + 1;
    switch (k) {
    case TOK_SPLIT_GPT2:
        return pt_gpt2(t, pos, end);
    case TOK_SPLIT_LLAMA3:
        return pt_llama3(t, pos, end, 3);
    case TOK_SPLIT_QWEN2:
        return pt_llama3(t, pos, end, 1);
    case TOK_SPLIT_PUNCT_DEFAULT:
    case TOK_SPLIT_PUNCT_FALCON:
    case TOK_SPLIT_NUMBERS:
    case TOK_SPLIT_DS_CJK:
        return pt_run(t, pos, end, k);
    case TOK_SPLIT_NUMBER:
        return pt_is(t, pos, end, k) ? 1 : 0;
    case TOK_SPLIT_DIGITS3:
        for (size_t i = 0; i < 3; i++) {
            uint32_t c = pt_cpt(t, pos + i, end);
            if (c < '0' || c > '9') return 0;
        }
        return 3;
    case TOK_SPLIT_NEWLINE:
        return t->cpt[pos] == '\r' || t->cpt[pos] == '\n';
    case TOK_SPLIT_DS_LETTERS:
    case TOK_SPLIT_DS_PUNCT: {
        /* \s?[class]+ */
        if ((t->flags[pos] & TOK_CPT_SPACE) && pt_is(t, pos + 1, end, k)) return 1 + pt_run(t, pos + 1, end, k);
        return pt_run(t, pos, end, k);
    }
    case TOK_SPLIT_TRAILING_SPACE: {
        /* \s+$: only a whitespace run that reaches the end of the piece */
        size_t ws = 0;
        while (pt_flags(t, pos + ws, end) & TOK_CPT_SPACE) ws++;
        if (ws && pos + ws == end) return ws;
        *next = pos + (ws ? ws : 1);
        return 0;
    }
    }
    return 0;
}

/* --------------------------------------------------------- the driver */

void tok_spans_free(tok_spans *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static bool pt_push(tok_spans *s, uint32_t off, uint32_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        tok_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].off = off;
    s->v[s->n].len = len;
    s->n++;
    return true;
}

pl_status tok_pretokenize(const tok_pre *pre, const char *text, size_t len, tok_spans *words) {
    pl_status st = PL_OK;
    pt_text t = {0};
    size_t *ends = NULL, *next_ends = NULL;
    if (len == 0) return PL_OK;
    if (len > UINT32_MAX - 1) return pl_fail(PL_ERR_INVALID_ARG, "tokenize: text of %zu bytes is too long", len);
    t.cpt = malloc(len * sizeof *t.cpt);
    t.flags = malloc(len * sizeof *t.flags);
    t.off = malloc((len + 1) * sizeof *t.off);
    ends = malloc(len * sizeof *ends);
    next_ends = malloc(len * sizeof *next_ends);
    if (!t.cpt || !t.flags || !t.off || !ends || !next_ends) goto nomem;

    for (size_t b = 0; b < len;) {
        uint32_t c;
        int n = tok_utf8_decode(text + b, len - b, &c);
        t.cpt[t.n] = c;
        t.flags[t.n] = (uint16_t)tok_cpt_flags(c);
        t.off[t.n] = (uint32_t)b;
        t.n++;
        b += (size_t)n;
    }
    t.off[t.n] = (uint32_t)len;

    /* pieces as end positions; start with the whole text */
    size_t n_pieces = 1;
    ends[0] = t.n;
    for (int s = 0; s < pre->n_splits; s++) {
        const tok_split k = pre->splits[s];
        size_t n_next = 0, start = 0;
        for (size_t p = 0; p < n_pieces; p++) {
            const size_t end = ends[p];
            size_t gap = start, pos = start;
            while (pos < end) {
                size_t next;
                size_t m = pt_match(&t, k, pos, end, &next);
                if (m == 0) {
                    pos = next;
                    continue;
                }
                if (gap < pos) next_ends[n_next++] = pos; /* unmatched text between matches */
                pos += m;
                next_ends[n_next++] = pos;
                gap = pos;
            }
            if (gap < end) next_ends[n_next++] = end;
            start = end;
        }
        size_t *tmp = ends;
        ends = next_ends;
        next_ends = tmp;
        n_pieces = n_next;
    }

    size_t start = 0;
    for (size_t p = 0; p < n_pieces; p++) {
        if (!pt_push(words, t.off[start], t.off[ends[p]] - t.off[start])) goto nomem;
        start = ends[p];
    }
    goto done;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "tokenize: out of memory splitting %zu bytes", len);
done:
    free(t.cpt);
    free(t.flags);
    free(t.off);
    free(ends);
    free(next_ends);
    return st;
}
