/*
 * Chat: templates against the renderings llama.cpp's tests pin, KV prefix
 * reuse (a new turn evaluates only its new tokens, and the reused cache gives
 * the logits a from-scratch evaluation gives), the context-full policies,
 * stop strings, cancelling, save/load of conversations with their KV state,
 * and the SQLite chat store (CRUD, WAL, migrations, kill -9 while writing).
 *
 * Template references: ggml-org/llama.cpp tests/test-chat-template.cpp
 * (commit 06d58c3e43cff977bf3644dc1167f76c077b59cf): each case's Jinja
 * template_str and expected_output for its 6-message conversation with
 * add_generation_prompt = true, copied verbatim below.
 */
#include "test.h"

#include "chat/chat_impl.h"
#include "core/alloc.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "serve/serve.h"
#include "serve/store.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const LLAMA = "models/kjv-llama-q8_0.gguf";
static const char *const STORIES = "models/stories260K.gguf";

static char g_tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_tmpdir, name);
    return b;
}

/* ------------------------------------------------------------- templates */

static const pl_chat_msg k_conv[] = {
    {"system", "You are a helpful assistant"}, {"user", "Hello"},          {"assistant", "Hi there"},
    {"user", "Who are you"},                  {"assistant", "   I am an assistant   "}, {"user", "Another question"},
};

typedef struct tmpl_case {
    const char *what;     /* llama.cpp's test case name */
    const char *jinja;    /* its template_str */
    const char *name;     /* the built-in template that must be detected */
    const char *expected; /* its expected_output */
} tmpl_case;

static const tmpl_case k_cases[] = {
    {"teknium/OpenHermes-2.5-Mistral-7B",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     "chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>"
     "assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an "
     "assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {"mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 without a system prompt)",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
     "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
     "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
     "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
     "are supported!') }}{% endif %}{% endfor %}",
     "llama2",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]"},
    {"TheBloke/FusionNet_34Bx2_MoE-AWQ",
     "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- if idx > 1 "
     "-%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- else -%}\n{{- "
     "messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- "
     "'[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == "
     "'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}",
     "llama2-sys-bos",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you "
     "[/INST]   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {"bofenghuang/vigogne-2-70b-chat",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
     "system_message = messages[0]['content'] %}{% elif true == true and not '<<SYS>>' in messages[0]['content'] %}{% "
     "set loop_messages = messages %}{% set system_message = 'Vous êtes Vigogne, un assistant IA créé par Zaion Lab. "
     "Vous suivez extrêmement bien les instructions. Aidez autant que vous le pouvez.' %}{% else %}{% set "
     "loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
     "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set "
     "content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
     "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' "
     "}}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif "
     "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
     "llama2-sys-strip",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]I am "
     "an assistant</s>[INST] Another question [/INST]"},
    {"Llama-3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
     "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
     "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ "
     "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
     "llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_"
     "header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi "
     "there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
     "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"Phi-3-mini",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
     "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') "
     "%}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}",
     "phi3",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
     "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother "
     "question<|end|>\n<|assistant|>\n"},
    {"eachadea/vicuna-13b-1.1",
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\n\n' "
     "-}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else "
     "-%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if "
     "add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "vicuna",
     "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an "
     "assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"Orca-Vicuna",
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{-'SYSTEM: ' + message['content'] + '\n' "
     "-}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else "
     "-%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if "
     "add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "vicuna-orca",
     "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I "
     "am an assistant   </s>\nUSER: Another question\nASSISTANT:"},
};

static void test_templates_match_llamacpp(void) {
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const tmpl_case *c = &k_cases[i];
        const char *name = pl_chat_template_detect(c->jinja);
        CHECK(name && !strcmp(name, c->name), "%s: detected %s, want %s", c->what, name ? name : "(none)", c->name);
        char *out = NULL;
        pl_status st = pl_chat_template_apply(c->name, k_conv, 6, 1, &out);
        REQUIRE(st == PL_OK, "%s: %s", c->what, pl_last_error());
        CHECK(!strcmp(out, c->expected), "%s:\n got  [%s]\n want [%s]", c->what, out, c->expected);
        free(out);
    }
}

static void test_templates_other_references(void) {
    /* llama.cpp's test: "INVALID TEMPLATE" is no template. Gemma's (same
     * file) is a format we do not have: not mistaken for another. */
    CHECK(pl_chat_template_detect("INVALID TEMPLATE") == NULL, "an invalid template was recognised");
    const char *gemma = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
                        "endif %}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] "
                        "| trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt "
                        "%}{{'<start_of_turn>model\\n'}}{% endif %}";
    CHECK(pl_chat_template_detect(gemma) == NULL, "gemma detected as %s", pl_chat_template_detect(gemma));
    /* Zephyr: llama.cpp's LLM_CHAT_TEMPLATE_ZEPHYR (src/llama-chat.cpp) and
     * stablelm-zephyr's documented prompt "<|user|>\n{prompt}<|endoftext|>\n<|assistant|>". */
    const pl_chat_msg one[] = {{"user", "Hello"}};
    char *out = NULL;
    REQUIRE(pl_chat_template_apply("zephyr", one, 1, 1, &out) == PL_OK, "%s", pl_last_error());
    CHECK(!strcmp(out, "<|user|>\nHello<|endoftext|>\n<|assistant|>\n"), "zephyr: [%s]", out);
    free(out);
    /* llama2-sys is llama2-sys-bos without the BOS between turns (the same
     * llama.cpp code path with add_bos_inside_history off). */
    char *sys = NULL, *bos = NULL;
    REQUIRE(pl_chat_template_apply("llama2-sys", k_conv, 6, 1, &sys) == PL_OK, "%s", pl_last_error());
    REQUIRE(pl_chat_template_apply("llama2-sys-bos", k_conv, 6, 1, &bos) == PL_OK, "%s", pl_last_error());
    chat_buf b = {0};
    for (const char *p = bos; *p;) {
        if (!strncmp(p, "<s>", 3)) p += 3;
        else chat_buf_put(&b, p++, 1);
    }
    CHECK(b.p && !strcmp(sys, b.p), "llama2-sys [%s] vs llama2-sys-bos without <s> [%s]", sys, b.p);
    chat_buf_free(&b);
    free(sys);
    free(bos);
}

