/*
 * `pocketllm quantize IN.gguf OUT.gguf TYPE`: convert a model to another file
 * type (recipes in src/quant/quant_recipe.c, the work in
 * src/model/quantize_model.c). Progress goes to stderr: one redrawn line with
 * a bar on a terminal, one line per tensor otherwise; the summary to stdout.
 */
#include "cli.h"

#include "../src/model/quantize_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void qz_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm quantize IN.gguf OUT.gguf TYPE [options]\n"
            "  Writes OUT.gguf with IN's metadata and tensors converted to TYPE; norms and\n"
            "  biases stay F32, and the K-quant mixtures give sensitive tensors more bits.\n"
            "options:\n"
            "  -t, --threads N       worker threads (default: all CPUs)\n"
            "      --pure            TYPE for every quantizable tensor (no mixture, output too)\n"
            "      --allow-requantize  accept an already quantized input (quality suffers)\n"
            "      --reference       reference quantizers everywhere: the exact bytes\n"
            "                        llama-quantize writes (default: the scale search for\n"
            "                        the K-quants, where it measured better)\n"
            "      --search          the scale search for every type that has one\n"
            "  -q, --quiet           no progress\n"
            "types:\n");
    for (int i = 0; quant_recipe_at(i); i++) {
        const quant_recipe *r = quant_recipe_at(i);
        fprintf(fp, "  %-7s %2d  %s\n", r->name, (int)r->ftype, r->summary);
    }
}

typedef struct qz_state {
    int tty;
} qz_state;

static void qz_fmt_time(char *buf, size_t cap, double ms) {
    const double s = ms / 1000.0;
    if (s < 60) snprintf(buf, cap, "%.1fs", s);
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

static int qz_progress(void *user, const quant_progress *p) {
    const qz_state *qs = user;
    char el[32], eta[32], bar[21];
    const double frac = p->total_in ? (double)p->done_in / (double)p->total_in : 1.0;
    qz_fmt_time(el, sizeof el, p->elapsed_ms);
    qz_fmt_time(eta, sizeof eta, frac > 0 ? p->elapsed_ms * (1.0 - frac) / frac : 0.0);
    const int fill = (int)(frac * 20 + 0.5);
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    const char *from = quant_get(p->from)->name, *to = quant_get(p->to)->name;
    if (qs->tty) {
        fprintf(stderr, "\r\033[K[%s] %4d/%-4d %-26.26s %5s -> %-5s %8.2f MiB  %s, ETA %s", bar, p->index, p->count,
                p->name, from, to, p->bytes_out / 1048576.0, el, eta);
        if (p->index == p->count) fputc('\n', stderr);
    } else {
        fprintf(stderr, "[%4d/%4d] %-32s %5s -> %-5s %9.3f -> %9.3f MiB%s  %s, ETA %s\n", p->index, p->count, p->name,
                from, to, p->bytes_in / 1048576.0, p->bytes_out / 1048576.0, p->fell_back ? " (fallback)" : "", el, eta);
    }
    if (qs->tty && p->fell_back)
        fprintf(stderr, "\r\033[K%s: rows of this tensor do not fit %s blocks; wrote %s\n", p->name,
                quant_get(p->wanted)->name, to);
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0, quiet = 0;
    quant_model_params p = quant_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { qz_usage(stdout); return 0; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { p.n_threads = atoi(v); i++; }
        else if (!strcmp(a, "--pure")) p.pure = true;
        else if (!strcmp(a, "--allow-requantize")) p.allow_requantize = true;
        else if (!strcmp(a, "--reference")) p.method = QM_REFERENCE;
        else if (!strcmp(a, "--search")) p.method = QM_SEARCH;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (a[0] != '-' && n_pos < 3) pos[n_pos++] = a;
        else {
            fprintf(stderr, "pocketllm quantize: unknown or incomplete option '%s'\n", a);
            qz_usage(stderr);
            return 2;
        }
    }
    if (n_pos != 3) {
        qz_usage(stderr);
        return 2;
    }
    if (!(p.recipe = quant_recipe_find(pos[2]))) {
        fprintf(stderr, "pocketllm quantize: unknown type '%s'\n", pos[2]);
        qz_usage(stderr);
        return 2;
    }
    qz_state qs = {.tty = isatty(2)};
    if (!quiet) {
        p.progress = qz_progress;
        p.progress_user = &qs;
    }
    const double t0 = pl_time_ms();
    if (quant_model_file(pos[0], pos[1], &p)) return cli_fail("quantize");
    FILE *in = fopen(pos[0], "rb"), *out = fopen(pos[1], "rb");
    long in_size = -1, out_size = -1;
    if (in && !fseek(in, 0, SEEK_END)) in_size = ftell(in);
    if (out && !fseek(out, 0, SEEK_END)) out_size = ftell(out);
    if (in) fclose(in);
    if (out) fclose(out);
    printf("quantized %s -> %s (%s%s): %.2f MiB -> %.2f MiB in %.1f s\n", pos[0], pos[1], p.recipe->name,
           p.pure ? ", pure" : "", in_size / 1048576.0, out_size / 1048576.0, (pl_time_ms() - t0) / 1000.0);
    return 0;
}
