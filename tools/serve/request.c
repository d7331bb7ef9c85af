/*
 * Request bodies of the OpenAI-style endpoints, parsed with jansson and
 * checked field by field: wrong types, out-of-range numbers, unknown roles,
 * too many stop strings or messages are 400s that name the field. Unknown
 * fields are ignored (clients send many). Strings are copied out, so the
 * serve_req owns everything it points to; jansson has already rejected
 * invalid UTF-8 and NUL characters (no JSON_ALLOW_NUL).
 */
#include "serve.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_errf(serve_err *err, int status, const char *type, const char *code, const char *param, const char *fmt,
               ...) {
    err->status = status;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(param, ...) serve_errf(err, 400, "invalid_request_error", NULL, param, __VA_ARGS__)

char *serve_utf8_clean(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(n * 3 + 1); /* each bad byte becomes 3 */
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n && c != 0;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) { /* no overlong forms, surrogates or values past U+10FFFF */
            uint32_t cp = c & (0x7F >> len);
            for (size_t k = 1; k < len; k++) cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
            static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (ok) {
            memcpy(o + j, s + i, len);
            j += len;
            i += len;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = 0;
    if (out_len) *out_len = j;
    return o;
}

static char *req_dup(const char *s) {
    char *d = strdup(s ? s : "");
    return d;
}

/* Optional string field: *out NULL when absent or null. */
static int req_str(json_t *o, const char *key, char **out, serve_err *err) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return BAD(key, "'%s' must be a string", key);
    if (!(*out = req_dup(json_string_value(v)))) return serve_errf(err, 500, "server_error", NULL, key, "out of memory");
    return 0;
}

/* Optional integer field within [lo, hi]; left unchanged when absent or null. */
static int req_int(json_t *o, const char *key, long long lo, long long hi, int *out, serve_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return BAD(key, "'%s' must be an integer", key);
    const json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return BAD(key, "'%s' must be between %lld and %lld (got %lld)", key, lo, hi, (long long)x);
    *out = (int)x;
    return 0;
}

/* Optional number field within [lo, hi]. */
static int req_num(json_t *o, const char *key, double lo, double hi, float *out, serve_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD(key, "'%s' must be a number", key);
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return BAD(key, "'%s' must be between %g and %g (got %g)", key, lo, hi, x);
    *out = (float)x;
    return 0;
}

static int req_bool(json_t *o, const char *key, int *out, serve_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD(key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* Message content: a string, or an array of {"type":"text","text":...} parts
 * (joined), or null (an assistant message without text). */
static int req_content(json_t *v, int i, char **out, serve_err *err) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!v || json_is_null(v)) {
        *out = req_dup("");
        return *out ? 0 : serve_errf(err, 500, "server_error", NULL, param, "out of memory");
    }
    if (json_is_string(v)) {
        *out = req_dup(json_string_value(v));
        return *out ? 0 : serve_errf(err, 500, "server_error", NULL, param, "out of memory");
    }
    if (!json_is_array(v)) return BAD(param, "'%s' must be a string or an array of text parts", param);
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(v, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text))
            return BAD(param, "'%s' part %zu: only {\"type\": \"text\", \"text\": \"...\"} parts are supported", param,
                       k);
        total += json_string_length(text);
    }
    char *s = malloc(total + 1);
    if (!s) return serve_errf(err, 500, "server_error", NULL, param, "out of memory");
    size_t n = 0;
    json_array_foreach(v, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + n, json_string_value(text), json_string_length(text));
        n += json_string_length(text);
    }
    s[n] = 0;
    *out = s;
    return 0;
}

static int req_messages(json_t *o, serve_req *r, serve_err *err) {
    json_t *a = json_object_get(o, "messages");
    if (!a) return BAD("messages", "'messages' is required");
    if (!json_is_array(a)) return BAD("messages", "'messages' must be an array");
    const size_t n = json_array_size(a);
    if (n == 0) return BAD("messages", "'messages' must not be empty");
    if (n > SERVE_MAX_MESSAGES) return BAD("messages", "at most %d messages (got %zu)", SERVE_MAX_MESSAGES, n);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return serve_errf(err, 500, "server_error", NULL, "messages", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(a, i);
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return BAD(param, "'%s' must be an object", param);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) return BAD(param, "'%s.role' must be a string", param);
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for it */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return BAD(param, "'%s.role' is '%s': supported roles are system, developer, user and assistant", param,
                       json_string_value(role));
        char *content = NULL;
        if (req_content(json_object_get(m, "content"), (int)i, &content, err)) return -1;
        r->msgs[i].content = content;
        r->n_msgs = (int)i + 1;
        if (!(r->msgs[i].role = req_dup(rs))) return serve_errf(err, 500, "server_error", NULL, param, "out of memory");
    }
    return 0;
}

