/*
 * `pocketllm chat`: an interactive conversation in the terminal. Each line is
 * a user message; the reply streams as it is generated, and only the new
 * turn is evaluated (pl_chat keeps the KV cache). Ctrl-C stops a reply and
 * returns to the prompt; Ctrl-D or /quit leaves. /save and /load keep the
 * conversation with its KV state in a file.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void chat_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm chat -m FILE [options]\n"
            "  -m, --model FILE       GGUF model\n"
            "  -s, --system TEXT      system prompt\n"
            "      --template NAME    chat template (default: from the model); one of:\n"
            "                        ");
    for (int i = 0; pl_chat_template_name(i); i++) fprintf(fp, " %s", pl_chat_template_name(i));
    fprintf(fp,
            "\n"
            "      --load FILE        start from a conversation saved with /save\n"
            "  -n, --n-predict N      most tokens per reply (default 512; -1 = until the context is full)\n"
            "  -c, --ctx N            context size in tokens (default: model's, at most 4096)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "      --kv-type T        KV cache type: f16 (default) or q8_0 (--load needs the type it was saved with)\n"
            "      --overflow P       a conversation longer than the context: drop-oldest (default), refuse,\n"
            "                         or shift (drop-oldest keeping the cache of the turns that stay)\n"
            "      --temp T           temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K  --top-p P  --min-p P  --repeat-penalty R  --seed S   (as in `pocketllm run`)\n"
            "      --ignore-eos       keep generating past end-of-text tokens (until -n or a stop string)\n"
            "  -v, --verbose          token counts and speed after each reply (stderr)\n"
            "commands at the prompt:\n"
            "  /reset        forget the conversation (the system prompt stays)\n"
            "  /save FILE    save the conversation and its KV cache\n"
            "  /load FILE    load a saved conversation (its KV cache too: nothing is evaluated again)\n"
            "  /help         this list            /quit   leave (or Ctrl-D)\n"
            "Ctrl-C stops a reply without leaving.\n");
}

typedef struct chat_history {
    pl_chat_msg *msgs; /* strings owned */
    int n, cap;
} chat_history;

static int history_add(chat_history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        pl_chat_msg *m = realloc(h->msgs, sizeof *m * (size_t)cap);
        if (!m) return 0;
        h->msgs = m;
        h->cap = cap;
    }
    char *r = strdup(role), *c = strdup(content);
    if (!r || !c) {
        free(r);
        free(c);
        return 0;
    }
    h->msgs[h->n++] = (pl_chat_msg){r, c};
    return 1;
}

static void history_truncate(chat_history *h, int n) {
    while (h->n > n) {
        h->n--;
        free((char *)h->msgs[h->n].role);
        free((char *)h->msgs[h->n].content);
    }
}

static volatile sig_atomic_t g_chat_interrupted;
static pl_ctx *volatile g_chat_ctx; /* set while a reply is generated */

static void chat_on_sigint(int sig) {
    (void)sig;
    g_chat_interrupted = 1;
    pl_ctx *c = g_chat_ctx;
    if (c) pl_ctx_cancel(c); /* an atomic store: async-signal-safe */
}

