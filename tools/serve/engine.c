/*
 * The generation engine of `pocketllm serve`: n slots, each a thread with its
 * own pl_ctx and pl_chat, fed from one FIFO queue, so requests run in arrival
 * order and at most n at a time (the memory plan is the library's plan of the
 * model and a context, plus n - 1 more contexts and the server's allowance;
 * the queue holds requests, not contexts). A slot keeps its KV cache between jobs:
 * a follow-up turn on the same slot evaluates only its new tokens.
 *
 * Locks: engine mu (queue, slot->job, job->slot) before job mu (job output).
 * A job is cancelled through its flag (checked per token) and, when running,
 * pl_ctx_cancel on its slot's context — only while that slot still runs it.
 */
#include "serve.h"

#include "../../src/core/core.h"
#include "../../src/plan/plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct serve_slot {
    serve_engine *e;
    int idx;
    pl_ctx *ctx;
    pl_chat *chat;
    pthread_t th;
    int started;
    serve_job *job;        /* engine mu */
    int64_t cached_chat;   /* stored chat whose conversation the cache holds (0: none) */
} serve_slot;

struct serve_engine {
    pl_model *model;
    store *st;
    char *kv_dir;
    serve_slot *slots;
    int n_slots, max_queue, n_ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job *head, *tail;
    int n_queued, stopping;
    serve_memory mem;
};

serve_job *serve_job_new(void) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 1;
    j->slot = -1;
    j->gen = pl_chat_default_gen_params();
    return j;
}

void serve_job_release(serve_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    const int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    free(j->text);
    if (j->req) {
        serve_req_free(j->req);
        free(j->req);
    }
    store_msgs_free(j->owned_msgs, j->n_owned);
    free(j->owned_view);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Mark a job finished (caller holds no job lock). */
static void job_finish(serve_job *j, pl_status st, const char *msg, const pl_chat_result *res) {
    pthread_mutex_lock(&j->mu);
    j->status = st;
    if (st) snprintf(j->errmsg, sizeof j->errmsg, "%s", msg ? msg : "failed");
    if (res) {
        j->res = *res;
        j->res.text = NULL;
    }
    j->state = JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static int slot_on_token(void *user, pl_token tok, const char *text, size_t len) {
    (void)tok;
    serve_job *j = user;
    pthread_mutex_lock(&j->mu);
    if (j->n_text + len + 1 > j->cap_text) {
        size_t cap = j->cap_text ? j->cap_text : 1024;
        while (cap < j->n_text + len + 1) cap *= 2;
        char *p = realloc(j->text, cap);
        if (!p) {
            pthread_mutex_unlock(&j->mu);
            return 1; /* stop: out of memory */
        }
        j->text = p;
        j->cap_text = cap;
    }
    memcpy(j->text + j->n_text, text, len);
    j->n_text += len;
    j->text[j->n_text] = 0;
    j->n_gen++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return atomic_load(&j->cancel);
}

static void slot_kv_path(const serve_engine *e, int64_t chat_id, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/chat-%lld.kv", e->kv_dir, (long long)chat_id);
}

static const char *finish_name(pl_chat_finish f) {
    return f == PL_CHAT_FINISH_LENGTH ? "length" : f == PL_CHAT_FINISH_CANCELLED ? "cancelled" : "stop";
}

/* Run job j on slot s; the outcome goes to st/msg/res for slot_main, which
 * frees the slot before it tells the waiter (so a client that reads /health
 * right after its answer sees the slot idle). */
static pl_status slot_run(serve_slot *s, serve_job *j, char msg[512], pl_chat_result *res_out) {
    serve_engine *e = s->e;
    if (atomic_load(&j->cancel)) {
        snprintf(msg, 512, "cancelled before it started");
        return PL_ERR_CANCELLED;
    }
    char path[4096];
    pthread_mutex_lock(&e->mu);
    const int64_t cached = s->cached_chat;
    s->cached_chat = 0;
    pthread_mutex_unlock(&e->mu);
    if (j->chat_id && e->kv_dir && cached != j->chat_id) {
        slot_kv_path(e, j->chat_id, path, sizeof path);
        if (access(path, R_OK) == 0 && pl_chat_load(s->chat, path, NULL, NULL) != PL_OK) {
            fprintf(stderr, "pocketllm serve: ignoring saved state: %s\n", pl_last_error());
            pl_chat_reset(s->chat);
        }
    }
    pl_chat_result res = {0};
    pl_status st = j->raw ? pl_chat_complete_text(s->chat, j->prompt, &j->gen, slot_on_token, j, &res)
                          : pl_chat_complete(s->chat, j->msgs, j->n_msgs, &j->gen, slot_on_token, j, &res);
    if (st) snprintf(msg, 512, "%s", pl_last_error());
    if (!st && j->chat_id) {
        pthread_mutex_lock(&e->mu);
        s->cached_chat = j->chat_id;
        pthread_mutex_unlock(&e->mu);
        /* The reply is acknowledged once it is committed: store it before the
         * stream ends. A stopped reply is kept too (the user saw it). */
        if (res.len > 0 || res.finish != PL_CHAT_FINISH_CANCELLED) {
            store_msg m = {.role = "assistant",
                           .content = res.text,
                           .finish = (char *)finish_name(res.finish),
                           .tokens = res.n_gen,
                           .n_prompt = res.n_prompt,
                           .prompt_ms = res.timings.prompt_ms,
                           .gen_ms = res.timings.gen_ms};
            int64_t id = 0;
            if (store_msg_add(e->st, j->chat_id, &m, &id) != PL_OK) {
                st = PL_ERR_IO;
                snprintf(msg, 512, "%s", pl_last_error());
            } else {
                pthread_mutex_lock(&j->mu);
                j->reply_id = id;
                pthread_mutex_unlock(&j->mu);
            }
        }
        if (e->kv_dir) {
            slot_kv_path(e, j->chat_id, path, sizeof path);
            if (pl_chat_save(s->chat, NULL, 0, path) != PL_OK)
                fprintf(stderr, "pocketllm serve: cannot save the KV state: %s\n", pl_last_error());
        }
    }
    if (st) pl_chat_result_free(&res);
    else *res_out = res;
    return st;
}

static void *slot_main(void *arg) {
    serve_slot *s = arg;
    serve_engine *e = s->e;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && !e->head) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        serve_job *j = e->head;
        e->head = j->next;
        if (!e->head) e->tail = NULL;
        j->next = NULL;
        e->n_queued--;
        j->slot = s->idx;
        s->job = j;
        pthread_mutex_lock(&j->mu);
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_unlock(&e->mu);

        char msg[512] = "";
        pl_chat_result res;
        memset(&res, 0, sizeof res);
        const pl_status st = slot_run(s, j, msg, &res);

        pthread_mutex_lock(&e->mu);
        s->job = NULL;
        j->slot = -1;
        pthread_mutex_unlock(&e->mu);
        job_finish(j, st, msg, st ? NULL : &res);
        if (!st) pl_chat_result_free(&res);
        serve_job_release(j); /* the queue's reference */
    }
    return NULL;
}