static int req_stop(json_t *o, serve_req *r, serve_err *err) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0;
        if (!(r->stop[0] = req_dup(json_string_value(v))))
            return serve_errf(err, 500, "server_error", NULL, "stop", "out of memory");
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(v)) return BAD("stop", "'stop' must be a string or an array of strings");
    if (json_array_size(v) > SERVE_MAX_STOP) return BAD("stop", "at most %d stop strings", SERVE_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) return BAD("stop", "'stop[%zu]' must be a string", i);
        if (json_string_length(s) == 0) continue;
        if (!(r->stop[r->n_stop] = req_dup(json_string_value(s))))
            return serve_errf(err, 500, "server_error", NULL, "stop", "out of memory");
        r->n_stop++;
    }
    return 0;
}

/* Generation options shared by every generating endpoint. */
static int req_gen(json_t *o, serve_req *r, serve_err *err) {
    pl_sampler_params *sp = &r->sampling;
    int n = -1;
    if (r->kind == SERVE_LLAMA) {
        if (req_int(o, "n_predict", -1, 1 << 20, &n, err)) return -1;
    } else {
        if (req_int(o, "max_tokens", 0, 1 << 20, &n, err)) return -1;
        if (req_int(o, "max_completion_tokens", 0, 1 << 20, &n, err)) return -1;
    }
    r->n_predict = n;
    if (req_num(o, "temperature", 0, 5, &sp->temp, err)) return -1;
    if (req_num(o, "top_p", 0, 1, &sp->top_p, err)) return -1;
    if (req_num(o, "min_p", 0, 1, &sp->min_p, err)) return -1;
    if (req_int(o, "top_k", 0, 1 << 20, &sp->top_k, err)) return -1;
    if (req_num(o, "repeat_penalty", 0.01, 10, &sp->repeat_penalty, err)) return -1;
    if (req_num(o, "repetition_penalty", 0.01, 10, &sp->repeat_penalty, err)) return -1;
    if (req_int(o, "repeat_last_n", 0, 1 << 20, &sp->repeat_last_n, err)) return -1;
    float ignored = 0;
    if (req_num(o, "presence_penalty", -2, 2, &ignored, err)) return -1;
    if (req_num(o, "frequency_penalty", -2, 2, &ignored, err)) return -1;
    json_t *seed = json_object_get(o, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) return BAD("seed", "'seed' must be an integer");
        sp->seed = (uint64_t)json_integer_value(seed);
        r->has_seed = 1;
    }
    int n_choices = 1;
    if (req_int(o, "n", 1, 1 << 20, &n_choices, err)) return -1;
    if (n_choices != 1) return BAD("n", "only n = 1 is supported");
    if (req_bool(o, "stream", &r->stream, err)) return -1;
    if (req_bool(o, "ignore_eos", &r->ignore_eos, err)) return -1;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return BAD("stream_options", "'stream_options' must be an object");
        if (req_bool(so, "include_usage", &r->include_usage, err)) return -1;
    }
    return req_stop(o, r, err);
}

int serve_req_parse(serve_kind kind, const char *body, size_t len, serve_req *r, serve_err *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    r->n_predict = -1;
    r->sampling = pl_sampler_default_params();
    json_error_t je;
    json_t *o = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return BAD("", "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(o)) {
        BAD("", "the request body must be a JSON object");
        goto out;
    }
    if (req_str(o, "model", &r->model, err)) goto out;
    switch (kind) {
    case SERVE_CHAT:
        if (req_messages(o, r, err) || req_gen(o, r, err)) goto out;
        break;
    case SERVE_COMPLETION:
    case SERVE_LLAMA: {
        json_t *p = json_object_get(o, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0); /* ["text"] */
        if (!p) {
            BAD("prompt", "'prompt' is required");
            goto out;
        }
        if (!json_is_string(p)) {
            BAD("prompt", "'prompt' must be a string (token arrays and batches are not supported)");
            goto out;
        }
        if (!(r->prompt = req_dup(json_string_value(p)))) {
            serve_errf(err, 500, "server_error", NULL, "prompt", "out of memory");
            goto out;
        }
        if (req_gen(o, r, err)) goto out;
        break;
    }
    case SERVE_CHAT_MESSAGE:
        if (req_str(o, "content", &r->content, err) || req_gen(o, r, err)) goto out;
        if (!r->content) {
            BAD("content", "'content' (a string) is required");
            goto out;
        }
        break;
    case SERVE_CHAT_CREATE:
        if (req_str(o, "title", &r->title, err) || req_str(o, "system", &r->system, err)) goto out;
        break;
    }
    rc = 0;
out:
    json_decref(o);
    if (rc) serve_req_free(r);
    return rc;
}

void serve_req_free(serve_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->model);
    free(r->prompt);
    free(r->content);
    free(r->title);
    free(r->system);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
