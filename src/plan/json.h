/*
 * A small JSON reader for the fixed-schema files the library reads itself
 * (model manifests): RFC 8259 text into a tree of json_val, every byte
 * bounds-checked, nesting limited (JSON_MAX_DEPTH), strings decoded to
 * NUL-terminated UTF-8 (\u escapes and surrogate pairs; a NUL inside a
 * string is refused). Not a general-purpose library: no streaming, no
 * writer. The tools use jansson; the library stays dependency-free.
 */
#ifndef PL_JSON_H
#define PL_JSON_H

#include "../core/core.h"

#include <stdbool.h>

#define JSON_MAX_DEPTH 64
#define JSON_MAX_BYTES (64u << 20)

typedef enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type;

typedef struct json_val {
    json_type type;
    bool b;
    double num;
    bool is_int;        /* the number is an integer that fits int64 */
    int64_t i;
    char *str;          /* JSON_STR */
    int n;              /* JSON_ARR / JSON_OBJ: element count */
    struct json_val *items; /* elements (values of an object) */
    char **keys;        /* JSON_OBJ: keys, in order */
} json_val;

/* Parse len bytes; *out is a malloc'd tree (json_free). PL_ERR_FORMAT names
 * the byte offset and what was expected. */
pl_status json_parse(const char *text, size_t len, json_val **out);
void json_free(json_val *v);
/* Member of an object by key (the first), NULL when absent or not an object. */
const json_val *json_get(const json_val *obj, const char *key);

#endif