static int chat_on_token(void *user, pl_token tok, const char *text, size_t len) {
    (void)user;
    (void)tok;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static const char *chat_arg(const char *line, const char *cmd) {
    const size_t n = strlen(cmd);
    if (strncmp(line, cmd, n) || (line[n] && line[n] != ' ')) return NULL;
    line += n;
    while (*line == ' ') line++;
    return line;
}

/* One reply to the conversation so far; 0 ok (also when stopped), 1 error. */
static int chat_reply(pl_chat *chat, pl_ctx *ctx, chat_history *h, const pl_chat_gen_params *gp, int verbose) {
    pl_chat_result res;
    g_chat_interrupted = 0;
    g_chat_ctx = ctx;
    pl_status st = pl_chat_complete(chat, h->msgs, h->n, gp, chat_on_token, NULL, &res);
    g_chat_ctx = NULL;
    if (st) {
        printf("\n");
        fprintf(stderr, "pocketllm chat: %s\n", pl_last_error());
        history_truncate(h, h->n - 1); /* the message got no reply: take it back */
        return st == PL_ERR_CONTEXT_FULL || st == PL_ERR_INVALID_ARG ? 0 : 1;
    }
    if (res.finish == PL_CHAT_FINISH_CANCELLED) printf(" [stopped]");
    else if (res.finish == PL_CHAT_FINISH_LENGTH) printf(" [length]");
    printf("\n");
    if (res.len == 0 && res.finish == PL_CHAT_FINISH_CANCELLED) history_truncate(h, h->n - 1);
    else if (!history_add(h, "assistant", res.text)) {
        pl_chat_result_free(&res);
        fprintf(stderr, "pocketllm chat: out of memory\n");
        return 1;
    }
    if (res.n_dropped) fprintf(stderr, "(the %d oldest messages no longer fit the context and were left out)\n",
                               res.n_dropped);
    if (verbose) {
        const pl_timings *t = &res.timings;
        fprintf(stderr, "[prompt %d tokens: %d cached, %d evaluated in %.1f ms | reply %d tokens in %.1f ms, %.1f tok/s]\n",
                res.n_prompt, res.n_reused, t->n_prompt, t->prompt_ms, res.n_gen, t->gen_ms,
                t->gen_ms > 0 ? t->n_gen * 1e3 / t->gen_ms : 0.0);
    }
    pl_chat_result_free(&res);
    return 0;
}

static int chat_load(pl_chat *chat, chat_history *h, const char *path) {
    pl_chat_msg *msgs = NULL;
    int n = 0;
    if (pl_chat_load(chat, path, &msgs, &n)) {
        fprintf(stderr, "pocketllm chat: %s\n", pl_last_error());
        return 0;
    }
    history_truncate(h, 0);
    int ok = 1;
    for (int i = 0; ok && i < n; i++) ok = history_add(h, msgs[i].role, msgs[i].content);
    free(msgs);
    if (!ok) {
        fprintf(stderr, "pocketllm chat: out of memory\n");
        return 0;
    }
    printf("(loaded %d messages, %d tokens cached)\n", n, pl_chat_n_cached(chat));
    return 1;
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *load_path = NULL;
    pl_ctx_params xp = pl_ctx_default_params();
    pl_chat_params cp = pl_chat_default_params();
    pl_chat_gen_params gp = pl_chat_default_gen_params();
    gp.n_predict = 512;
    cp.overflow = PL_CHAT_OVERFLOW_DROP_OLDEST;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            chat_usage(stdout);
            return 0;
        } else if (ARG("-m", "--model")) model_path = v;
        else if (ARG("-s", "--system")) system = v;
        else if (ARG("--template", "--template")) cp.template_name = v;
        else if (ARG("--load", "--load")) load_path = v;
        else if (ARG("-n", "--n-predict")) gp.n_predict = atoi(v);
        else if (ARG("-c", "--ctx")) xp.n_ctx = atoi(v);
        else if (ARG("-t", "--threads")) xp.n_threads = atoi(v);
        else if (ARG("--kv-type", "--kv-type")) {
            if (cli_kv_type(a, v, &xp.kv_type)) return 2;
        }
        else if (ARG("--temp", "--temp")) gp.sampling.temp = (float)atof(v);
        else if (ARG("--top-k", "--top-k")) gp.sampling.top_k = atoi(v);
        else if (ARG("--top-p", "--top-p")) gp.sampling.top_p = (float)atof(v);
        else if (ARG("--min-p", "--min-p")) gp.sampling.min_p = (float)atof(v);
        else if (ARG("--repeat-penalty", "--repeat-penalty")) gp.sampling.repeat_penalty = (float)atof(v);
        else if (ARG("--seed", "--seed")) gp.sampling.seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "--ignore-eos")) gp.ignore_eos = 1;
        else if (ARG("--overflow", "--overflow")) {
            if (!strcmp(v, "refuse")) cp.overflow = PL_CHAT_OVERFLOW_REFUSE;
            else if (!strcmp(v, "drop-oldest")) cp.overflow = PL_CHAT_OVERFLOW_DROP_OLDEST;
            else if (!strcmp(v, "shift")) cp.overflow = PL_CHAT_OVERFLOW_SHIFT;
            else {
                fprintf(stderr, "pocketllm chat: --overflow is refuse, drop-oldest or shift, not '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "pocketllm chat: unknown or incomplete option '%s'\n", a);
            chat_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!model_path) {
        fprintf(stderr, "pocketllm chat: -m FILE is required\n");
        chat_usage(stderr);
        return 2;
    }
    int rc = 1;
    pl_model *model = NULL;
    pl_ctx *ctx = NULL;
    pl_chat *chat = NULL;
    chat_history h = {0};
    char *line = NULL;
    size_t line_cap = 0;
    if (pl_model_load(model_path, NULL, &model)) return cli_fail("load");
    if (pl_ctx_new(model, &xp, &ctx)) {
        cli_fail("context");
        goto out;
    }
    if (pl_chat_new(ctx, &cp, &chat)) {
        cli_fail("chat");
        goto out;
    }
    fprintf(stderr, "pocketllm chat: template %s, context %d tokens. /help lists the commands.\n",
            pl_chat_template(chat), pl_ctx_n_ctx(ctx));
    if (system && system[0] && !history_add(&h, "system", system)) goto nomem;
    if (load_path && !chat_load(chat, &h, load_path)) goto out;

    /* No SA_RESTART: Ctrl-C at the prompt interrupts the read. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = chat_on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    for (;;) {
        printf("> ");
        fflush(stdout);
        errno = 0;
        g_chat_interrupted = 0;
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) {
            if (g_chat_interrupted || errno == EINTR) {
                clearerr(stdin);
                printf("\n(Ctrl-C stops a reply; /quit or Ctrl-D leaves)\n");
                continue;
            }
            printf("\n");
            break; /* end of input */
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        const char *arg;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/help")) {
            chat_usage(stdout);
            continue;
        }
        if (!strcmp(line, "/reset")) {
            history_truncate(&h, system && system[0] ? 1 : 0);
            pl_chat_reset(chat);
            printf("(conversation forgotten)\n");
            continue;
        }
        if ((arg = chat_arg(line, "/save"))) {
            if (!*arg) printf("(usage: /save FILE)\n");
            else if (pl_chat_save(chat, h.msgs, h.n, arg)) fprintf(stderr, "pocketllm chat: %s\n", pl_last_error());
            else printf("(saved %d messages, %d tokens cached, to %s)\n", h.n, pl_chat_n_cached(chat), arg);
            continue;
        }
        if ((arg = chat_arg(line, "/load"))) {
            if (!*arg) printf("(usage: /load FILE)\n");
            else chat_load(chat, &h, arg);
            continue;
        }
        if (line[0] == '/' && line[1] != '/' && !strchr(line, ' ')) {
            printf("(unknown command %s: /help lists them; start a message with // to send a slash)\n", line);
            continue;
        }
        if (!history_add(&h, "user", line[0] == '/' && line[1] == '/' ? line + 1 : line)) goto nomem;
        if (chat_reply(chat, ctx, &h, &gp, verbose)) goto out;
    }
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, "pocketllm chat: out of memory\n");
out:
    signal(SIGINT, SIG_DFL);
    free(line);
    history_truncate(&h, 0);
    free(h.msgs);
    pl_chat_free(chat);
    pl_ctx_free(ctx);
    pl_model_free(model);
    return rc;
}
