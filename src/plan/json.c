/*
 * The JSON reader of json.h: recursive descent over a bounded cursor. Each
 * container is parsed into a growing array, so a hostile count cannot make
 * it allocate more than the text could describe (every element takes at
 * least one byte); depth is capped so the recursion stays bounded.
 */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_cur {
    const char *p;
    size_t n, at;
    int depth;
} json_cur;

static pl_status json_err(const json_cur *c, const char *what) {
    return pl_fail(PL_ERR_FORMAT, "JSON: %s at byte %zu", what, c->at);
}

static void json_ws(json_cur *c) {
    while (c->at < c->n && (c->p[c->at] == ' ' || c->p[c->at] == '\t' || c->p[c->at] == '\n' || c->p[c->at] == '\r'))
        c->at++;
}

static void json_clear(json_val *v) {
    if (!v) return;
    free(v->str);
    for (int i = 0; i < v->n; i++) {
        json_clear(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

void json_free(json_val *v) {
    json_clear(v);
    free(v);
}

static int json_hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        const char ch = s[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t json_utf8(unsigned cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* A string at the opening quote; *out malloc'd. */
static pl_status json_string(json_cur *c, char **out) {
    c->at++; /* the quote */
    size_t end = c->at;
    while (end < c->n && c->p[end] != '"') end += c->p[end] == '\\' ? 2 : 1;
    if (end >= c->n) return json_err(c, "unterminated string");
    /* decoded text is never longer than the escaped text */
    char *s = malloc(end - c->at + 1);
    if (!s) return pl_fail(PL_ERR_NOMEM, "JSON: out of memory");
    size_t o = 0;
    while (c->at < end) {
        const unsigned char ch = (unsigned char)c->p[c->at];
        if (ch < 0x20) {
            free(s);
            return json_err(c, "control character in a string");
        }
        if (ch != '\\') {
            s[o++] = (char)ch;
            c->at++;
            continue;
        }
        const char e = c->p[c->at + 1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        if (hit) {
            s[o++] = to[hit - from];
            c->at += 2;
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || c->at + 6 > end || !json_hex4(c->p + c->at + 2, &cp)) {
            free(s);
            return json_err(c, "bad escape in a string");
        }
        c->at += 6;
        if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
            if (c->at + 6 > end || c->p[c->at] != '\\' || c->p[c->at + 1] != 'u' || !json_hex4(c->p + c->at + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF) {
                free(s);
                return json_err(c, "unpaired surrogate in a string");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            c->at += 6;
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            free(s);
            return json_err(c, "unpaired surrogate in a string");
        }
        if (cp == 0) {
            free(s);
            return json_err(c, "NUL in a string");
        }
        o += json_utf8(cp, s + o);
    }
    s[o] = 0;
    c->at = end + 1;
    *out = s;
    return PL_OK;
}

static pl_status json_number(json_cur *c, json_val *v) {
    const size_t b = c->at;
    size_t i = b;
    if (i < c->n && c->p[i] == '-') i++;
    if (i >= c->n || c->p[i] < '0' || c->p[i] > '9') return json_err(c, "bad number");
    if (c->p[i] == '0') i++;
    else
        while (i < c->n && c->p[i] >= '0' && c->p[i] <= '9') i++;
    bool integral = true;
    if (i < c->n && c->p[i] == '.') {
        integral = false;
        if (++i >= c->n || c->p[i] < '0' || c->p[i] > '9') return json_err(c, "bad fraction");
        while (i < c->n && c->p[i] >= '0' && c->p[i] <= '9') i++;
    }
    if (i < c->n && (c->p[i] == 'e' || c->p[i] == 'E')) {
        integral = false;
        i++;
        if (i < c->n && (c->p[i] == '+' || c->p[i] == '-')) i++;
        if (i >= c->n || c->p[i] < '0' || c->p[i] > '9') return json_err(c, "bad exponent");
        while (i < c->n && c->p[i] >= '0' && c->p[i] <= '9') i++;
    }
    if (i - b > 64) return json_err(c, "number too long");
    char buf[72];
    memcpy(buf, c->p + b, i - b);
    buf[i - b] = 0;
    v->type = JSON_NUM;
    v->num = strtod(buf, NULL);
    if (!isfinite(v->num)) return json_err(c, "number out of range");
    if (integral) {
        const bool neg = buf[0] == '-';
        uint64_t u = 0;
        v->is_int = true;
        for (const char *d = buf + neg; *d; d++) {
            if (u > (UINT64_MAX - (uint64_t)(*d - '0')) / 10) {
                v->is_int = false;
                break;
            }
            u = u * 10 + (uint64_t)(*d - '0');
        }
        if (v->is_int && u > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) v->is_int = false;
        if (v->is_int) v->i = neg ? (int64_t)(0 - u) : (int64_t)u; /* two's complement: -2^63 included */
    }
    c->at = i;
    return PL_OK;
}

static pl_status json_value(json_cur *c, json_val *v);

/* Elements of an array or object at the opening bracket. */
static pl_status json_container(json_cur *c, json_val *v, bool obj) {
    if (++c->depth > JSON_MAX_DEPTH) return json_err(c, "nesting too deep");
    v->type = obj ? JSON_OBJ : JSON_ARR;
    c->at++;
    int cap = 0;
    pl_status st = PL_OK;
    json_ws(c);
    if (c->at < c->n && c->p[c->at] == (obj ? '}' : ']')) {
        c->at++;
        c->depth--;
        return PL_OK;
    }
    for (;;) {
        if (v->n == cap) {
            if (cap > (1 << 28)) return json_err(c, "too many elements");
            const int nc = cap ? cap * 2 : 8;
            json_val *ni = realloc(v->items, sizeof *ni * (size_t)nc);
            if (!ni) return pl_fail(PL_ERR_NOMEM, "JSON: out of memory");
            v->items = ni;
            if (obj) {
                char **nk = realloc(v->keys, sizeof *nk * (size_t)nc);
                if (!nk) return pl_fail(PL_ERR_NOMEM, "JSON: out of memory");
                v->keys = nk;
            }
            cap = nc;
        }
        json_val *e = &v->items[v->n];
        memset(e, 0, sizeof *e);
        json_ws(c);
        if (obj) {
            v->keys[v->n] = NULL;
            if (c->at >= c->n || c->p[c->at] != '"') return json_err(c, "expected a key");
            v->n++; /* counted now so a failure frees the key */
            if ((st = json_string(c, &v->keys[v->n - 1]))) return st;
            json_ws(c);
            if (c->at >= c->n || c->p[c->at] != ':') return json_err(c, "expected ':'");
            c->at++;
        } else {
            v->n++;
        }
        if ((st = json_value(c, e))) return st;
        json_ws(c);
        if (c->at < c->n && c->p[c->at] == ',') {
            c->at++;
            continue;
        }
        if (c->at < c->n && c->p[c->at] == (obj ? '}' : ']')) {
            c->at++;
            c->depth--;
            return PL_OK;
        }
        return json_err(c, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static pl_status json_value(json_cur *c, json_val *v) {
    json_ws(c);
    if (c->at >= c->n) return json_err(c, "unexpected end");
    const char ch = c->p[c->at];
    if (ch == '{' || ch == '[') return json_container(c, v, ch == '{');
    if (ch == '"') {
        v->type = JSON_STR;
        return json_string(c, &v->str);
    }
    static const struct { const char *word; json_type t; bool b; } lit[] = {
        {"true", JSON_BOOL, true}, {"false", JSON_BOOL, false}, {"null", JSON_NULL, false}};
    for (size_t i = 0; i < 3; i++) {
        const size_t l = strlen(lit[i].word);
        if (c->n - c->at >= l && !memcmp(c->p + c->at, lit[i].word, l)) {
            v->type = lit[i].t;
            v->b = lit[i].b;
            c->at += l;
            return PL_OK;
        }
    }
    return json_number(c, v);
}

pl_status json_parse(const char *text, size_t len, json_val **out) {
    *out = NULL;
    if (!text) return pl_fail(PL_ERR_INVALID_ARG, "JSON: no text");
    if (len > JSON_MAX_BYTES) return pl_fail(PL_ERR_FORMAT, "JSON: %zu bytes is more than the %u this reader takes", len, JSON_MAX_BYTES);
    json_val *v = calloc(1, sizeof *v);
    if (!v) return pl_fail(PL_ERR_NOMEM, "JSON: out of memory");
    json_cur c = {text, len, 0, 0};
    pl_status st = json_value(&c, v);
    if (!st) {
        json_ws(&c);
        if (c.at != c.n) st = json_err(&c, "text after the value");
    }
    if (st) {
        json_free(v);
        return st;
    }
    *out = v;
    return PL_OK;
}

const json_val *json_get(const json_val *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (obj->keys[i] && !strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}
