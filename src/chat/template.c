/*
 * Chat templates as data: one row per format, each a set of per-role prefix
 * and suffix strings plus a few flags, rendered by one sequential loop (no
 * Jinja interpreter). The formats and the detection heuristics follow
 * llama.cpp's built-in templates (src/llama-chat.cpp), whose outputs its
 * tests/test-chat-template.cpp pins; the rows reproduce those strings.
 *
 * Detection reads a model's Jinja `tokenizer.chat_template` for the markers a
 * format uses; rows are tried in order and the first whose `need` markers are
 * all present and `veto` markers all absent wins.
 */
#include "chat_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum {
    TMPL_TRIM = 1u << 0,            /* strip ASCII whitespace around contents */
    TMPL_ASSISTANT_SPACE = 1u << 1, /* one space between the assistant prefix and a reply not starting with one */
};

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_COUNT };

typedef struct tmpl_role {
    const char *prefix, *suffix;
} tmpl_role;

struct chat_tmpl {
    const char *name;
    const char *start;        /* before the first message */
    const char *reopen;       /* before a system/user message that follows an assistant reply */
    tmpl_role role[ROLE_COUNT];
    const char *gen_prompt;   /* opens the assistant's reply */
    unsigned flags;
    const char *stops[5];     /* NULL-terminated */
    const char *need[4];      /* detection: all present (NULL-terminated; none = never detected) */
    const char *veto[3];      /* detection: none present */
};

#define LLAMA2_STOPS {"</s>", "[INST]", NULL}

/* Ordered for detection (llama.cpp's order where formats overlap). */
static const chat_tmpl k_templates[] = {
    {.name = "chatml",
     .role = {{"<|im_start|>system\n", "<|im_end|>\n"},
              {"<|im_start|>user\n", "<|im_end|>\n"},
              {"<|im_start|>assistant\n", "<|im_end|>\n"}},
     .gen_prompt = "<|im_start|>assistant\n",
     .stops = {"<|im_end|>", "<|im_start|>", "<|endoftext|>", NULL},
     .need = {"<|im_start|>", NULL},
     .veto = {"<|im_sep|>", "<end_of_utterance>", NULL}},
    /* Llama 2 and its variants: the conversation opens inside an [INST]; a
     * system message either sits in <<SYS>> or is a plain first line. */
    {.name = "llama2-sys-strip",
     .start = "[INST] ",
     .reopen = "[INST] ",
     .role = {{"<<SYS>>\n", "\n<</SYS>>\n\n"}, {"", " [/INST]"}, {"", "</s>"}},
     .gen_prompt = "",
     .flags = TMPL_TRIM,
     .stops = LLAMA2_STOPS,
     .need = {"[INST]", "content.strip()", NULL}},
    {.name = "llama2-sys-bos",
     .start = "[INST] ",
     .reopen = "<s>[INST] ",
     .role = {{"<<SYS>>\n", "\n<</SYS>>\n\n"}, {"", " [/INST]"}, {"", "</s>"}},
     .gen_prompt = "",
     .stops = LLAMA2_STOPS,
     .need = {"[INST]", "bos_token + '[INST]", NULL}},
    {.name = "llama2-sys",
     .start = "[INST] ",
     .reopen = "[INST] ",
     .role = {{"<<SYS>>\n", "\n<</SYS>>\n\n"}, {"", " [/INST]"}, {"", "</s>"}},
     .gen_prompt = "",
     .stops = LLAMA2_STOPS,
     .need = {"[INST]", "<<SYS>>", NULL}},
    {.name = "llama2",
     .start = "[INST] ",
     .reopen = "[INST] ",
     .role = {{"", "\n"}, {"", " [/INST]"}, {"", "</s>"}},
     .gen_prompt = "",
     .stops = LLAMA2_STOPS,
     .need = {"[INST]", NULL}},
    {.name = "phi3",
     .role = {{"<|system|>\n", "<|end|>\n"}, {"<|user|>\n", "<|end|>\n"}, {"<|assistant|>\n", "<|end|>\n"}},
     .gen_prompt = "<|assistant|>\n",
     .stops = {"<|end|>", "<|user|>", "<|endoftext|>", NULL},
     .need = {"<|assistant|>", "<|end|>", NULL}},
    /* Zephyr (stablelm-2-zephyr; HuggingFaceH4's spells the end marker
     * eos_token, which llama.cpp then takes for another format). */
    {.name = "zephyr",
     .role = {{"<|system|>\n", "<|endoftext|>\n"},
              {"<|user|>\n", "<|endoftext|>\n"},
              {"<|assistant|>\n", "<|endoftext|>\n"}},
     .gen_prompt = "<|assistant|>\n",
     .stops = {"<|endoftext|>", "</s>", "<|user|>", NULL},
     .need = {"<|user|>", "<|assistant|>", NULL}},
    {.name = "vicuna-orca",
     .role = {{"SYSTEM: ", "\n"}, {"USER: ", "\n"}, {"ASSISTANT: ", "</s>\n"}},
     .gen_prompt = "ASSISTANT:",
     .stops = {"</s>", "\nUSER:", NULL},
     .need = {"USER: ", "ASSISTANT: ", "SYSTEM: ", NULL}},
    {.name = "vicuna",
     .role = {{"", "\n\n"}, {"USER: ", "\n"}, {"ASSISTANT: ", "</s>\n"}},
     .gen_prompt = "ASSISTANT:",
     .stops = {"</s>", "\nUSER:", NULL},
     .need = {"USER: ", "ASSISTANT: ", NULL}},
    {.name = "llama3",
     .role = {{"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"},
              {"<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"},
              {"<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"}},
     .gen_prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n",
     .flags = TMPL_TRIM,
     .stops = {"<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>", NULL},
     .need = {"<|start_header_id|>", "<|end_header_id|>", NULL}},
    /* For models without a chat format (base models): a plain transcript,
     * which such models continue sensibly. Never detected, only a fallback. */
    {.name = "generic",
     .role = {{"System: ", "\n"}, {"User: ", "\n"}, {"Assistant:", "\n"}},
     .gen_prompt = "Assistant:",
     .flags = TMPL_ASSISTANT_SPACE,
     .stops = {"\nUser:", "\nSystem:", "\nAssistant:", NULL}},
};

