/*
 * HTTP side of `pocketllm serve` on libmicrohttpd (a thread per connection,
 * so a handler may block while its job runs). Routes:
 *   GET  /  /app.js  /style.css       the chat page (embedded at build time)
 *   GET  /health                      status, slots, queue, memory plan and RSS
 *   GET  /v1/models[/ID]              the one model
 *   POST /v1/chat/completions         OpenAI chat (stream: server-sent events)
 *   POST /v1/completions              OpenAI text completion
 *   POST /completion                  llama.cpp's completion endpoint
 *   GET|POST /v1/chats                stored chats: list, create
 *   GET|DELETE|PATCH /v1/chats/ID     one chat with its messages; delete; rename
 *   POST /v1/chats/ID/messages        add a user message and stream the reply
 * Bodies over max_body are 413 (and not kept); with an API key every
 * /v1 route and /completion needs "Authorization: Bearer KEY". Request bodies
 * must be application/json (other web pages cannot send that without a CORS
 * preflight, which is never granted), and on a loopback address the Host
 * header must name this machine (no DNS rebinding). While a reply
 * is pending, the client's socket is polled: a client that went away cancels
 * its generation.
 */
#include "serve.h"

#include "../../src/core/core.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

struct serve_http {
    struct MHD_Daemon *d;
    serve_engine *e;
    store *st;
    char *api_key;
    char *model_id;
    size_t max_body;
    int n_predict;
    int port;
    int loopback;            /* bound to 127.0.0.0/8 or ::1 */
    int64_t started;
    atomic_uint_fast64_t id_counter;
};

/* One HTTP request (MHD's per-request pointer). */
typedef struct http_req {
    char *body;
    size_t n, cap;
    int reject;        /* HTTP status the request gets instead of being routed, 0 = none */
    uint64_t discarded; /* body bytes thrown away after a rejection */
} http_req;

/* ------------------------------------------------------------- responses */

static enum MHD_Result http_send(struct MHD_Connection *c, int status, const char *type, char *body, size_t len,
                                 enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

/* Send a JSON value (reference stolen). */
static enum MHD_Result http_json(struct MHD_Connection *c, int status, json_t *v) {
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s) return http_send(c, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37,
                             MHD_RESPMEM_PERSISTENT);
    return http_send(c, status, "application/json", s, strlen(s), MHD_RESPMEM_MUST_FREE);
}

static json_t *http_error_json(const serve_err *err) {
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", err->message, "type",
                     err->type ? err->type : "invalid_request_error", "param",
                     err->param[0] ? json_string(err->param) : json_null(), "code",
                     err->code ? json_string(err->code) : json_null());
}

static enum MHD_Result http_error(struct MHD_Connection *c, const serve_err *err) {
    return http_json(c, err->status, http_error_json(err));
}