static double serve_mib(uint64_t n) { return (double)n / 1048576.0; }

static uint64_t engine_rss(void) {
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp) return 0;
    unsigned long long size = 0, res = 0;
    const int ok = fscanf(fp, "%llu %llu", &size, &res) == 2;
    fclose(fp);
    return ok ? res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

pl_status serve_engine_new(const serve_engine_params *p, store *st, serve_engine **out) {
    *out = NULL;
    if (p->n_slots < 1 || p->n_slots > 64) return pl_fail(PL_ERR_INVALID_ARG, "--parallel must be 1..64");
    serve_engine *e = calloc(1, sizeof *e);
    if (!e) return pl_fail(PL_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->st = st;
    e->max_queue = p->max_queue > 0 ? p->max_queue : 64;
    pl_status s = PL_OK;
    if (p->kv_dir && !(e->kv_dir = strdup(p->kv_dir))) {
        s = pl_fail(PL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((s = pl_model_load(p->model_path, NULL, &e->model))) goto fail;
    e->slots = calloc((size_t)p->n_slots, sizeof *e->slots);
    if (!e->slots) {
        s = pl_fail(PL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    e->n_slots = p->n_slots;
    const int threads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = p->n_ctx;
    xp.kv_type = p->kv_type;
    xp.n_threads = threads / p->n_slots > 0 ? threads / p->n_slots : 1;
    pl_chat_params cp = pl_chat_default_params();
    cp.template_name = p->template_name;
    cp.overflow = p->overflow;
    /* the library's plan of the model and one slot's context (what `pocketllm
     * plan` prints for these options); each further slot adds its KV cache,
     * scratch and threads. Checked before any context is made. */
    pl_plan pl;
    if ((s = pl_plan_model(e->model, &xp, &pl))) goto fail;
    const uint64_t per_slot = (uint64_t)(pl.kv_bytes + pl.scratch_bytes);
    const uint64_t more_threads = plan_overhead_bytes(pl.n_threads * e->n_slots) - plan_overhead_bytes(pl.n_threads);
    e->mem.model_bytes = (uint64_t)pl.total_bytes - per_slot; /* weights resident, tokenizer, runtime */
    e->mem.ctx_bytes = per_slot * (uint64_t)e->n_slots + more_threads;
    e->mem.slots = e->n_slots;
    e->mem.overhead_bytes = SERVE_OVERHEAD_BYTES;
    e->mem.plan_bytes = e->mem.model_bytes + e->mem.ctx_bytes + e->mem.overhead_bytes;
    e->mem.budget_bytes = p->mem_budget;
    if (p->mem_budget && e->mem.plan_bytes > p->mem_budget) {
        s = pl_fail(PL_ERR_BUDGET,
                    "the plan needs %.1f MiB (model %.1f + %d contexts of %d tokens %.1f + server %.1f) but --mem-budget "
                    "is %.1f MiB",
                    serve_mib(e->mem.plan_bytes), serve_mib(e->mem.model_bytes), e->n_slots, pl.n_ctx,
                    serve_mib(e->mem.ctx_bytes), serve_mib(e->mem.overhead_bytes), serve_mib(p->mem_budget));
        goto fail;
    }
    for (int i = 0; i < e->n_slots; i++) {
        serve_slot *sl = &e->slots[i];
        sl->e = e;
        sl->idx = i;
        if ((s = pl_ctx_new(e->model, &xp, &sl->ctx)) || (s = pl_chat_new(sl->ctx, &cp, &sl->chat))) goto fail;
    }
    e->n_ctx = pl_ctx_n_ctx(e->slots[0].ctx);
    for (int i = 0; i < e->n_slots; i++) {
        if (pthread_create(&e->slots[i].th, NULL, slot_main, &e->slots[i]) != 0) {
            s = pl_fail(PL_ERR_NOMEM, "cannot start slot thread %d", i);
            goto fail;
        }
        e->slots[i].started = 1;
    }
    *out = e;
    return PL_OK;
fail:
    serve_engine_free(e);
    return s;
}

void serve_engine_stop(serve_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    serve_job *q = e->head;
    e->head = e->tail = NULL;
    e->n_queued = 0;
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].job) {
            atomic_store(&e->slots[i].job->cancel, 1);
            pl_ctx_cancel(e->slots[i].ctx);
        }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    while (q) {
        serve_job *next = q->next;
        job_finish(q, PL_ERR_CANCELLED, "the server is shutting down", NULL);
        serve_job_release(q);
        q = next;
    }
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].started) {
            pthread_join(e->slots[i].th, NULL);
            e->slots[i].started = 0;
        }
}

void serve_engine_free(serve_engine *e) {
    if (!e) return;
    serve_engine_stop(e);
    for (int i = 0; i < e->n_slots; i++) {
        pl_chat_free(e->slots[i].chat);
        pl_ctx_free(e->slots[i].ctx);
    }
    free(e->slots);
    pl_model_free(e->model);
    free(e->kv_dir);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

const pl_model *serve_engine_model(const serve_engine *e) { return e->model; }
const char *serve_engine_template(const serve_engine *e) { return pl_chat_template(e->slots[0].chat); }
int serve_engine_n_ctx(const serve_engine *e) { return e->n_ctx; }

void serve_engine_memory(const serve_engine *e, serve_memory *m) {
    *m = e->mem;
    m->rss_bytes = engine_rss();
}

void serve_engine_load(serve_engine *e, int *busy, int *queued) {
    pthread_mutex_lock(&e->mu);
    int b = 0;
    for (int i = 0; i < e->n_slots; i++) b += e->slots[i].job != NULL;
    *busy = b;
    *queued = e->n_queued;
    pthread_mutex_unlock(&e->mu);
}

pl_status serve_engine_submit(serve_engine *e, serve_job *j) {
    pthread_mutex_lock(&e->mu);
    pl_status st = PL_OK;
    if (e->stopping) st = pl_fail(PL_ERR_CANCELLED, "the server is shutting down");
    else if (e->n_queued >= e->max_queue)
        st = pl_fail(PL_ERR_BUDGET, "%d requests are already waiting; try again later", e->n_queued);
    if (!st) {
        pthread_mutex_lock(&j->mu);
        j->refs++;
        j->state = JOB_QUEUED;
        pthread_mutex_unlock(&j->mu);
        j->next = NULL;
        if (e->tail) e->tail->next = j;
        else e->head = j;
        e->tail = j;
        e->n_queued++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

void serve_engine_cancel(serve_engine *e, serve_job *j) {
    atomic_store(&j->cancel, 1);
    serve_job *dequeued = NULL;
    pthread_mutex_lock(&e->mu);
    if (j->slot >= 0 && e->slots[j->slot].job == j) {
        pl_ctx_cancel(e->slots[j->slot].ctx);
    } else {
        /* Still queued? Take it out so it stops holding a place. */
        for (serve_job **pp = &e->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
            if (*pp == j) {
                *pp = j->next;
                if (e->tail == j) e->tail = prev;
                j->next = NULL;
                e->n_queued--;
                dequeued = j;
                break;
            }
    }
    pthread_mutex_unlock(&e->mu);
    if (dequeued) {
        job_finish(dequeued, PL_ERR_CANCELLED, "cancelled while queued", NULL);
        serve_job_release(dequeued);
    }
}

void serve_engine_forget_chat(serve_engine *e, int64_t chat_id) {
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].cached_chat == chat_id) e->slots[i].cached_chat = 0;
    pthread_mutex_unlock(&e->mu);
    if (e->kv_dir) {
        char path[4096];
        slot_kv_path(e, chat_id, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "pocketllm serve: cannot remove %s\n", path);
    }
}