#define N_TEMPLATES (sizeof k_templates / sizeof k_templates[0])

/* ---------------------------------------------------------------- buffer */

pl_status chat_buf_put(chat_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) return pl_fail(PL_ERR_NOMEM, "chat: text too large");
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return pl_fail(PL_ERR_NOMEM, "chat: out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return PL_OK;
}

pl_status chat_buf_puts(chat_buf *b, const char *s) { return chat_buf_put(b, s ? s : "", s ? strlen(s) : 0); }

void chat_buf_free(chat_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ------------------------------------------------------------- templates */

const chat_tmpl *chat_tmpl_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_TEMPLATES; i++)
        if (!strcmp(k_templates[i].name, name)) return &k_templates[i];
    return NULL;
}

const char *chat_tmpl_name(const chat_tmpl *t) { return t->name; }
const char *const *chat_tmpl_stops(const chat_tmpl *t) { return t->stops; }

const char *pl_chat_template_name(int i) {
    return i >= 0 && (size_t)i < N_TEMPLATES ? k_templates[i].name : NULL;
}

const char *pl_chat_template_detect(const char *jinja) {
    if (!jinja) return NULL;
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        const chat_tmpl *t = &k_templates[i];
        if (!t->need[0]) continue;
        int ok = 1;
        for (int j = 0; ok && t->need[j]; j++) ok = strstr(jinja, t->need[j]) != NULL;
        for (int j = 0; ok && t->veto[j]; j++) ok = strstr(jinja, t->veto[j]) == NULL;
        if (ok) return t->name;
    }
    return NULL;
}

/* Is `marker` one special token of the model's vocabulary? */
static int tmpl_is_special_token(const pl_model *m, const char *marker) {
    pl_token toks[4];
    int n = 0;
    if (pl_tokenize(m, marker, strlen(marker), 0, 1, toks, 4, &n) != PL_OK) return 0;
    return n == 1;
}