static enum MHD_Result http_errorf(struct MHD_Connection *c, int status, const char *type, const char *code,
                                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result http_errorf(struct MHD_Connection *c, int status, const char *type, const char *code,
                                   const char *fmt, ...) {
    serve_err err = {.status = status, .type = type, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return http_error(c, &err);
}

/* ----------------------------------------------------------------- helpers */

/* Is the client still there? (A closed socket reads EOF; a peer reset or
 * hang-up shows in revents.) */
static int http_client_alive(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 1;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 0;
    if (p.revents & POLLIN) {
        char b;
        if (recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return 0;
    }
    return 1;
}

/* Wait until the job has output (want_done = 0) or has finished, watching the
 * client; 0 when the client went away (the job is then cancelled). */
static int http_wait_job(serve_http *h, struct MHD_Connection *c, serve_job *j, int want_done) {
    pthread_mutex_lock(&j->mu);
    while (j->state != JOB_DONE && (want_done || j->n_text == 0)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0) {
            pthread_mutex_unlock(&j->mu);
            if (!http_client_alive(c)) {
                serve_engine_cancel(h->e, j);
                return 0;
            }
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return 1;
}

static void http_new_id(serve_http *h, const char *prefix, char *buf, size_t cap) {
    const uint64_t n = atomic_fetch_add(&h->id_counter, 1);
    snprintf(buf, cap, "%s%08llx%06llx", prefix, (unsigned long long)(h->started & 0xffffffff),
             (unsigned long long)(n & 0xffffff));
}

static const char *http_finish_reason(pl_chat_finish f) { return f == PL_CHAT_FINISH_LENGTH ? "length" : "stop"; }

static json_t *http_usage(const pl_chat_result *r) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", r->n_prompt, "completion_tokens", r->n_gen,
                     "total_tokens", r->n_prompt + r->n_gen, "prompt_tokens_details", "cached_tokens", r->n_reused);
}

static json_t *http_timings(const pl_chat_result *r) {
    const pl_timings *t = &r->timings;
    return json_pack("{s:i, s:f, s:f, s:i, s:f, s:f}", "prompt_n", t->n_prompt, "prompt_ms", t->prompt_ms,
                     "prompt_per_second", t->prompt_ms > 0 ? t->n_prompt * 1e3 / t->prompt_ms : 0.0, "predicted_n",
                     t->n_gen, "predicted_ms", t->gen_ms, "predicted_per_second",
                     t->gen_ms > 0 ? t->n_gen * 1e3 / t->gen_ms : 0.0);
}

/* json string of possibly-invalid UTF-8 bytes */
static json_t *http_text(const char *s, size_t n) {
    size_t len;
    char *clean = serve_utf8_clean(s ? s : "", s ? n : 0, &len);
    if (!clean) return NULL;
    json_t *v = json_stringn(clean, len);
    free(clean);
    return v;
}

/* ----------------------------------------------------------- SSE streams */

typedef struct http_stream {
    serve_http *h;
    struct MHD_Connection *conn;
    serve_job *job;
    serve_kind kind;
    char id[48];
    int64_t created;
    int include_usage;
    int64_t chat_id, user_msg_id;
    size_t consumed;  /* job text already sent */
    int sent_first, finished;
    char *out;        /* formatted events not yet handed to MHD */
    size_t out_n, out_pos, out_cap;
} http_stream;

static int stream_put(http_stream *s, const char *p, size_t n) {
    if (s->out_n + n > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap < s->out_n + n) cap *= 2;
        char *np = realloc(s->out, cap);
        if (!np) return 0;
        s->out = np;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_n, p, n);
    s->out_n += n;
    return 1;
}

/* "data: <json>\n\n" (reference stolen) */
static int stream_event(http_stream *s, json_t *v) {
    char *js = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!js) return 0;
    const int ok = stream_put(s, "data: ", 6) && stream_put(s, js, strlen(js)) && stream_put(s, "\n\n", 2);
    free(js);
    return ok;
}

static json_t *stream_chunk_base(http_stream *s, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", s->id, "object", object, "created", (json_int_t)s->created,
                     "model", s->h->model_id);
}

/* An event carrying text (may be empty), or the last one (finish != NULL). */
static int stream_text_event(http_stream *s, const char *text, size_t n, const char *finish, const pl_chat_result *r) {
    json_t *t = http_text(text, n);
    if (!t) return 0;
    json_t *ev = NULL;
    switch (s->kind) {
    case SERVE_CHAT:
    case SERVE_CHAT_MESSAGE: {
        json_t *delta = json_object();
        if (!s->sent_first) json_object_set_new(delta, "role", json_string("assistant"));
        if (!finish || n) json_object_set_new(delta, "content", t);
        else json_decref(t);
        ev = stream_chunk_base(s, "chat.completion.chunk");
        json_object_set_new(ev, "choices",
                            json_pack("[{s:i, s:o, s:n, s:o}]", "index", 0, "delta", delta, "logprobs", "finish_reason",
                                      finish ? json_string(finish) : json_null()));
        if (finish && s->kind == SERVE_CHAT_MESSAGE)
            json_object_set_new(ev, "pocketllm",
                                json_pack("{s:I, s:I, s:I}", "chat_id", (json_int_t)s->chat_id, "user_message_id",
                                          (json_int_t)s->user_msg_id, "message_id", (json_int_t)s->job->reply_id));
        break;
    }
    case SERVE_COMPLETION:
        ev = stream_chunk_base(s, "text_completion");
        json_object_set_new(ev, "choices",
                            json_pack("[{s:o, s:i, s:n, s:o}]", "text", t, "index", 0, "logprobs", "finish_reason",
                                      finish ? json_string(finish) : json_null()));
        break;
    default: /* SERVE_LLAMA */
        ev = json_pack("{s:o, s:b}", "content", t, "stop", finish != NULL);
        if (finish && r) {
            json_object_set_new(ev, "model", json_string(s->h->model_id));
            json_object_set_new(ev, "tokens_predicted", json_integer(r->n_gen));
            json_object_set_new(ev, "tokens_evaluated", json_integer(r->n_prompt));
            json_object_set_new(ev, "tokens_cached", json_integer(r->n_reused));
            json_object_set_new(ev, "stop_type", json_string(r->finish == PL_CHAT_FINISH_LENGTH ? "limit" : "eos"));
            json_object_set_new(ev, "timings", http_timings(r));
        }
        break;
    }
    s->sent_first = 1;
    return ev && stream_event(s, ev);
}

