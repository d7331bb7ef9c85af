/*
 * `pocketllm train`: full fine-tuning, LoRA, or training from scratch, with
 * AdamW, a warmup + cosine schedule, gradient accumulation and clipping, a
 * memory plan checked against --budget (activation checkpointing when it
 * must), a progress line (step, loss, tokens/s, ETA) and GGUF checkpoints
 * that `pocketllm run` loads. Held-out loss (--val) is measured before the
 * first step and at every evaluation, on the same windows each time.
 */
#include "cli.h"
#include "../src/train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void train_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm train (--model BASE.gguf | --vocab VOCAB.gguf --n-embd C ...) --data TEXT [options]\n"
            "  -m, --model FILE      base model to fine-tune (any tensor type)\n"
            "      --lora R          train rank-R LoRA adapters; the base stays frozen (and mapped)\n"
            "      --lora-alpha A    LoRA scale numerator (default 2R: scale 2)\n"
            "      --merge           with --lora: write the merged model instead of the adapter\n"
            "  from scratch (llama architecture; tokenizer from --vocab, see train-tokenizer):\n"
            "      --vocab FILE      --n-embd C  --n-layer L  --n-head H  [--n-head-kv G]  --n-ff F\n"
            "      --tied            output layer shares the embedding matrix\n"
            "  data:\n"
            "      --data FILE       training text (tokenized with the model's tokenizer)\n"
            "      --data-ids FILE   or training token ids (whitespace-separated)\n"
            "      --val FILE        held-out text: loss before training and at each evaluation\n"
            "      --sequential      windows in file order instead of random (reproducible tests)\n"
            "  schedule:\n"
            "      --steps N         optimizer steps (default 100)\n"
            "  -b, --batch B         sequences per micro-batch (default 4)\n"
            "  -c, --ctx T           tokens per sequence (default 128)\n"
            "      --accum K         micro-batches per step (gradient accumulation, default 1)\n"
            "      --lr X            peak learning rate (default 1e-3; 2e-4 is gentler for fine-tuning)\n"
            "      --min-lr X        floor of the decay (default lr/10)\n"
            "      --warmup N        linear warmup steps (default steps/20)\n"
            "      --linear          linear decay instead of cosine\n"
            "      --wd X            AdamW weight decay on matrices (default 0.01)\n"
            "      --beta1 X --beta2 X --adam-eps X   (defaults 0.9, 0.999, 1e-8)\n"
            "      --clip X          clip the global gradient norm (default 1; 0 = off)\n"
            "  memory and speed:\n"
            "      --budget SIZE     bytes the plan may use (e.g. 512M, 2G); checkpointing turns on if needed\n"
            "      --checkpointing   recompute activations in backward always\n"
            "  -t, --threads N       (default: all cores)\n"
            "  output:\n"
            "  -o, --out FILE        model (or adapter) GGUF to write (default: trained.gguf)\n"
            "      --out-type T      f32 | f16 | bf16 | q8_0 for matrices (default f32)\n"
            "      --save-every N    also write --out every N steps\n"
            "      --eval-every N    held-out loss every N steps (default: 10 times per run)\n"
            "      --eval-batches K  micro-batches of held-out text per evaluation (default 8)\n"
            "      --seed S          data order and initialization (default 1)\n"
            "      --dump-grads FILE write the first step's gradients as GGUF (tests)\n"
            "  -q, --quiet           no progress line\n");
}

typedef struct train_args {
    const char *model, *vocab, *data, *data_ids, *val, *out, *dump_grads;
    int lora, merge, sequential, steps, batch, ctx, accum, warmup, linear, ckpt, threads, save_every;
    int eval_every, eval_batches, quiet;
    float lora_alpha, lr, min_lr, wd, beta1, beta2, adam_eps, clip;
    uint64_t budget, seed;
    uint32_t out_type;
    train_init init;
} train_args;

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return 0;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return 0;
    *out = (uint64_t)(v * mul);
    return 1;
}