const char *pl_chat_template_for_model(const pl_model *m) {
    if (!m) return "generic";
    const char *name = NULL;
    int len = pl_model_meta_str(m, "tokenizer.chat_template", NULL, 0);
    if (len >= 0) {
        char *jinja = malloc((size_t)len + 1);
        if (jinja) {
            pl_model_meta_str(m, "tokenizer.chat_template", jinja, (size_t)len + 1);
            name = pl_chat_template_detect(jinja);
            free(jinja);
        }
    }
    if (name) return name;
    /* No (recognised) template: a format whose markers the vocabulary has as
     * special tokens was what the model was tuned on. */
    static const struct { const char *marker, *name; } by_token[] = {
        {"<|im_start|>", "chatml"},
        {"<|start_header_id|>", "llama3"},
        {"<|assistant|>", "zephyr"},
    };
    for (size_t i = 0; i < sizeof by_token / sizeof by_token[0]; i++)
        if (tmpl_is_special_token(m, by_token[i].marker)) return by_token[i].name;
    return "generic";
}

const char *const *pl_chat_template_stops(const char *name) {
    const chat_tmpl *t = chat_tmpl_find(name);
    return t ? t->stops : NULL;
}

void chat_render_init(chat_render *r) {
    r->n_done = 0;
    r->inside_turn = 1; /* the template's start text opens the first turn */
}

static int tmpl_role_index(const char *role) {
    if (!role) return -1;
    if (!strcmp(role, "system")) return ROLE_SYSTEM;
    if (!strcmp(role, "user")) return ROLE_USER;
    if (!strcmp(role, "assistant")) return ROLE_ASSISTANT;
    return -1;
}

pl_status chat_render_msg(const chat_tmpl *t, chat_render *r, const pl_chat_msg *m, int open, chat_buf *out) {
    const int role = tmpl_role_index(m->role);
    if (role < 0)
        return pl_fail(PL_ERR_INVALID_ARG, "chat message %d: role '%s' is not system, user or assistant", r->n_done,
                       m->role ? m->role : "(null)");
    const char *c = m->content ? m->content : "";
    size_t n = strlen(c);
    if (t->flags & TMPL_TRIM) {
        while (n && isspace((unsigned char)*c)) c++, n--;
        while (n && isspace((unsigned char)c[n - 1])) n--;
    }
    pl_status st = PL_OK;
    if (r->n_done == 0 && t->start) st = chat_buf_puts(out, t->start);
    if (!st && role != ROLE_ASSISTANT && !r->inside_turn) {
        r->inside_turn = 1;
        if (t->reopen) st = chat_buf_puts(out, t->reopen);
    }
    if (!st) st = chat_buf_puts(out, t->role[role].prefix);
    if (!st && role == ROLE_ASSISTANT && (t->flags & TMPL_ASSISTANT_SPACE) && n && !isspace((unsigned char)c[0]))
        st = chat_buf_put(out, " ", 1);
    if (!st) st = chat_buf_put(out, c, n);
    if (!st && !open) st = chat_buf_puts(out, t->role[role].suffix);
    if (role == ROLE_ASSISTANT) r->inside_turn = 0;
    r->n_done++;
    return st;
}

pl_status chat_render_gen_prompt(const chat_tmpl *t, chat_buf *out) { return chat_buf_puts(out, t->gen_prompt); }

pl_status pl_chat_template_apply(const char *name, const pl_chat_msg *msgs, int n, int add_gen, char **out) {
    if (!out || (n > 0 && !msgs) || n < 0) return pl_fail(PL_ERR_INVALID_ARG, "pl_chat_template_apply: bad arguments");
    *out = NULL;
    const chat_tmpl *t = chat_tmpl_find(name);
    if (!t) return pl_fail(PL_ERR_INVALID_ARG, "chat template '%s' is unknown", name ? name : "(null)");
    chat_buf b = {0};
    chat_render r;
    chat_render_init(&r);
    pl_status st = chat_buf_put(&b, "", 0);
    for (int i = 0; !st && i < n; i++) st = chat_render_msg(t, &r, &msgs[i], 0, &b);
    if (!st && add_gen) st = chat_render_gen_prompt(t, &b);
    if (st) {
        chat_buf_free(&b);
        return st;
    }
    *out = b.p;
    return PL_OK;
}