static void test_templates_properties(void) {
    int n = 0;
    for (int i = 0; pl_chat_template_name(i); i++, n++) {
        const char *name = pl_chat_template_name(i);
        CHECK(pl_chat_template_stops(name) && pl_chat_template_stops(name)[0], "%s has no stop strings", name);
        /* Sequential: the text of the first k messages is a prefix of that
         * of k + 1 (the chat's KV reuse cuts at these boundaries). */
        char *prev = NULL;
        for (int k = 0; k <= 6; k++) {
            char *cur = NULL;
            REQUIRE(pl_chat_template_apply(name, k_conv, k, 0, &cur) == PL_OK, "%s: %s", name, pl_last_error());
            if (prev) CHECK(!strncmp(prev, cur, strlen(prev)), "%s: %d messages do not extend %d", name, k, k - 1);
            free(prev);
            prev = cur;
        }
        /* every content appears, in order */
        const char *p = prev;
        for (int k = 0; k < 6 && p; k++) {
            const char *want = strstr(k_conv[k].content, "I am") ? "I am an assistant" : k_conv[k].content;
            p = strstr(p, want);
            CHECK(p != NULL, "%s: message %d missing or out of order", name, k);
        }
        free(prev);
    }
    CHECK(n == 11, "%d templates", n);
    char *out = (char *)1;
    const pl_chat_msg bad[] = {{"tool", "x"}};
    CHECK(pl_chat_template_apply("chatml", bad, 1, 1, &out) == PL_ERR_INVALID_ARG && out == NULL, "role tool accepted");
    CHECK(strstr(pl_last_error(), "tool") != NULL, "message: %s", pl_last_error());
    CHECK(pl_chat_template_apply("nope", k_conv, 1, 1, &out) == PL_ERR_INVALID_ARG, "unknown template accepted");
    CHECK(pl_chat_template_stops("nope") == NULL, "stops of an unknown template");
}