static int stream_finish(http_stream *s, pl_status st, const char *errmsg, const pl_chat_result *r) {
    if (st) {
        serve_err err = {.status = 500, .type = "server_error"};
        snprintf(err.message, sizeof err.message, "%.*s", (int)sizeof err.message - 1, errmsg);
        if (!stream_event(s, http_error_json(&err))) return 0;
    } else {
        if (!stream_text_event(s, "", 0, http_finish_reason(r->finish), r)) return 0;
        if (s->include_usage && s->kind != SERVE_LLAMA) {
            json_t *ev = stream_chunk_base(s, s->kind == SERVE_COMPLETION ? "text_completion" : "chat.completion.chunk");
            json_object_set_new(ev, "choices", json_array());
            json_object_set_new(ev, "usage", http_usage(r));
            if (!stream_event(s, ev)) return 0;
        }
    }
    if (s->kind != SERVE_LLAMA && !stream_put(s, "data: [DONE]\n\n", 14)) return 0;
    return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_stream *s = cls;
    serve_job *j = s->job;
    for (;;) {
        if (s->out_pos < s->out_n) {
            size_t n = s->out_n - s->out_pos < max ? s->out_n - s->out_pos : max;
            memcpy(buf, s->out + s->out_pos, n);
            s->out_pos += n;
            return (ssize_t)n;
        }
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        s->out_n = s->out_pos = 0;
        pthread_mutex_lock(&j->mu);
        while (j->n_text == s->consumed && j->state != JOB_DONE) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0) {
                pthread_mutex_unlock(&j->mu);
                if (!http_client_alive(s->conn)) {
                    serve_engine_cancel(s->h->e, j);
                    return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                pthread_mutex_lock(&j->mu);
            }
        }
        const size_t n = j->n_text - s->consumed;
        char *piece = n ? malloc(n) : NULL;
        if (piece) memcpy(piece, j->text + s->consumed, n);
        s->consumed = j->n_text;
        const int done = j->state == JOB_DONE && s->consumed == j->n_text;
        const pl_status st = j->status;
        char errmsg[sizeof j->errmsg];
        memcpy(errmsg, j->errmsg, sizeof errmsg);
        const pl_chat_result r = j->res;
        pthread_mutex_unlock(&j->mu);
        int ok = 1;
        if (n) ok = piece && stream_text_event(s, piece, n, NULL, NULL);
        free(piece);
        if (ok && done) {
            ok = stream_finish(s, st, errmsg, &r);
            s->finished = 1;
        }
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls) {
    http_stream *s = cls;
    pthread_mutex_lock(&s->job->mu);
    const int running = s->job->state != JOB_DONE;
    pthread_mutex_unlock(&s->job->mu);
    if (running) serve_engine_cancel(s->h->e, s->job); /* the client is gone */
    serve_job_release(s->job);
    free(s->out);
    free(s);
}

/* ------------------------------------------------------------ generation */

static enum MHD_Result http_job_error(struct MHD_Connection *c, serve_job *j) {
    switch (j->status) {
    case PL_ERR_CONTEXT_FULL:
        return http_errorf(c, 400, "invalid_request_error", "context_length_exceeded", "%s", j->errmsg);
    case PL_ERR_INVALID_ARG:
        return http_errorf(c, 400, "invalid_request_error", NULL, "%s", j->errmsg);
    case PL_ERR_CANCELLED:
        return http_errorf(c, 503, "server_error", NULL, "%s", j->errmsg);
    default:
        return http_errorf(c, 500, "server_error", NULL, "%s", j->errmsg);
    }
}

