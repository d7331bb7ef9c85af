/*
 * `pocketllm serve`: an OpenAI-compatible HTTP server (libmicrohttpd, one
 * thread per connection), JSON via jansson, chats kept in SQLite (store.h).
 *
 *   request.c  request bodies -> serve_req, validated (the fuzzed parser)
 *   engine.c   slots (one pl_ctx + pl_chat each) fed by one FIFO job queue
 *   http.c     routes, auth, limits, JSON and server-sent-event responses
 *   web_assets (generated from tools/web/ at build time) the chat page
 *
 * Ownership: a serve_job is shared by the HTTP thread that made it and the
 * slot that runs it (reference counted); its reply text only grows.
 */
#ifndef PL_SERVE_H
#define PL_SERVE_H

#include "pocketllm.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---------------------------------------------------------------- requests */

typedef enum serve_kind {
    SERVE_CHAT,         /* POST /v1/chat/completions */
    SERVE_COMPLETION,   /* POST /v1/completions */
    SERVE_LLAMA,        /* POST /completion (llama.cpp's server) */
    SERVE_CHAT_MESSAGE, /* POST /v1/chats/{id}/messages: one user message for a stored chat */
    SERVE_CHAT_CREATE   /* POST /v1/chats */
} serve_kind;

#define SERVE_MAX_STOP 4
#define SERVE_MAX_MESSAGES 4096

typedef struct serve_req {
    serve_kind kind;
    char *model;                 /* requested model id, NULL when absent */
    pl_chat_msg *msgs;           /* SERVE_CHAT: the conversation (strings owned) */
    int n_msgs;
    char *prompt;                /* SERVE_COMPLETION, SERVE_LLAMA */
    char *content;               /* SERVE_CHAT_MESSAGE */
    char *title, *system;        /* SERVE_CHAT_CREATE */
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    int n_predict;               /* -1: the server's default */
    int stream, include_usage;
    int ignore_eos;              /* llama.cpp's extension: generate past end-of-text */
    pl_sampler_params sampling;
    int has_seed;
} serve_req;

typedef struct serve_err {
    int status;          /* HTTP status */
    const char *type;    /* OpenAI error type */
    const char *code;    /* OpenAI error code or NULL */
    char param[48];      /* the offending field, "" when none */
    char message[320];
} serve_err;

/* Parse and validate a request body. Returns 0, or -1 with err filled (a 4xx). */
int serve_req_parse(serve_kind kind, const char *body, size_t len, serve_req *out, serve_err *err);
void serve_req_free(serve_req *r);
/* Fill err (returns -1, for `return serve_errf(...)`). */
int serve_errf(serve_err *err, int status, const char *type, const char *code, const char *param, const char *fmt,
               ...) __attribute__((format(printf, 6, 7)));
/* Copy s[0, n) into out replacing invalid UTF-8 with U+FFFD; NUL-terminated,
 * malloc'd (NULL on allocation failure). */
char *serve_utf8_clean(const char *s, size_t n, size_t *out_len);

/* ------------------------------------------------------------------ engine */

/* The memory plan's allowance for everything besides the model and the slots'
 * contexts: a base (SQLite page cache, request bodies, the page) plus, per
 * connection MHD may hold at once, its thread's touched stack and buffers. */
#define SERVE_MAX_CONNECTIONS 64
#define SERVE_OVERHEAD_BYTES ((16ull << 20) + SERVE_MAX_CONNECTIONS * (256ull << 10))

typedef enum serve_job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE } serve_job_state;

typedef struct serve_job {
    /* input, fixed once queued */
    int raw;                     /* a raw prompt instead of messages */
    const pl_chat_msg *msgs;     /* borrowed from `req` / `owned_msgs` below */
    int n_msgs;
    const char *prompt;
    pl_chat_gen_params gen;
    int64_t chat_id;             /* a stored chat: the reply is added to it */
    serve_req *req;              /* owned: what msgs/prompt/stop point into */
    store_msg *owned_msgs;       /* owned: a stored chat's history */
    int n_owned;
    pl_chat_msg *owned_view;
    /* output, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job_state state;
    char *text;                  /* the reply so far (grows) */
    size_t n_text, cap_text;
    int n_gen;
    pl_status status;            /* when done */
    char errmsg[512];
    pl_chat_result res;          /* counts (text not kept here) */
    int64_t reply_id;            /* stored reply's message id */
    atomic_int cancel;
    int refs;
    int slot;                    /* running on this slot, -1 otherwise (engine mu) */
    struct serve_job *next;
} serve_job;

typedef struct serve_engine serve_engine;

typedef struct serve_engine_params {
    const char *model_path;
    int n_slots;
    int n_ctx;
    int n_threads;               /* in all; split between the slots */
    int max_queue;
    const char *template_name;   /* NULL: the model's */
    pl_chat_overflow overflow;
    const char *kv_dir;          /* save/restore stored chats' KV state here (NULL: off) */
    uint64_t mem_budget;         /* bytes; 0 = unchecked */
    int kv_type;                 /* pl_kv_type of every slot's KV cache */
} serve_engine_params;

typedef struct serve_memory {
    uint64_t model_bytes, ctx_bytes, overhead_bytes, plan_bytes, budget_bytes, rss_bytes;
    int slots;
} serve_memory;

pl_status serve_engine_new(const serve_engine_params *p, store *st, serve_engine **out);
/* Cancel every job, refuse new ones and join the slots (idempotent; the
 * engine stays valid for serve_engine_cancel and the info calls). */
void serve_engine_stop(serve_engine *e);
void serve_engine_free(serve_engine *e);
const pl_model *serve_engine_model(const serve_engine *e);
const char *serve_engine_template(const serve_engine *e);
int serve_engine_n_ctx(const serve_engine *e);
void serve_engine_memory(const serve_engine *e, serve_memory *m);
void serve_engine_load(serve_engine *e, int *busy, int *queued);

serve_job *serve_job_new(void);
void serve_job_release(serve_job *j);
/* Queue a job (takes a reference); PL_ERR_BUDGET when the queue is full. */
pl_status serve_engine_submit(serve_engine *e, serve_job *j);
/* Ask a job to stop (from any thread); a running one is cancelled at once. */
void serve_engine_cancel(serve_engine *e, serve_job *j);
/* Delete a stored chat's KV state file, if any. */
void serve_engine_forget_chat(serve_engine *e, int64_t chat_id);

/* -------------------------------------------------------------------- http */

typedef struct serve_http_params {
    const char *host;
    int port;                    /* 0: any free port */
    const char *api_key;         /* NULL: no key */
    const char *model_id;
    size_t max_body;
    int default_n_predict;
} serve_http_params;

typedef struct serve_http serve_http;

pl_status serve_http_start(const serve_http_params *p, serve_engine *e, store *st, serve_http **out);
int serve_http_port(const serve_http *h);
void serve_http_stop(serve_http *h);

/* ------------------------------------------------------- web page (generated) */

typedef struct serve_asset {
    const char *path;            /* "/", "/app.js", ... */
    const char *mime;
    const unsigned char *data;
    size_t len;
} serve_asset;

extern const serve_asset serve_assets[];
extern const int serve_n_assets;

#endif