/* A vocab-only copy of a shared vocabulary with a chat template added. */
static void test_template_from_gguf(void) {
    const char *vocab = shared_path("tokenizer/ggml-vocab-llama-spm.gguf");
    if (!vocab) SKIP("../shared/tokenizer/ggml-vocab-llama-spm.gguf not found");
    gguf_file *src = NULL;
    REQUIRE(gguf_open(vocab, &src) == PL_OK, "%s", pl_last_error());
    gguf_writer *w = gguf_writer_new();
    REQUIRE(w, "writer");
    const char *path = tmp_path("with-template.gguf");
    pl_status st = gguf_writer_copy_kv(w, src, NULL);
    if (!st) st = gguf_writer_set_str(w, "tokenizer.chat_template", k_cases[4].jinja); /* Llama-3 */
    if (!st) st = gguf_writer_write_file(w, path);
    gguf_writer_free(w);
    gguf_close(src);
    REQUIRE(st == PL_OK, "%s", pl_last_error());
    pl_model_params mp = pl_model_default_params();
    mp.vocab_only = 1;
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(!strcmp(pl_chat_template_for_model(m), "llama3"), "got %s", pl_chat_template_for_model(m));
    char buf[64];
    const int len = pl_model_meta_str(m, "tokenizer.chat_template", buf, sizeof buf);
    CHECK(len == (int)strlen(k_cases[4].jinja), "length %d", len);
    CHECK(!strncmp(buf, k_cases[4].jinja, sizeof buf - 1) && buf[sizeof buf - 1] == 0, "truncated copy [%s]", buf);
    CHECK(pl_model_meta_str(m, "general.name", buf, sizeof buf) == 9 && !strcmp(buf, "llama-spm"), "name [%s]", buf);
    CHECK(pl_model_meta_str(m, "no.such.key", buf, sizeof buf) == -1, "absent key");
    CHECK(pl_model_meta_str(m, "tokenizer.ggml.bos_token_id", buf, sizeof buf) == -1, "a number is not a string");
    pl_model_free(m);
    /* The same vocabulary without a template: nothing to go by. */
    REQUIRE(pl_model_load(vocab, &mp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(!strcmp(pl_chat_template_for_model(m), "generic"), "got %s", pl_chat_template_for_model(m));
    pl_model_free(m);
}

/* --------------------------------------------------------- conversations */

typedef struct fixture {
    pl_model *model;
    pl_ctx *ctx;
    pl_chat *chat;
} fixture;

static int fixture_open(fixture *f, const char *rel, int n_ctx, const pl_chat_params *cp) {
    memset(f, 0, sizeof *f);
    const char *path = shared_path(rel);
    if (!path) return 0;
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = n_ctx;
    xp.n_threads = 2;
    if (pl_model_load(path, NULL, &f->model) || pl_ctx_new(f->model, &xp, &f->ctx) || pl_chat_new(f->ctx, cp, &f->chat)) {
        fprintf(stderr, "  fixture %s: %s\n", rel, pl_last_error());
        return -1;
    }
    return 1;
}

static void fixture_close(fixture *f) {
    pl_chat_free(f->chat);
    pl_ctx_free(f->ctx);
    pl_model_free(f->model);
}

#define OPEN(f, rel, n_ctx, cp)                                                              \
    do {                                                                                   \
        int ok_ = fixture_open(f, rel, n_ctx, cp);                                         \
        if (ok_ == 0) SKIP("../shared/%s not found", rel);                                 \
        REQUIRE(ok_ == 1, "cannot open %s", rel);                                          \
    } while (0)

static pl_chat_gen_params greedy(int n_predict) {
    pl_chat_gen_params g = pl_chat_default_gen_params();
    g.n_predict = n_predict;
    g.sampling.temp = 0;
    return g;
}

/* The largest |a - b| relative to the largest |b|. */
static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, m = 1e-6;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

static void test_kv_prefix_reuse(void) {
    fixture f;
    OPEN(&f, LLAMA, 512, NULL);
    pl_chat_msg msgs[6] = {{"system", "You speak as the prophets spoke."},
                           {"user", "Who created the heaven and the earth?"}};
    pl_chat_gen_params g = greedy(12);
    pl_chat_result r1, r2, r3;
    REQUIRE(pl_chat_complete(f.chat, msgs, 2, &g, NULL, NULL, &r1) == PL_OK, "%s", pl_last_error());
    CHECK(r1.n_reused == 0 && r1.timings.n_prompt == r1.n_prompt && r1.n_gen == 12, "turn 1: reused %d eval %d gen %d",
          r1.n_reused, r1.timings.n_prompt, r1.n_gen);
    const int pos1 = pl_ctx_pos(f.ctx);
    CHECK(pos1 == pl_chat_n_cached(f.chat) && pos1 >= r1.n_prompt + r1.n_gen - 1, "pos %d", pos1);
    /* Turn 2 sends the whole history back, as clients do: only the new turn
     * is evaluated. n_predict 0 leaves the prompt's last logits to compare. */
    msgs[2] = (pl_chat_msg){"assistant", r1.text};
    msgs[3] = (pl_chat_msg){"user", "And what did he make on the second day?"};
    g.n_predict = 0;
    REQUIRE(pl_chat_complete(f.chat, msgs, 4, &g, NULL, NULL, &r2) == PL_OK, "%s", pl_last_error());
    CHECK(r2.n_reused == pos1, "turn 2 reused %d of the %d cached tokens", r2.n_reused, pos1);
    CHECK(r2.timings.n_prompt == r2.n_prompt - r2.n_reused && r2.timings.n_prompt > 0, "evaluated %d of %d (%d reused)",
          r2.timings.n_prompt, r2.n_prompt, r2.n_reused);
    REQUIRE(pl_ctx_pos(f.ctx) == r2.n_prompt, "pos %d", pl_ctx_pos(f.ctx));
    /* The reused cache must be what evaluating the same tokens from scratch
     * gives: compare the last position's logits. */
    const int V = pl_model_n_vocab(f.model);
    float *reused = malloc(sizeof(float) * (size_t)V);
    REQUIRE(reused, "oom");
    memcpy(reused, pl_ctx_logits(f.ctx, -1), sizeof(float) * (size_t)V);
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = 512;
    xp.n_threads = 2;
    pl_ctx *fresh = NULL;
    REQUIRE(pl_ctx_new(f.model, &xp, &fresh) == PL_OK, "%s", pl_last_error());
    REQUIRE(pl_ctx_decode(fresh, f.chat->toks, r2.n_prompt) == PL_OK, "%s", pl_last_error());
    const double d = rel_diff(reused, pl_ctx_logits(fresh, -1), V);
    /* Bitwise equal with today's kernels; the bound leaves room for kernels
     * whose sums depend on the batch size (then f16 cache rounding differs),
     * while a misplaced or stale cache entry moves logits by far more. */
    CHECK(d < 5e-3, "reused-cache logits differ from a fresh evaluation by %g", d);
    pl_ctx_free(fresh);
    free(reused);
    /* The same prompt again (a regenerate): everything but the last unit
     * comes from the cache, and at least one token is evaluated for logits. */
    REQUIRE(pl_chat_complete(f.chat, msgs, 4, &g, NULL, NULL, &r3) == PL_OK, "%s", pl_last_error());
    CHECK(r3.n_prompt == r2.n_prompt && r3.n_reused >= pos1 && r3.timings.n_prompt >= 1, "regenerate: %d/%d/%d",
          r3.n_prompt, r3.n_reused, r3.timings.n_prompt);
    /* A different conversation on the same chat: nothing wrongly reused. */
    pl_chat_msg other[] = {{"user", "Sing of the sea."}};
    pl_chat_result r4;
    REQUIRE(pl_chat_complete(f.chat, other, 1, &g, NULL, NULL, &r4) == PL_OK, "%s", pl_last_error());
    CHECK(r4.n_reused <= 1, "another conversation reused %d tokens", r4.n_reused);
    pl_chat_result_free(&r1);
    pl_chat_result_free(&r2);
    pl_chat_result_free(&r3);
    pl_chat_result_free(&r4);
    fixture_close(&f);
}

/* Messages long enough to overflow a 128-token context. */
static void long_conversation(pl_chat_msg *msgs, int *n) {
    static const char *turn = "Tell me a long story about a cat, a dog and a bird who went to the market together.";
    int k = 0;
    msgs[k++] = (pl_chat_msg){"system", "Be kind."};
    for (int i = 0; i < 4; i++) {
        msgs[k++] = (pl_chat_msg){"user", turn};
        msgs[k++] = (pl_chat_msg){"assistant", "Once upon a time there was a cat."};
    }
    msgs[k++] = (pl_chat_msg){"user", "The end?"};
    *n = k;
}

static void test_overflow_refuse(void) {
    fixture f;
    OPEN(&f, STORIES, 128, NULL);
    pl_chat_msg msgs[16];
    int n;
    long_conversation(msgs, &n);
    pl_chat_gen_params g = greedy(8);
    pl_chat_result r;
    pl_chat_msg small[] = {{"system", "Be kind."}, {"user", "Hi"}};
    REQUIRE(pl_chat_complete(f.chat, small, 2, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    pl_chat_result_free(&r);
    const int cached = pl_chat_n_cached(f.chat);
    CHECK(pl_chat_complete(f.chat, msgs, n, &g, NULL, NULL, &r) == PL_ERR_CONTEXT_FULL, "a too long chat was accepted");
    CHECK(strstr(pl_last_error(), "context holds 128") != NULL, "message: %s", pl_last_error());
    CHECK(pl_chat_n_cached(f.chat) == cached && pl_ctx_pos(f.ctx) == cached, "refusing changed the cache (%d -> %d)",
          cached, pl_chat_n_cached(f.chat));
    /* still usable, and still reusing */
    REQUIRE(pl_chat_complete(f.chat, small, 2, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    CHECK(r.n_reused > 0, "the cache was lost");
    pl_chat_result_free(&r);
    fixture_close(&f);
}

static void test_overflow_drop_oldest(void) {
    pl_chat_params cp = pl_chat_default_params();
    cp.overflow = PL_CHAT_OVERFLOW_DROP_OLDEST;
    cp.n_reserve = 16;
    fixture f;
    OPEN(&f, STORIES, 128, &cp);
    pl_chat_msg msgs[16];
    int n;
    long_conversation(msgs, &n);
    pl_chat_gen_params g = greedy(8);
    pl_chat_result r;
    REQUIRE(pl_chat_complete(f.chat, msgs, n, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    CHECK(r.n_dropped >= 2 && r.n_dropped % 2 == 0, "dropped %d (whole turns)", r.n_dropped);
    CHECK(r.n_prompt + 16 <= 128, "prompt of %d tokens leaves no reserve", r.n_prompt);
    /* The context keeps the system prompt and the newest turn. */
    const char *text = f.chat->text.p;
    CHECK(!strncmp(text, "System: Be kind.\n", 17), "system prompt not first: [%.40s]", text);
    CHECK(strstr(text, "User: The end?\n") != NULL, "last message missing");
    pl_chat_result_free(&r);
    /* One message larger than the context: a clean error, not a crash. */
    static char huge[2048];
    memset(huge, 'a', sizeof huge - 1);
    pl_chat_msg one[] = {{"system", "Be kind."}, {"user", huge}};
    CHECK(pl_chat_complete(f.chat, one, 2, &g, NULL, NULL, &r) == PL_ERR_CONTEXT_FULL, "a huge message was accepted");
    CHECK(pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "mirror and cache disagree after a refusal");
    /* Generation that runs into the end of the context stops cleanly. */
    pl_chat_msg hi[] = {{"user", "Once upon a time"}};
    g.n_predict = -1;
    REQUIRE(pl_chat_complete(f.chat, hi, 1, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    CHECK(pl_ctx_pos(f.ctx) <= 128 && pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "pos %d", pl_ctx_pos(f.ctx));
    CHECK((r.finish == PL_CHAT_FINISH_LENGTH) == (pl_ctx_pos(f.ctx) == 128), "finish %d at pos %d", r.finish,
          pl_ctx_pos(f.ctx));
    pl_chat_result_free(&r);
    fixture_close(&f);
}

/* ------------------------------------------------------------- shift */

/* Layer 0's keys and values depend on their token and position only, so
 * after moving cached positions they must equal what the forward pass stores
 * for the same tokens at the new positions: [A B C] with C moved down over B
 * against a fresh [A C], and a fresh [A C] with C moved up against [A B C].
 * For NORM (llama) and NEOX (qwen2) rope, f16 and q8_0 caches. */
static double kv_row_diff(const pl_ctx *a, int pa, const pl_ctx *b, int pb, int v, double *scale) {
    const int GD = a->model->hp.n_head_kv * a->model->hp.head_dim;
    const quant_traits *tr = quant_get(a->kv_qt);
    float x[4096], y[4096];
    if (GD > 4096) return 1e9;
    const uint8_t *ca = v ? a->v_cache : a->k_cache, *cb = v ? b->v_cache : b->k_cache;
    tr->to_float(ca + (size_t)pa * a->kv_row_bytes, x, GD);
    tr->to_float(cb + (size_t)pb * b->kv_row_bytes, y, GD);
    double d = 0;
    for (int i = 0; i < GD; i++) {
        d = fmax(d, fabs((double)x[i] - y[i]));
        *scale = fmax(*scale, fabs((double)y[i]));
    }
    return d;
}

static void shift_case(const char *rel, int kv_type) {
    const char *path = shared_path(rel);
    if (!path) return;
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = 64;
    xp.n_threads = 2;
    xp.kv_type = kv_type;
    pl_ctx *abc = NULL, *ac = NULL, *moved = NULL;
    if (pl_ctx_new(m, &xp, &abc) || pl_ctx_new(m, &xp, &ac) || pl_ctx_new(m, &xp, &moved)) {
        CHECK(0, "%s: %s", rel, pl_last_error());
        goto out;
    }
    enum { NA = 5, NB = 9, NC = 11 };
    pl_token t[NA + NB + NC], t_ac[NA + NC];
    for (int i = 0; i < NA + NB + NC; i++) t[i] = (pl_token)(100 + (i * 7919) % 5000);
    memcpy(t_ac, t, sizeof(pl_token) * NA);
    memcpy(t_ac + NA, t + NA + NB, sizeof(pl_token) * NC);
    REQUIRE(pl_ctx_decode(abc, t, NA + NB + NC) == PL_OK && pl_ctx_decode(ac, t_ac, NA + NC) == PL_OK &&
                pl_ctx_decode(moved, t, NA + NB + NC) == PL_OK,
            "%s", pl_last_error());
    /* down: C from NA + NB to NA */
    REQUIRE(chat_ctx_shift(moved, NA + NB, NA, NC) == PL_OK, "%s", pl_last_error());
    const double tol = kv_type == PL_KV_Q8_0 ? 2e-2 : 2e-3;
    double sk = 1e-9, sv = 1e-9, dk = 0, dv = 0, unmoved = 0, s0 = 1e-9;
    for (int i = 0; i < NC; i++) {
        dk = fmax(dk, kv_row_diff(moved, NA + i, ac, NA + i, 0, &sk));
        dv = fmax(dv, kv_row_diff(moved, NA + i, ac, NA + i, 1, &sv));
        unmoved = fmax(unmoved, kv_row_diff(abc, NA + NB + i, ac, NA + i, 0, &s0)); /* keys at the old positions */
    }
    CHECK(dk / sk < tol && dv / sv < tol, "%s kv %d: moved down: keys off by %.2g, values by %.2g (relative)", rel, kv_type,
          dk / sk, dv / sv);
    CHECK(unmoved / s0 > 20 * tol, "%s: keys at other positions differ by only %.2g: the test cannot see rope", rel,
          unmoved / s0);
    /* A stays where it was */
    double sa = 1e-9, da = 0;
    for (int i = 0; i < NA; i++) da = fmax(da, kv_row_diff(moved, i, abc, i, 0, &sa));
    CHECK(da == 0, "%s: positions before the move changed", rel);
    /* up: a fresh [A C] with C moved to NA + NB equals [A B C]'s C */
    REQUIRE(pl_ctx_truncate(moved, 0) == PL_OK && pl_ctx_decode(moved, t_ac, NA + NC) == PL_OK, "%s", pl_last_error());
    REQUIRE(chat_ctx_shift(moved, NA, NA + NB, NC) == PL_OK, "%s", pl_last_error());
    sk = sv = 1e-9, dk = dv = 0;
    for (int i = 0; i < NC; i++) {
        dk = fmax(dk, kv_row_diff(moved, NA + NB + i, abc, NA + NB + i, 0, &sk));
        dv = fmax(dv, kv_row_diff(moved, NA + NB + i, abc, NA + NB + i, 1, &sv));
    }
    CHECK(dk / sk < tol && dv / sv < tol, "%s kv %d: moved up: keys off by %.2g, values by %.2g", rel, kv_type, dk / sk,
          dv / sv);
    fprintf(stderr, "  %s kv %s: moved keys within %.1e of the forward pass's (other positions: %.2f)\n", rel,
            kv_type == PL_KV_Q8_0 ? "q8_0" : "f16", dk / sk, unmoved / s0);
    CHECK(chat_ctx_shift(moved, 60, 0, 10) == PL_ERR_INVALID_ARG, "a range past the cache accepted");
out:
    pl_ctx_free(abc);
    pl_ctx_free(ac);
    pl_ctx_free(moved);
    pl_model_free(m);
}

static void test_kv_shift_matches_forward(void) {
    if (!shared_path(LLAMA)) SKIP("../shared/%s not found", LLAMA);
    shift_case(LLAMA, PL_KV_F16);
    shift_case(LLAMA, PL_KV_Q8_0);
    shift_case("models/kjv-qwen2-q8_0.gguf", PL_KV_F16);
    shift_case("models/kjv-qwen2-q8_0.gguf", PL_KV_Q8_0);
}

/* A conversation growing past the context, turn by turn, under "shift" and
 * under "drop-oldest" in step: both leave out the same turns, but shift
 * keeps the cached tokens of the turns that stay (reused, not evaluated),
 * and its mirror is still the rendering of what the context holds. */
static void shift_conversation(int with_sys) {
    pl_chat_params cp = pl_chat_default_params();
    cp.n_reserve = 16;
    cp.overflow = PL_CHAT_OVERFLOW_SHIFT;
    fixture f, g0;
    OPEN(&f, LLAMA, 128, &cp);
    cp.overflow = PL_CHAT_OVERFLOW_DROP_OLDEST;
    OPEN(&g0, LLAMA, 128, &cp);
    pl_chat_msg msgs[40];
    char *replies[20] = {0};
    int n = 0, shifted_turns = 0;
    if (with_sys) msgs[n++] = (pl_chat_msg){"system", "Be kind."};
    pl_chat_gen_params gp = greedy(8);
    for (int turn = 0; turn < 12 && n + 2 < 40; turn++) {
        static char asks[12][32];
        snprintf(asks[turn], sizeof asks[turn], turn % 2 ? "Dog %d?" : "Cat %d.", turn);
        msgs[n++] = (pl_chat_msg){"user", asks[turn]};
        pl_chat_result r, rd;
        REQUIRE(pl_chat_complete(f.chat, msgs, n, &gp, NULL, NULL, &r) == PL_OK, "turn %d: %s", turn, pl_last_error());
        REQUIRE(pl_chat_complete(g0.chat, msgs, n, &gp, NULL, NULL, &rd) == PL_OK, "turn %d: %s", turn, pl_last_error());
        CHECK(r.n_dropped == rd.n_dropped, "turn %d: shift dropped %d, drop-oldest %d", turn, r.n_dropped, rd.n_dropped);
        CHECK(pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "turn %d: mirror %d, cache %d", turn, pl_chat_n_cached(f.chat),
              pl_ctx_pos(f.ctx));
        if (r.n_dropped) {
            /* the cache kept the turns that stay: far more reused than the system prompt */
            CHECK(r.n_reused > r.n_prompt / 2 && r.timings.n_prompt < r.n_prompt - r.n_prompt / 2,
                  "turn %d: shift reused %d of %d prompt tokens (evaluated %d)", turn, r.n_reused, r.n_prompt,
                  r.timings.n_prompt);
            if (!shifted_turns)
                fprintf(stderr, "  %s system prompt, first overflow: %d messages dropped; shift reused %d of %d prompt tokens, drop-oldest %d\n",
                        with_sys ? "with a" : "without", r.n_dropped, r.n_reused, r.n_prompt, rd.n_reused);
            if (!shifted_turns)
                CHECK(rd.n_reused < r.n_reused, "turn %d: drop-oldest reused %d, shift %d", turn, rd.n_reused, r.n_reused);
            /* the mirror is the rendering of the system prompt and the kept turns */
            char *want = NULL;
            pl_chat_msg kept[40];
            int nk = 0;
            if (with_sys) kept[nk++] = msgs[0];
            for (int i = with_sys + r.n_dropped; i < n; i++) kept[nk++] = msgs[i];
            REQUIRE(pl_chat_template_apply(pl_chat_template(f.chat), kept, nk, 1, &want) == PL_OK, "%s", pl_last_error());
            CHECK(!strncmp(f.chat->text.p, want, strlen(want)), "turn %d: the mirror is not the kept conversation:\n[%s]\n[%s]",
                  turn, f.chat->text.p, want);
            free(want);
            shifted_turns++;
        }
        replies[turn] = r.text;
        r.text = NULL;
        msgs[n++] = (pl_chat_msg){"assistant", replies[turn]};
        pl_chat_result_free(&rd);
    }
    CHECK(shifted_turns >= 2, "only %d turns overflowed", shifted_turns);
    for (int i = 0; i < 20; i++) free(replies[i]);
    fixture_close(&f);
    fixture_close(&g0);
}

static void test_overflow_shift(void) {
    shift_conversation(1);
    shift_conversation(0); /* the BOS stays at position 0, the rest moves down to 1 */
}

typedef struct collect {
    chat_buf text;
    int calls, stop_after;
    pl_ctx *cancel_ctx;
} collect;

static int collect_cb(void *user, pl_token tok, const char *text, size_t len) {
    (void)tok;
    collect *c = user;
    chat_buf_put(&c->text, text, len);
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after;
}

static void test_stop_strings(void) {
    fixture f;
    OPEN(&f, LLAMA, 256, NULL);
    pl_chat_gen_params g = greedy(40);
    pl_chat_result full, cut;
    REQUIRE(pl_chat_complete_text(f.chat, "In the beginning", &g, NULL, NULL, &full) == PL_OK, "%s", pl_last_error());
    REQUIRE(full.len > 30, "short generation [%s]", full.text);
    /* A stop string from the middle of the free run (it spans tokens). */
    char stop[8];
    memcpy(stop, full.text + full.len / 2, 6);
    stop[6] = 0;
    const size_t first = (size_t)(strstr(full.text, stop) - full.text);
    const char *stops[] = {stop};
    g.stop = stops;
    g.n_stop = 1;
    collect c = {0};
    chat_buf_put(&c.text, "", 0);
    REQUIRE(pl_chat_complete_text(f.chat, "In the beginning", &g, collect_cb, &c, &cut) == PL_OK, "%s", pl_last_error());
    CHECK(cut.finish == PL_CHAT_FINISH_STOP, "finish %d", cut.finish);
    CHECK(cut.len == first && !strncmp(cut.text, full.text, first), "stop [%s]: got [%s] want the first %zu bytes of [%s]",
          stop, cut.text, first, full.text);
    CHECK(c.text.n == cut.len && !memcmp(c.text.p, cut.text, cut.len), "streamed [%s] != reply [%s]", c.text.p, cut.text);
    CHECK(pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "mirror and cache disagree");
    chat_buf_free(&c.text);
    pl_chat_result_free(&full);
    pl_chat_result_free(&cut);
    fixture_close(&f);
}

static void *cancel_thread(void *arg) {
    pl_ctx_cancel(arg);
    return NULL;
}

static int cancel_from_thread_cb(void *user, pl_token tok, const char *text, size_t len) {
    collect *c = user;
    collect_cb(user, tok, text, len);
    if (c->calls == 2) {
        pthread_t th;
        pthread_create(&th, NULL, cancel_thread, c->cancel_ctx);
        pthread_join(th, NULL);
    }
    return 0;
}

static void test_cancel(void) {
    fixture f;
    OPEN(&f, LLAMA, 256, NULL);
    pl_chat_msg msgs[] = {{"user", "Tell of Noah."}};
    pl_chat_gen_params g = greedy(50);
    collect c = {.stop_after = 3};
    pl_chat_result r;
    REQUIRE(pl_chat_complete(f.chat, msgs, 1, &g, collect_cb, &c, &r) == PL_OK, "%s", pl_last_error());
    CHECK(r.finish == PL_CHAT_FINISH_CANCELLED && r.n_gen == 3, "finish %d after %d tokens", r.finish, r.n_gen);
    CHECK(pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "mirror and cache disagree");
    pl_chat_result_free(&r);
    chat_buf_free(&c.text);
    collect c2 = {.cancel_ctx = f.ctx};
    REQUIRE(pl_chat_complete(f.chat, msgs, 1, &g, cancel_from_thread_cb, &c2, &r) == PL_OK, "%s", pl_last_error());
    CHECK(r.finish == PL_CHAT_FINISH_CANCELLED && r.n_gen < 50, "pl_ctx_cancel: finish %d after %d", r.finish, r.n_gen);
    CHECK(pl_chat_n_cached(f.chat) == pl_ctx_pos(f.ctx), "mirror and cache disagree");
    pl_chat_result_free(&r);
    chat_buf_free(&c2.text);
    /* and the chat goes on */
    REQUIRE(pl_chat_complete(f.chat, msgs, 1, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    CHECK(r.n_reused > 0, "nothing reused after a cancel");
    pl_chat_result_free(&r);
    fixture_close(&f);
}

static void test_save_load(void) {
    fixture a, b;
    OPEN(&a, LLAMA, 512, NULL);
    OPEN(&b, LLAMA, 512, NULL);
    pl_chat_msg msgs[4] = {{"system", "Answer in the words of the King James Bible."}, {"user", "Who was Moses?"}};
    pl_chat_gen_params g = greedy(10);
    pl_chat_result r;
    REQUIRE(pl_chat_complete(a.chat, msgs, 2, &g, NULL, NULL, &r) == PL_OK, "%s", pl_last_error());
    msgs[2] = (pl_chat_msg){"assistant", r.text};
    const char *path = tmp_path("conv.plchat");
    REQUIRE(pl_chat_save(a.chat, msgs, 3, path) == PL_OK, "%s", pl_last_error());
    pl_chat_msg *loaded = NULL;
    int n = 0;
    REQUIRE(pl_chat_load(b.chat, path, &loaded, &n) == PL_OK, "%s", pl_last_error());
    CHECK(n == 3, "%d messages", n);
    for (int i = 0; i < n && i < 3; i++)
        CHECK(!strcmp(loaded[i].role, msgs[i].role) && !strcmp(loaded[i].content, msgs[i].content), "message %d", i);
    free(loaded);
    CHECK(pl_chat_n_cached(b.chat) == pl_chat_n_cached(a.chat) && pl_ctx_pos(b.ctx) == pl_ctx_pos(a.ctx),
          "cached %d vs %d", pl_chat_n_cached(b.chat), pl_chat_n_cached(a.chat));
    /* The next turn on the loaded chat reuses as much, with the same result. */
    msgs[3] = (pl_chat_msg){"user", "And Aaron?"};
    g.n_predict = 0;
    pl_chat_result ra, rb;
    REQUIRE(pl_chat_complete(a.chat, msgs, 4, &g, NULL, NULL, &ra) == PL_OK, "%s", pl_last_error());
    REQUIRE(pl_chat_complete(b.chat, msgs, 4, &g, NULL, NULL, &rb) == PL_OK, "%s", pl_last_error());
    CHECK(rb.n_reused == ra.n_reused && rb.n_reused > 0, "reused %d vs %d", rb.n_reused, ra.n_reused);
    const int V = pl_model_n_vocab(a.model);
    CHECK(!memcmp(pl_ctx_logits(a.ctx, -1), pl_ctx_logits(b.ctx, -1), sizeof(float) * (size_t)V),
          "logits differ after loading");
    pl_chat_result_free(&r);
    pl_chat_result_free(&ra);
    pl_chat_result_free(&rb);

    /* Every truncation of the file is an error that leaves a usable chat. */
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp, "reopen");
    fseek(fp, 0, SEEK_END);
    const long size = ftell(fp);
    rewind(fp);
    char *bytes = malloc((size_t)size);
    REQUIRE(bytes && fread(bytes, 1, (size_t)size, fp) == (size_t)size, "read");
    fclose(fp);
    const char *cut = tmp_path("cut.plchat");
    int checked = 0;
    for (long len = 0; len < size; len += len < 400 ? 1 : 997) {
        fp = fopen(cut, "wb");
        fwrite(bytes, 1, (size_t)len, fp);
        fclose(fp);
        pl_chat_msg *m = NULL;
        pl_status st = pl_chat_load(b.chat, cut, &m, &n);
        CHECK(st != PL_OK && m == NULL, "a file cut to %ld of %ld bytes loaded", len, size);
        CHECK(pl_chat_n_cached(b.chat) == pl_ctx_pos(b.ctx), "mirror and cache disagree after a bad file");
        checked++;
    }
    /* a flipped byte in the cut list, and a wrong magic */
    bytes[0] ^= 1;
    fp = fopen(cut, "wb");
    fwrite(bytes, 1, (size_t)size, fp);
    fclose(fp);
    CHECK(pl_chat_load(b.chat, cut, NULL, NULL) == PL_ERR_FORMAT, "bad magic accepted");
    free(bytes);
    CHECK(checked > 400, "%d truncations", checked);
    fixture_close(&b);

    /* Another model's state is refused. */
    fixture s;
    OPEN(&s, STORIES, 128, NULL);
    CHECK(pl_chat_load(s.chat, path, NULL, NULL) != PL_OK, "a state of another model loaded");
    CHECK(pl_chat_n_cached(s.chat) == pl_ctx_pos(s.ctx), "mirror and cache disagree");
    fixture_close(&s);
    fixture_close(&a);
}

/* ------------------------------------------------------------ chat store */

static sqlite3 *raw_open(const char *path) {
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static long long raw_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static void test_store_basics(void) {
    const char *path = tmp_path("basics.db");
    store *s = NULL;
    REQUIRE(store_open(path, &s) == PL_OK, "%s", pl_last_error());
    int64_t c1 = 0, c2 = 0, m1 = 0;
    REQUIRE(store_chat_create(s, "", "kjv", &c1) == PL_OK && c1 > 0, "%s", pl_last_error());
    REQUIRE(store_chat_create(s, "second", "kjv", &c2) == PL_OK && c2 > c1, "%s", pl_last_error());
    store_msg u = {.role = "user", .content = "Où est le chat?\nSecond line"};
    store_msg a = {.role = "assistant", .content = "Ici.", .finish = "stop", .tokens = 3, .n_prompt = 12,
                   .prompt_ms = 1.5, .gen_ms = 7.25};
    REQUIRE(store_msg_add(s, c1, &u, &m1) == PL_OK && m1 > 0, "%s", pl_last_error());
    REQUIRE(store_msg_add(s, c1, &a, NULL) == PL_OK, "%s", pl_last_error());
    CHECK(store_msg_add(s, 9999, &u, NULL) == PL_ERR_INVALID_ARG, "a message for a missing chat was added");
    store_chat chat;
    store_msg *msgs = NULL;
    int n = 0;
    REQUIRE(store_chat_get(s, c1, &chat, &msgs, &n) == PL_OK, "%s", pl_last_error());
    CHECK(chat.id == c1 && !strcmp(chat.title, "Où est le chat?") && !strcmp(chat.model, "kjv") && chat.n_messages == 2,
          "chat [%s] [%s] %d", chat.title, chat.model, chat.n_messages);
    REQUIRE(n == 2, "%d messages", n);
    CHECK(!strcmp(msgs[0].role, "user") && !strcmp(msgs[0].content, u.content) && msgs[0].id == m1, "message 0");
    CHECK(!strcmp(msgs[1].role, "assistant") && !strcmp(msgs[1].content, "Ici.") && !strcmp(msgs[1].finish, "stop") &&
              msgs[1].tokens == 3 && msgs[1].n_prompt == 12 && msgs[1].prompt_ms == 1.5 && msgs[1].gen_ms == 7.25,
          "message 1 fields");
    store_chat_clear(&chat);
    store_msgs_free(msgs, n);
    store_chat *list = NULL;
    REQUIRE(store_chat_list(s, &list, &n) == PL_OK && n == 2, "%s", pl_last_error());
    CHECK(list[0].updated >= list[1].updated, "not most recent first");
    store_chats_free(list, n);
    int found = 0;
    REQUIRE(store_chat_rename(s, c2, "renamed", &found) == PL_OK && found, "%s", pl_last_error());
    REQUIRE(store_chat_get(s, c2, &chat, NULL, NULL) == PL_OK && !strcmp(chat.title, "renamed"), "rename");
    store_chat_clear(&chat);
    REQUIRE(store_chat_delete(s, c1, &found) == PL_OK && found, "%s", pl_last_error());
    REQUIRE(store_chat_delete(s, c1, &found) == PL_OK && !found, "deleted twice");
    REQUIRE(store_chat_get(s, c1, &chat, &msgs, &n) == PL_OK && chat.id == 0 && n == 0, "deleted chat still there");
    sqlite3 *db = raw_open(path);
    REQUIRE(db, "raw open");
    CHECK(raw_int(db, "SELECT count(*) FROM messages") == 0, "messages of a deleted chat remain");
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "wal"), "not in WAL mode");
    sqlite3_finalize(q);
    CHECK(raw_int(db, "PRAGMA user_version") == store_schema_latest(), "schema version");
    sqlite3_close(db);
    store_close(s);
}

static void test_store_migrations(void) {
    const char *path = tmp_path("v1.db");
    /* A database as the first schema version left it, with data. */
    sqlite3 *db = raw_open(path);
    REQUIRE(db, "raw open");
    REQUIRE(sqlite3_exec(db, store_migration_sql(1), NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
    REQUIRE(sqlite3_exec(db,
                         "PRAGMA user_version = 1;"
                         "INSERT INTO chats(id, title, model, created, updated) VALUES(7, 'old', 'm', 1, 2);"
                         "INSERT INTO messages(chat_id, role, content, tokens, prompt_ms, gen_ms, created)"
                         " VALUES(7, 'user', 'kept', 0, 0, 0, 1), (7, 'assistant', 'also kept', 5, 1, 2, 1);",
                         NULL, NULL, NULL) == SQLITE_OK,
            "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    store *s = NULL;
    REQUIRE(store_open(path, &s) == PL_OK, "%s", pl_last_error());
    store_chat chat;
    store_msg *msgs = NULL;
    int n = 0;
    REQUIRE(store_chat_get(s, 7, &chat, &msgs, &n) == PL_OK && chat.id == 7 && n == 2, "%s", pl_last_error());
    CHECK(!strcmp(msgs[1].content, "also kept") && msgs[1].tokens == 5 && !strcmp(msgs[1].finish, "") &&
              msgs[1].n_prompt == 0,
          "migrated message");
    store_chat_clear(&chat);
    store_msgs_free(msgs, n);
    store_msg m = {.role = "assistant", .content = "new", .finish = "length", .n_prompt = 4};
    CHECK(store_msg_add(s, 7, &m, NULL) == PL_OK, "%s", pl_last_error());
    store_close(s);
    db = raw_open(path);
    CHECK(raw_int(db, "PRAGMA user_version") == store_schema_latest(), "not migrated");
    /* A database from a newer build is refused, untouched. */
    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    CHECK(store_open(path, &s) == PL_ERR_UNSUPPORTED, "a newer schema was opened");
    CHECK(strstr(pl_last_error(), "99") != NULL, "message: %s", pl_last_error());
    db = raw_open(path);
    CHECK(raw_int(db, "PRAGMA user_version") == 99 && raw_int(db, "SELECT count(*) FROM messages") == 3, "touched");
    sqlite3_close(db);
}

/* A child writes messages, reporting each acknowledged id on a pipe; then
 * (mode 1) leaves a transaction open, or (mode 0) keeps writing. It is
 * killed with SIGKILL: every acknowledged message must survive intact and
 * the open transaction must not. */
static pid_t kill9_child(const char *path, int mode, int fd) {
    fflush(NULL);
    const pid_t pid = fork();
    if (pid != 0) return pid;
    store *s = NULL;
    int64_t chat = 0;
    if (store_open(path, &s) || store_chat_create(s, "crash", "m", &chat)) _exit(2);
    for (int i = 0;; i++) {
        if (mode == 1 && i == 64) {
            sqlite3 *db = raw_open(path);
            if (!db || sqlite3_exec(db, "BEGIN; INSERT INTO chats(title, model, created, updated)"
                                        " VALUES('uncommitted', 'm', 0, 0);",
                                    NULL, NULL, NULL) != SQLITE_OK)
                _exit(3);
            const int64_t ready = -1;
            if (write(fd, &ready, sizeof ready) != (ssize_t)sizeof ready) _exit(4);
            for (;;) pause();
        }
        char content[64];
        snprintf(content, sizeof content, "message %d", i);
        store_msg m = {.role = i % 2 ? "assistant" : "user", .content = content};
        int64_t id;
        if (store_msg_add(s, chat, &m, &id)) _exit(5);
        if (write(fd, &id, sizeof id) != (ssize_t)sizeof id) _exit(6);
    }
}

static void kill9_run(int mode) {
    char name[32];
    snprintf(name, sizeof name, "kill9-%d.db", mode);
    const char *path = tmp_path(name);
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    const pid_t pid = kill9_child(path, mode, fds[1]);
    REQUIRE(pid >= 0, "fork");
    close(fds[1]);
    int64_t acked[64], ready = 0;
    int n_acked = 0;
    while (n_acked < 64 && read(fds[0], &acked[n_acked], sizeof acked[0]) == (ssize_t)sizeof acked[0]) n_acked++;
    if (mode == 1 && read(fds[0], &ready, sizeof ready) != (ssize_t)sizeof ready) ready = 0;
    kill(pid, SIGKILL); /* mode 0: in the middle of its next write */
    int status;
    waitpid(pid, &status, 0);
    close(fds[0]);
    REQUIRE(n_acked == 64 && (mode == 0 || ready == -1), "mode %d: the child acknowledged %d messages (exit %d)", mode,
            n_acked, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    store *s = NULL;
    REQUIRE(store_open(path, &s) == PL_OK, "%s", pl_last_error());
    store_chat chat;
    store_msg *msgs = NULL;
    int n = 0;
    REQUIRE(store_chat_get(s, 1, &chat, &msgs, &n) == PL_OK && chat.id == 1, "%s", pl_last_error());
    CHECK(mode == 0 ? n >= 64 : n == 64, "mode %d: %d messages survived, 64 were acknowledged", mode, n);
    for (int i = 0; i < 64 && i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "message %d", i);
        CHECK(msgs[i].id == acked[i] && !strcmp(msgs[i].content, want), "message %d: id %lld [%s]", i,
              (long long)msgs[i].id, msgs[i].content);
    }
    store_chat_clear(&chat);
    store_msgs_free(msgs, n);
    store_close(s);
    sqlite3 *db = raw_open(path);
    REQUIRE(db, "raw open");
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "ok"), "integrity");
    sqlite3_finalize(q);
    CHECK(raw_int(db, "SELECT count(*) FROM chats WHERE title = 'uncommitted'") == 0, "an uncommitted row survived");
    sqlite3_close(db);
}

static void test_store_kill9(void) {
    kill9_run(0);
    kill9_run(1);
}

/* ------------------------------------------------------------- server memory */

/* `serve`'s memory figure is the library's plan (what `pocketllm plan`
 * prints): model + one context equal pl_plan_file's total for the same
 * options, each further slot adds exactly the KV cache and scratch the
 * engine then allocates, and a --mem-budget below the figure is refused
 * before any context is made. */
static void test_serve_memory_is_the_plan(void) {
    const char *path = shared_path(STORIES);
    if (!path) SKIP("%s not in ../shared", STORIES);
    store *st = NULL;
    REQUIRE(store_open(tmp_path("serve.db"), &st) == PL_OK, "%s", pl_last_error());
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 2;
    pl_plan p;
    REQUIRE(pl_plan_file(path, NULL, &cp, &p) == PL_OK, "%s", pl_last_error());
    const uint64_t per_slot = (uint64_t)(p.kv_bytes + p.scratch_bytes);
    {
        pl_model *m = NULL;
        pl_ctx *c = NULL;
        REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
        if (pl_ctx_new(m, &cp, &c) == PL_OK)
            CHECK(pl_ctx_memory_bytes(c) == per_slot, "pl_ctx_memory_bytes %llu, plan KV + scratch %llu",
                  (unsigned long long)pl_ctx_memory_bytes(c), (unsigned long long)per_slot);
        else
            CHECK(0, "%s", pl_last_error());
        pl_ctx_free(c);
        pl_model_free(m);
    }
    for (int n = 1; n <= 3; n += 2) {
        serve_engine_params ep = {.model_path = path, .n_slots = n, .n_ctx = 128, .n_threads = 2 * n, .max_queue = 4};
        serve_engine *e = NULL;
        const uint64_t blocks0 = mem_total_kind(MEM_KV) + mem_total_kind(MEM_SCRATCH);
        REQUIRE(serve_engine_new(&ep, st, &e) == PL_OK, "%d slots: %s", n, pl_last_error());
        const uint64_t blocks = mem_total_kind(MEM_KV) + mem_total_kind(MEM_SCRATCH) - blocks0;
        serve_memory m;
        serve_engine_memory(e, &m);
        CHECK(m.model_bytes == (uint64_t)p.total_bytes - per_slot, "%d slots: model %llu, plan %lld - %llu", n,
              (unsigned long long)m.model_bytes, (long long)p.total_bytes, (unsigned long long)per_slot);
        if (n == 1)
            CHECK(m.model_bytes + m.ctx_bytes == (uint64_t)p.total_bytes, "model + context %llu, plan total %lld",
                  (unsigned long long)(m.model_bytes + m.ctx_bytes), (long long)p.total_bytes);
        CHECK(blocks == per_slot * (uint64_t)n && m.ctx_bytes >= blocks && m.ctx_bytes - blocks < (1u << 20),
              "%d slots: contexts %llu, allocated KV + scratch %llu (plan %llu each)", n, (unsigned long long)m.ctx_bytes,
              (unsigned long long)blocks, (unsigned long long)per_slot);
        CHECK(m.plan_bytes == m.model_bytes + m.ctx_bytes + m.overhead_bytes && m.budget_bytes == 0, "sum");
        serve_engine_free(e);
        /* a budget one byte short: refused, nothing allocated */
        ep.mem_budget = m.plan_bytes - 1;
        const uint64_t kv0 = mem_total_kind(MEM_KV);
        CHECK(serve_engine_new(&ep, st, &e) == PL_ERR_BUDGET && !e, "%d slots: a budget below the plan accepted", n);
        CHECK(strstr(pl_last_error(), "--mem-budget") != NULL, "message: %s", pl_last_error());
        CHECK(mem_total_kind(MEM_KV) == kv0, "a refused engine allocated a KV cache");
    }
    store_close(st);
}

int main(void) {
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/pl_test_chat_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_templates_match_llamacpp);
    RUN(test_templates_other_references);
    RUN(test_templates_properties);
    RUN(test_template_from_gguf);
    RUN(test_kv_prefix_reuse);
    RUN(test_overflow_refuse);
    RUN(test_overflow_drop_oldest);
    RUN(test_kv_shift_matches_forward);
    RUN(test_overflow_shift);
    RUN(test_stop_strings);
    RUN(test_cancel);
    RUN(test_save_load);
    RUN(test_store_basics);
    RUN(test_store_migrations);
    RUN(test_store_kill9);
    RUN(test_serve_memory_is_the_plan);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
    TEST_END();
}