static json_t *http_reply_body(serve_http *h, serve_kind kind, const char *id, serve_job *j, int64_t chat_id,
                               int64_t user_msg_id) {
    const pl_chat_result *r = &j->res;
    json_t *text = http_text(j->text, j->n_text);
    if (!text) return NULL;
    const json_int_t now = (json_int_t)time(NULL);
    if (kind == SERVE_LLAMA)
        return json_pack("{s:o, s:s, s:b, s:i, s:i, s:i, s:s, s:o}", "content", text, "model", h->model_id, "stop", 1,
                         "tokens_predicted", r->n_gen, "tokens_evaluated", r->n_prompt, "tokens_cached", r->n_reused,
                         "stop_type", r->finish == PL_CHAT_FINISH_LENGTH ? "limit" : "eos", "timings", http_timings(r));
    if (kind == SERVE_COMPLETION)
        return json_pack("{s:s, s:s, s:I, s:s, s:[{s:o, s:i, s:n, s:s}], s:o}", "id", id, "object", "text_completion",
                         "created", now, "model", h->model_id, "choices", "text", text, "index", 0, "logprobs",
                         "finish_reason", http_finish_reason(r->finish), "usage", http_usage(r));
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:o}, s:n, s:s}], s:o}", "id", id, "object",
                             "chat.completion", "created", now, "model", h->model_id, "choices", "index", 0, "message",
                             "role", "assistant", "content", text, "logprobs", "finish_reason",
                             http_finish_reason(r->finish), "usage", http_usage(r));
    if (body && kind == SERVE_CHAT_MESSAGE)
        json_object_set_new(body, "pocketllm",
                            json_pack("{s:I, s:I, s:I}", "chat_id", (json_int_t)chat_id, "user_message_id",
                                      (json_int_t)user_msg_id, "message_id", (json_int_t)j->reply_id));
    return body;
}

static uint64_t http_random_seed(serve_http *h) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (atomic_fetch_add(&h->id_counter, 1) << 17);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Run a generation for req (ownership moves to the job) and answer. */
static enum MHD_Result http_generate(serve_http *h, struct MHD_Connection *c, serve_req *req, int64_t chat_id,
                                     int64_t user_msg_id, store_msg *history, int n_history) {
    serve_job *j = serve_job_new();
    serve_req *owned = malloc(sizeof *owned);
    if (!j || !owned) {
        free(owned);
        serve_job_release(j);
        serve_req_free(req);
        store_msgs_free(history, n_history);
        return http_errorf(c, 500, "server_error", NULL, "out of memory");
    }
    *owned = *req;
    memset(req, 0, sizeof *req);
    j->req = owned;
    j->owned_msgs = history;
    j->n_owned = n_history;
    const serve_kind kind = owned->kind;
    if (kind == SERVE_COMPLETION || kind == SERVE_LLAMA) {
        j->raw = 1;
        j->prompt = owned->prompt;
    } else if (kind == SERVE_CHAT) {
        j->msgs = owned->msgs;
        j->n_msgs = owned->n_msgs;
    } else {
        j->owned_view = calloc((size_t)(n_history ? n_history : 1), sizeof *j->owned_view);
        if (!j->owned_view) {
            serve_job_release(j);
            return http_errorf(c, 500, "server_error", NULL, "out of memory");
        }
        for (int i = 0; i < n_history; i++) j->owned_view[i] = (pl_chat_msg){history[i].role, history[i].content};
        j->msgs = j->owned_view;
        j->n_msgs = n_history;
        j->chat_id = chat_id;
    }
    j->gen.n_predict = owned->n_predict >= 0 ? owned->n_predict : h->n_predict;
    j->gen.sampling = owned->sampling;
    if (!owned->has_seed) j->gen.sampling.seed = http_random_seed(h);
    j->gen.stop = (const char *const *)owned->stop;
    j->gen.n_stop = owned->n_stop;
    j->gen.ignore_eos = owned->ignore_eos;

    pl_status st = serve_engine_submit(h->e, j);
    if (st) {
        enum MHD_Result rc = st == PL_ERR_BUDGET ? http_errorf(c, 503, "server_busy", NULL, "%s", pl_last_error())
                                                 : http_errorf(c, 503, "server_error", NULL, "%s", pl_last_error());
        serve_job_release(j);
        return rc;
    }
    if (!http_wait_job(h, c, j, !owned->stream)) {
        serve_job_release(j);
        return MHD_NO; /* the client left: close the connection */
    }
    pthread_mutex_lock(&j->mu);
    const int failed = j->state == JOB_DONE && j->status != PL_OK;
    pthread_mutex_unlock(&j->mu);
    if (failed) {
        enum MHD_Result rc = http_job_error(c, j);
        serve_job_release(j);
        return rc;
    }
    char id[48];
    http_new_id(h, kind == SERVE_COMPLETION ? "cmpl-" : "chatcmpl-", id, sizeof id);
    if (!owned->stream) {
        pthread_mutex_lock(&j->mu);
        json_t *body = http_reply_body(h, kind, id, j, chat_id, user_msg_id);
        pthread_mutex_unlock(&j->mu);
        serve_job_release(j);
        if (!body) return http_errorf(c, 500, "server_error", NULL, "out of memory");
        return http_json(c, 200, body);
    }
    http_stream *s = calloc(1, sizeof *s);
    if (!s) {
        serve_engine_cancel(h->e, j);
        serve_job_release(j);
        return http_errorf(c, 500, "server_error", NULL, "out of memory");
    }
    s->h = h;
    s->conn = c;
    s->job = j; /* the stream now holds our reference */
    s->kind = kind;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->created = (int64_t)time(NULL);
    s->include_usage = owned->include_usage;
    s->chat_id = chat_id;
    s->user_msg_id = user_msg_id;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!r) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* A model field naming another model is a 404, as OpenAI answers. */