static int parse_args(int argc, char **argv, train_args *a) {
    memset(a, 0, sizeof *a);
    a->steps = 100, a->batch = 4, a->ctx = 128, a->accum = 1, a->warmup = -1, a->threads = 0;
    a->eval_every = -1, a->eval_batches = 8, a->lr = 1e-3f, a->min_lr = -1, a->wd = 0.01f;
    a->beta1 = 0.9f, a->beta2 = 0.999f, a->adam_eps = 1e-8f, a->clip = 1.0f, a->seed = 1;
    a->out = "trained.gguf", a->out_type = QT_F32, a->ckpt = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(x, y) ((!strcmp(s, x) || !strcmp(s, y)) && v && ++i)
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { train_usage(stdout); return 1; }
        else if (ARG("-m", "--model")) a->model = v;
        else if (ARG("--vocab", "--vocab")) a->vocab = v;
        else if (ARG("--lora", "--lora")) a->lora = atoi(v);
        else if (ARG("--lora-alpha", "--lora-alpha")) a->lora_alpha = (float)atof(v);
        else if (!strcmp(s, "--merge")) a->merge = 1;
        else if (ARG("--n-embd", "--n-embd")) a->init.n_embd = atoi(v);
        else if (ARG("--n-layer", "--n-layer")) a->init.n_layer = atoi(v);
        else if (ARG("--n-head", "--n-head")) a->init.n_head = atoi(v);
        else if (ARG("--n-head-kv", "--n-head-kv")) a->init.n_head_kv = atoi(v);
        else if (ARG("--n-ff", "--n-ff")) a->init.n_ff = atoi(v);
        else if (!strcmp(s, "--tied")) a->init.tied = true;
        else if (ARG("--data", "--data")) a->data = v;
        else if (ARG("--data-ids", "--data-ids")) a->data_ids = v;
        else if (ARG("--val", "--val")) a->val = v;
        else if (!strcmp(s, "--sequential")) a->sequential = 1;
        else if (ARG("--steps", "--steps")) a->steps = atoi(v);
        else if (ARG("-b", "--batch")) a->batch = atoi(v);
        else if (ARG("-c", "--ctx")) a->ctx = atoi(v);
        else if (ARG("--accum", "--accum")) a->accum = atoi(v);
        else if (ARG("--lr", "--lr")) a->lr = (float)atof(v);
        else if (ARG("--min-lr", "--min-lr")) a->min_lr = (float)atof(v);
        else if (ARG("--warmup", "--warmup")) a->warmup = atoi(v);
        else if (!strcmp(s, "--linear")) a->linear = 1;
        else if (ARG("--wd", "--wd")) a->wd = (float)atof(v);
        else if (ARG("--beta1", "--beta1")) a->beta1 = (float)atof(v);
        else if (ARG("--beta2", "--beta2")) a->beta2 = (float)atof(v);
        else if (ARG("--adam-eps", "--adam-eps")) a->adam_eps = (float)atof(v);
        else if (ARG("--clip", "--clip")) a->clip = (float)atof(v);
        else if (ARG("--budget", "--budget")) {
            if (!parse_size(v, &a->budget)) { fprintf(stderr, "pocketllm train: bad size '%s'\n", v); return 2; }
        } else if (!strcmp(s, "--checkpointing")) a->ckpt = 1;
        else if (ARG("-t", "--threads")) a->threads = atoi(v);
        else if (ARG("-o", "--out")) a->out = v;
        else if (ARG("--out-type", "--out-type")) {
            int t = quant_type_from_name(v);
            if (t < 0) { fprintf(stderr, "pocketllm train: unknown type '%s'\n", v); return 2; }
            a->out_type = (uint32_t)t;
        } else if (ARG("--save-every", "--save-every")) a->save_every = atoi(v);
        else if (ARG("--eval-every", "--eval-every")) a->eval_every = atoi(v);
        else if (ARG("--eval-batches", "--eval-batches")) a->eval_batches = atoi(v);
        else if (ARG("--seed", "--seed")) a->seed = strtoull(v, NULL, 0);
        else if (ARG("--dump-grads", "--dump-grads")) a->dump_grads = v;
        else if (!strcmp(s, "-q") || !strcmp(s, "--quiet")) a->quiet = 1;
        else {
            fprintf(stderr, "pocketllm train: unknown or incomplete option '%s'\n", s);
            train_usage(stderr);
            return 2;
        }
#undef ARG
    }
    const char *why = NULL;
    if (!a->model == !a->vocab) why = "give exactly one of --model (fine-tune) and --vocab (from scratch)";
    else if (!a->data == !a->data_ids) why = "give exactly one of --data and --data-ids";
    else if (a->vocab && (a->init.n_embd <= 0 || a->init.n_layer <= 0 || a->init.n_head <= 0 || a->init.n_ff <= 0))
        why = "from scratch needs --n-embd, --n-layer, --n-head and --n-ff";
    else if (a->vocab && a->lora) why = "--lora needs a --model to adapt";
    else if (a->merge && !a->lora) why = "--merge goes with --lora";
    else if (a->steps < 1 || a->batch < 1 || a->ctx < 2 || a->accum < 1 || a->lora < 0 || !(a->lr > 0))
        why = "steps, batch, accum and lr must be positive, ctx at least 2";
    if (why) {
        fprintf(stderr, "pocketllm train: %s\n", why);
        train_usage(stderr);
        return 2;
    }
    if (a->min_lr < 0) a->min_lr = a->lr / 10;
    if (a->warmup < 0) a->warmup = a->steps / 20;
    if (a->eval_every < 0) a->eval_every = a->steps >= 10 ? a->steps / 10 : 1;
    if (a->lora && !(a->lora_alpha > 0)) a->lora_alpha = 2.0f * a->lora;
    a->init.n_ctx = a->ctx;
    a->init.seed = a->seed;
    return 0;
}