static int http_check_model(serve_http *h, const serve_req *req, serve_err *err) {
    if (!req->model || !req->model[0] || !strcmp(req->model, h->model_id)) return 0;
    return serve_errf(err, 404, "invalid_request_error", "model_not_found", "model",
                      "the model '%s' does not exist here (this server runs '%s')", req->model, h->model_id);
}

static enum MHD_Result http_completion_route(serve_http *h, struct MHD_Connection *c, serve_kind kind,
                                             const http_req *r) {
    serve_req req;
    serve_err err;
    if (serve_req_parse(kind, r->body, r->n, &req, &err)) return http_error(c, &err);
    if (http_check_model(h, &req, &err)) {
        serve_req_free(&req);
        return http_error(c, &err);
    }
    return http_generate(h, c, &req, 0, 0, NULL, 0);
}

/* ------------------------------------------------------------ chat store */

static json_t *http_chat_json(const store_chat *c) {
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:i}", "id", (json_int_t)c->id, "object", "chat", "title",
                     c->title, "model", c->model, "created", (json_int_t)c->created, "updated", (json_int_t)c->updated,
                     "n_messages", c->n_messages);
}

static json_t *http_msg_json(const store_msg *m) {
    json_t *content = http_text(m->content, strlen(m->content));
    return json_pack("{s:I, s:s, s:o, s:s, s:i, s:i, s:f, s:f, s:I}", "id", (json_int_t)m->id, "role", m->role,
                     "content", content, "finish", m->finish, "tokens", m->tokens, "n_prompt", m->n_prompt,
                     "prompt_ms", m->prompt_ms, "gen_ms", m->gen_ms, "created", (json_int_t)m->created);
}

static enum MHD_Result http_store_error(struct MHD_Connection *c) {
    return http_errorf(c, 500, "server_error", NULL, "%s", pl_last_error());
}

static enum MHD_Result http_chats_list(serve_http *h, struct MHD_Connection *c) {
    store_chat *v;
    int n;
    if (store_chat_list(h->st, &v, &n)) return http_store_error(c);
    json_t *data = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(data, http_chat_json(&v[i]));
    store_chats_free(v, n);
    return http_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result http_chats_create(serve_http *h, struct MHD_Connection *c, const http_req *r) {
    serve_req req;
    serve_err err;
    if (serve_req_parse(SERVE_CHAT_CREATE, r->body, r->n, &req, &err)) return http_error(c, &err);
    int64_t id;
    enum MHD_Result rc;
    if (store_chat_create(h->st, req.title, h->model_id, &id)) {
        rc = http_store_error(c);
        goto out;
    }
    if (req.system && req.system[0]) {
        store_msg m = {.role = "system", .content = req.system};
        if (store_msg_add(h->st, id, &m, NULL)) {
            rc = http_store_error(c);
            goto out;
        }
    }
    store_chat chat;
    if (store_chat_get(h->st, id, &chat, NULL, NULL) || !chat.id) {
        rc = http_store_error(c);
        goto out;
    }
    rc = http_json(c, 201, http_chat_json(&chat));
    store_chat_clear(&chat);
out:
    serve_req_free(&req);
    return rc;
}

static enum MHD_Result http_chat_get(serve_http *h, struct MHD_Connection *c, int64_t id) {
    store_chat chat;
    store_msg *msgs;
    int n;
    if (store_chat_get(h->st, id, &chat, &msgs, &n)) return http_store_error(c);
    if (!chat.id) return http_errorf(c, 404, "invalid_request_error", "chat_not_found", "no chat %lld", (long long)id);
    json_t *o = http_chat_json(&chat), *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, http_msg_json(&msgs[i]));
    json_object_set_new(o, "messages", a);
    store_chat_clear(&chat);
    store_msgs_free(msgs, n);
    return http_json(c, 200, o);
}