/* Mean nll over the same eval_batches sequential windows of the val data. */
static pl_status eval_loss(train_graph *g, const train_data *val, const train_args *a, int32_t bos, int32_t *tok,
                           int32_t *tgt, double *out) {
    double nll = 0;
    int64_t count = 0;
    for (int i = 0; i < a->eval_batches; i++) {
        train_data_batch(val, a->batch, a->ctx, NULL, i, bos, tok, tgt);
        double n;
        int64_t c;
        pl_status st = train_graph_eval(g, tok, tgt, &n, &c, NULL);
        if (st) return st;
        nll += n, count += c;
    }
    *out = count ? nll / count : 0;
    return PL_OK;
}

static void fmt_time(double s, char *buf, size_t cap) {
    if (s < 0 || s > 1e7) s = 0;
    const int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%dh%02dm", t / 3600, t / 60 % 60);
    else snprintf(buf, cap, "%dm%02ds", t / 60, t % 60);
}

static void progress(const train_args *a, int step, double loss, float lr, double tok_s, double elapsed_s, bool tty) {
    char eta[32], el[32];
    fmt_time(elapsed_s / step * (a->steps - step), eta, sizeof eta);
    fmt_time(elapsed_s, el, sizeof el);
    enum { W = 20 };
    char bar[W + 1];
    const int fill = (int)((int64_t)W * step / a->steps);
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    fprintf(stderr, "%sstep %*d/%d [%s] loss %.4f  lr %.2e  %.0f tok/s  %s elapsed  ETA %s%s", tty ? "\r" : "",
            (int)log10(a->steps) + 1, step, a->steps, bar, loss, (double)lr, tok_s, el, eta, tty ? "  " : "\n");
    fflush(stderr);
}