static enum MHD_Result http_chat_delete(serve_http *h, struct MHD_Connection *c, int64_t id) {
    int found = 0;
    if (store_chat_delete(h->st, id, &found)) return http_store_error(c);
    if (!found) return http_errorf(c, 404, "invalid_request_error", "chat_not_found", "no chat %lld", (long long)id);
    serve_engine_forget_chat(h->e, id);
    return http_json(c, 200, json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id, "object", "chat.deleted", "deleted", 1));
}

static enum MHD_Result http_chat_rename(serve_http *h, struct MHD_Connection *c, int64_t id, const http_req *r) {
    serve_req req;
    serve_err err;
    if (serve_req_parse(SERVE_CHAT_CREATE, r->body, r->n, &req, &err)) return http_error(c, &err);
    int found = 0;
    pl_status st = store_chat_rename(h->st, id, req.title ? req.title : "", &found);
    serve_req_free(&req);
    if (st) return http_store_error(c);
    if (!found) return http_errorf(c, 404, "invalid_request_error", "chat_not_found", "no chat %lld", (long long)id);
    return http_chat_get(h, c, id);
}

static enum MHD_Result http_chat_message(serve_http *h, struct MHD_Connection *c, int64_t id, const http_req *r) {
    serve_req req;
    serve_err err;
    if (serve_req_parse(SERVE_CHAT_MESSAGE, r->body, r->n, &req, &err)) return http_error(c, &err);
    if (http_check_model(h, &req, &err)) {
        serve_req_free(&req);
        return http_error(c, &err);
    }
    /* The user's message is committed before generation starts: acknowledged
     * input survives whatever happens to the reply. */
    store_msg um = {.role = "user", .content = req.content};
    int64_t user_id = 0;
    pl_status st = store_msg_add(h->st, id, &um, &user_id);
    if (st) {
        serve_req_free(&req);
        if (st == PL_ERR_INVALID_ARG)
            return http_errorf(c, 404, "invalid_request_error", "chat_not_found", "no chat %lld", (long long)id);
        return http_store_error(c);
    }
    store_chat chat;
    store_msg *msgs = NULL;
    int n = 0;
    if (store_chat_get(h->st, id, &chat, &msgs, &n) || !chat.id) {
        serve_req_free(&req);
        return chat.id ? http_store_error(c)
                       : http_errorf(c, 404, "invalid_request_error", "chat_not_found", "no chat %lld", (long long)id);
    }
    store_chat_clear(&chat);
    return http_generate(h, c, &req, id, user_id, msgs, n);
}

/* ------------------------------------------------------------ info routes */

static enum MHD_Result http_health(serve_http *h, struct MHD_Connection *c) {
    serve_memory m;
    serve_engine_memory(h->e, &m);
    int busy, queued;
    serve_engine_load(h->e, &busy, &queued);
    const pl_model *model = serve_engine_model(h->e);
    return http_json(
        c, 200,
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:i, s:i, s:i}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:i}}", "status", "ok",
                  "version", pl_version(), "model", h->model_id, "template", serve_engine_template(h->e), "n_ctx",
                  serve_engine_n_ctx(h->e), "slots", "total", m.slots, "busy", busy, "queued", queued, "memory",
                  "model_bytes", (json_int_t)m.model_bytes, "ctx_bytes", (json_int_t)m.ctx_bytes, "overhead_bytes",
                  (json_int_t)m.overhead_bytes, "plan_bytes", (json_int_t)m.plan_bytes, "budget_bytes",
                  (json_int_t)m.budget_bytes, "rss_bytes", (json_int_t)m.rss_bytes, "n_layer",
                  pl_model_n_layer(model)));
}

static json_t *http_model_json(serve_http *h) {
    const pl_model *m = serve_engine_model(h->e);
    return json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:i, s:i, s:i, s:i, s:s, s:I}}", "id", h->model_id, "object",
                     "model", "created", (json_int_t)h->started, "owned_by", "pocketllm", "meta", "arch",
                     pl_model_arch(m), "n_vocab", pl_model_n_vocab(m), "n_embd", pl_model_n_embd(m), "n_layer",
                     pl_model_n_layer(m), "n_ctx", serve_engine_n_ctx(h->e), "template", serve_engine_template(h->e),
                     "size", (json_int_t)pl_model_file_bytes(m));
}

static const serve_asset *http_asset(const char *url) {
    for (int i = 0; i < serve_n_assets; i++)
        if (!strcmp(serve_assets[i].path, url)) return &serve_assets[i];
    return NULL;
}

/* ---------------------------------------------------------------- routing */

static int http_authorized(serve_http *h, struct MHD_Connection *c) {
    if (!h->api_key) return 1;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!a || strncmp(a, "Bearer ", 7)) return 0;
    a += 7;
    const size_t n = strlen(h->api_key);
    if (strlen(a) != n) return 0;
    unsigned diff = 0; /* no early exit: the time taken does not tell how much matched */
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)a[i] ^ (unsigned char)h->api_key[i];
    return diff == 0;
}

/* "/v1/chats/123" -> 123, rest "" ; "/v1/chats/123/messages" -> rest "/messages". */
static int http_parse_chat_path(const char *url, int64_t *id, const char **rest) {
    const char *p = url + strlen("/v1/chats/");
    char *end;
    if (*p < '0' || *p > '9') return 0;
    long long v = strtoll(p, &end, 10);
    if (v <= 0) return 0;
    *id = v;
    *rest = end;
    return 1;
}

static enum MHD_Result http_method_not_allowed(struct MHD_Connection *c, const char *method, const char *url) {
    return http_errorf(c, 405, "invalid_request_error", NULL, "%s is not allowed on %s", method, url);
}

static enum MHD_Result http_route(serve_http *h, struct MHD_Connection *c, const char *url, const char *method,
                                  const http_req *r) {
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) return get ? http_health(h, c) : http_method_not_allowed(c, method, url);
    const serve_asset *asset = get ? http_asset(url) : NULL;
    if (asset) return http_send(c, 200, asset->mime, (char *)asset->data, asset->len, MHD_RESPMEM_PERSISTENT);
    const int api = !strncmp(url, "/v1/", 4) || !strcmp(url, "/completion");
    if (!api) return http_errorf(c, 404, "invalid_request_error", "not_found", "no route %s %s", method, url);
    if (!http_authorized(h, c))
        return http_errorf(c, 401, "invalid_request_error", "invalid_api_key",
                           "a valid API key is required: send \"Authorization: Bearer KEY\"");
    if (!strcmp(url, "/v1/models")) {
        if (!get) return http_method_not_allowed(c, method, url);
        return http_json(c, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", http_model_json(h)));
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!get) return http_method_not_allowed(c, method, url);
        if (strcmp(url + 11, h->model_id))
            return http_errorf(c, 404, "invalid_request_error", "model_not_found", "the model '%s' does not exist",
                               url + 11);
        return http_json(c, 200, http_model_json(h));
    }
    static const struct {
        const char *path;
        serve_kind kind;
    } gen_routes[] = {
        {"/v1/chat/completions", SERVE_CHAT}, {"/v1/completions", SERVE_COMPLETION}, {"/completion", SERVE_LLAMA}};
    for (size_t i = 0; i < sizeof gen_routes / sizeof gen_routes[0]; i++)
        if (!strcmp(url, gen_routes[i].path))
            return post ? http_completion_route(h, c, gen_routes[i].kind, r) : http_method_not_allowed(c, method, url);
    if (!strcmp(url, "/v1/chats")) {
        if (get) return http_chats_list(h, c);
        if (post) return http_chats_create(h, c, r);
        return http_method_not_allowed(c, method, url);
    }
    int64_t id;
    const char *rest;
    if (!strncmp(url, "/v1/chats/", 10) && http_parse_chat_path(url, &id, &rest)) {
        if (!strcmp(rest, "") || !strcmp(rest, "/")) {
            if (get) return http_chat_get(h, c, id);
            if (!strcmp(method, "DELETE")) return http_chat_delete(h, c, id);
            if (!strcmp(method, "PATCH")) return http_chat_rename(h, c, id, r);
            return http_method_not_allowed(c, method, url);
        }
        if (!strcmp(rest, "/messages"))
            return post ? http_chat_message(h, c, id, r) : http_method_not_allowed(c, method, url);
    }
    return http_errorf(c, 404, "invalid_request_error", "not_found", "no route %s %s", method, url);
}