static pl_status save_outputs(const train_model *m, const train_args *a) {
    if (m->mode == TRAIN_LORA && !a->merge) return train_save_lora(m, a->out);
    return train_save_model(m, a->out, a->out_type);
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    rc = 1;
    pl_model *base = NULL;
    train_model *m = NULL;
    train_graph *g = NULL;
    train_data data = {0}, val = {0};
    int32_t *tok = NULL, *tgt = NULL;
    pl_status st;
    const bool tty = isatty(2) && !a.quiet;

    pl_model_params mp = pl_model_default_params();
    mp.vocab_only = a.vocab != NULL;
    if (pl_model_load(a.model ? a.model : a.vocab, &mp, &base)) { cli_fail("load"); goto out; }
    if (a.data) st = train_data_from_text(base, a.data, &data);
    else st = train_data_from_ids(a.data_ids, pl_model_n_vocab(base), &data);
    if (st) { cli_fail("data"); goto out; }
    if (a.val && (st = train_data_from_text(base, a.val, &val))) { cli_fail("validation data"); goto out; }
    if (data.n < a.ctx + 1) {
        fprintf(stderr, "pocketllm train: %lld tokens of data is less than one window of %d\n", (long long)data.n, a.ctx + 1);
        goto out;
    }
    if (a.vocab) st = train_model_new(base, &a.init, &m);
    else if (a.lora) st = train_model_lora(base, a.lora, a.lora_alpha, a.seed, a.ctx, &m);
    else st = train_model_from_base(base, a.ctx, &m);
    if (st) { cli_fail("model"); goto out; }
    base = NULL; /* owned by m */

    train_plan plan;
    if (train_plan_fit(m, a.batch, a.ctx, a.threads, a.budget, a.ckpt, &plan)) { cli_fail("memory plan"); goto out; }
    char desc[256];
    train_plan_describe(&plan, desc, sizeof desc);
    const model_hparams *hp = &m->hp;
    fprintf(stderr, "model: %s, %d layers, embd %d, heads %d/%d, ffn %d, vocab %d; %s: %lld trainable parameters\n",
            m->base->arch_name[0] ? m->base->arch_name : "llama", hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv,
            hp->n_ff, hp->n_vocab, m->mode == TRAIN_LORA ? "LoRA" : "full", (long long)m->n_trainable);
    fprintf(stderr, "data: %lld tokens%s; batch %d x %d tokens x %d accumulated = %d tokens per step\n",
            (long long)data.n, a.val ? " (+ held-out text)" : "", a.batch, a.ctx, a.accum, a.batch * a.ctx * a.accum);
    fprintf(stderr, "memory plan: %s\n", desc);
    if (train_graph_new(m, &plan, &g)) { cli_fail("memory"); goto out; }
    const size_t N = (size_t)a.batch * a.ctx;
    tok = malloc(sizeof *tok * N);
    tgt = malloc(sizeof *tgt * N);
    if (!tok || !tgt) { fprintf(stderr, "pocketllm train: out of memory\n"); goto out; }

    const int32_t bos = pl_model_bos(m->base);
    train_opt opt = train_opt_default();
    opt.lr = a.lr, opt.min_lr = a.min_lr, opt.warmup = a.warmup, opt.steps = a.steps, opt.cosine = !a.linear;
    opt.beta1 = a.beta1, opt.beta2 = a.beta2, opt.eps = a.adam_eps, opt.weight_decay = a.wd, opt.clip = a.clip;
    double vloss = 0;
    if (a.val) {
        if (eval_loss(g, &val, &a, bos, tok, tgt, &vloss)) { cli_fail("eval"); goto out; }
        fprintf(stderr, "held-out loss before training: %.4f (ppl %.2f)\n", vloss, exp(vloss));
    }
    uint64_t rng = a.seed * 0x2545f4914f6cdd1dull + 1;
    const double t0 = pl_time_ms();
    double loss = 0;
    for (int step = 0; step < a.steps; step++) {
        train_zero_grads(m);
        double nll = 0;
        int64_t count = 0;
        for (int k = 0; k < a.accum; k++) {
            train_data_batch(&data, a.batch, a.ctx, &rng, a.sequential ? (int64_t)step * a.accum + k : -1, bos, tok, tgt);
            double n;
            int64_t c;
            /* every target of a text window is valid, so the mean over the step is sum / (accum * N) */
            if (train_graph_step(g, tok, tgt, 1.0f / (float)(a.accum * N), &n, &c)) { cli_fail("step"); goto out; }
            nll += n, count += c;
        }
        if (a.dump_grads && step == 0 && train_save_grads(m, a.dump_grads)) { cli_fail("gradients"); goto out; }
        const float lr = train_lr_at(&opt, step);
        train_adamw_step(m, &opt, step + 1, lr);
        loss = nll / (double)count;
        if (!isfinite(loss)) {
            fprintf(stderr, "\npocketllm train: the loss is not finite at step %d; try a lower --lr\n", step + 1);
            goto out;
        }
        const double el = (pl_time_ms() - t0) / 1e3;
        const int done = step + 1;
        const bool eval_now = a.val && (done % a.eval_every == 0 || done == a.steps);
        const int log_every = a.steps >= 100 ? a.steps / 100 : 1;
        if (!a.quiet && (tty || done % log_every == 0 || done == a.steps || eval_now))
            progress(&a, done, loss, lr, (double)done * a.accum * N / el, el, tty);
        if (eval_now) {
            if (eval_loss(g, &val, &a, bos, tok, tgt, &vloss)) { cli_fail("eval"); goto out; }
            fprintf(stderr, "%sheld-out loss after step %d: %.4f (ppl %.2f)\n", tty ? "\n" : "", done, vloss, exp(vloss));
        }
        if (a.save_every > 0 && done % a.save_every == 0 && done < a.steps && save_outputs(m, &a)) {
            cli_fail("checkpoint");
            goto out;
        }
    }
    if (tty) fputc('\n', stderr);
    const double secs = (pl_time_ms() - t0) / 1e3;
    if (save_outputs(m, &a)) { cli_fail("save"); goto out; }
    fprintf(stderr, "trained %d steps in %.1f s (%.0f tokens/s); final loss %.4f%s; wrote %s\n", a.steps, secs,
            (double)a.steps * a.accum * N / secs, loss, "", a.out);
    if (a.val) printf("final train loss %.4f, held-out loss %.4f\n", loss, vloss);
    else printf("final train loss %.4f\n", loss);
    rc = 0;
out:
    free(tok);
    free(tgt);
    train_graph_free(g);
    train_model_free(m);
    pl_model_free(base);
    train_data_free(&data);
    train_data_free(&val);
    return rc;
}