/* Host names this machine: 127.x.y.z, localhost or [::1], any port. */
static int http_host_ok(struct MHD_Connection *c) {
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!host) return 1; /* HTTP/1.0 */
    size_t n = strlen(host);
    const char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']')) n = (size_t)(colon - host);
    if (n == 9 && !strncasecmp(host, "localhost", 9)) return 1;
    if (n == 5 && !strncmp(host, "[::1]", 5)) return 1;
    char ip[64];
    if (n >= sizeof ip) return 0;
    memcpy(ip, host, n);
    ip[n] = 0;
    struct in_addr a;
    return inet_pton(AF_INET, ip, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* A JSON media type: "application/json", parameters allowed. */
static int http_is_json(struct MHD_Connection *c) {
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!t) return 0;
    while (*t == ' ') t++;
    return !strncasecmp(t, "application/json", 16) && (t[16] == 0 || t[16] == ';' || t[16] == ' ');
}

/* A request refused before its body is read is still answered after the
 * body: a client that is busy sending cannot read an early answer (it gets a
 * reset instead). The discarded body is capped; past the cap the connection
 * is closed. */
#define HTTP_DISCARD_CAP (64ull << 20)

static enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                       const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    serve_http *h = cls;
    http_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (h->loopback && !http_host_ok(c)) r->reject = 403;
        else if ((!strcmp(method, "POST") || !strcmp(method, "PATCH")) && !http_is_json(c)) r->reject = 415;
        else if (cl && strtoull(cl, NULL, 10) > h->max_body) r->reject = 413;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->reject && r->n + *upload_size > h->max_body) {
            r->reject = 413;
            free(r->body);
            r->body = NULL;
            r->n = r->cap = 0;
        }
        if (r->reject) {
            r->discarded += *upload_size;
            if (r->discarded > HTTP_DISCARD_CAP) return MHD_NO;
        } else {
            if (r->n + *upload_size + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->n + *upload_size + 1) cap *= 2;
                char *nb = realloc(r->body, cap);
                if (!nb) return MHD_NO;
                r->body = nb;
                r->cap = cap;
            }
            memcpy(r->body + r->n, upload, *upload_size);
            r->n += *upload_size;
            r->body[r->n] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    switch (r->reject) {
    case 403:
        return http_errorf(c, 403, "invalid_request_error", "bad_host",
                           "the Host header must name this machine (127.0.0.1, localhost or [::1])");
    case 415:
        return http_errorf(c, 415, "invalid_request_error", "unsupported_media_type",
                           "request bodies must be sent as Content-Type: application/json");
    case 413:
        return http_errorf(c, 413, "invalid_request_error", "request_too_large",
                           "the request body is larger than %zu bytes", h->max_body);
    default:
        return http_route(h, c, url, method, r);
    }
}

static void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)cls;
    (void)c;
    (void)t;
    http_req *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
    }
    *con_cls = NULL;
}

pl_status serve_http_start(const serve_http_params *p, serve_engine *e, store *st, serve_http **out) {
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    int loopback = 0;
    if (p->port < 0 || p->port > 65535) return pl_fail(PL_ERR_INVALID_ARG, "--port %d is not a port", p->port);
    if (inet_pton(AF_INET, p->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
        loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, p->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p->port);
        loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        flags |= MHD_USE_IPv6;
    } else {
        return pl_fail(PL_ERR_INVALID_ARG, "--host '%s' is not an IPv4 or IPv6 address", p->host);
    }
    serve_http *h = calloc(1, sizeof *h);
    if (!h) return pl_fail(PL_ERR_NOMEM, "out of memory");
    h->e = e;
    h->st = st;
    h->max_body = p->max_body;
    h->loopback = loopback;
    h->n_predict = p->default_n_predict;
    h->started = (int64_t)time(NULL);
    if ((p->api_key && !(h->api_key = strdup(p->api_key))) || !(h->model_id = strdup(p->model_id))) {
        serve_http_stop(h);
        return pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    h->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, http_on_request, h, MHD_OPTION_SOCK_ADDR, &ss,
                            MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)SERVE_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!h->d) {
        serve_http_stop(h);
        return pl_fail(PL_ERR_IO, "cannot listen on %s port %d (in use? not permitted?)", p->host, p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : p->port;
    *out = h;
    return PL_OK;
}

int serve_http_port(const serve_http *h) { return h->port; }

void serve_http_stop(serve_http *h) {
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    free(h->api_key);
    free(h->model_id);
    free(h);
}
