/*
 * libFuzzer target for the server's request parser (tools/serve/request.c):
 * the first byte picks the endpoint, the rest is the body. Accepted requests
 * must keep the parser's promises (required fields present, roles known,
 * stop list within bounds, numbers in range); rejected ones must carry a 4xx
 * or 500 status and a message. serve_utf8_clean must always give valid UTF-8
 * and be the identity on its own output. Seeds: fuzz/seeds/http_json/.
 */
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
    if (!ok) abort(); /* a broken promise: libFuzzer reports the input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const serve_kind kinds[] = {SERVE_CHAT, SERVE_COMPLETION, SERVE_LLAMA, SERVE_CHAT_MESSAGE,
                                       SERVE_CHAT_CREATE};
    const serve_kind kind = kinds[data[0] % 5];
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    serve_req r;
    serve_err err;
    if (serve_req_parse(kind, body, len, &r, &err) == 0) {
        check(r.kind == kind && r.n_stop >= 0 && r.n_stop <= SERVE_MAX_STOP);
        for (int i = 0; i < r.n_stop; i++) check(r.stop[i] && r.stop[i][0]);
        check(r.n_predict >= -1 && r.n_predict <= (1 << 20));
        check(r.sampling.temp >= 0 && r.sampling.temp <= 5 && r.sampling.top_p >= 0 && r.sampling.top_p <= 1);
        if (kind == SERVE_CHAT) {
            check(r.n_msgs >= 1 && r.n_msgs <= SERVE_MAX_MESSAGES && r.msgs);
            for (int i = 0; i < r.n_msgs; i++) {
                const char *role = r.msgs[i].role;
                check(role && r.msgs[i].content);
                check(!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant"));
            }
        }
        if (kind == SERVE_COMPLETION || kind == SERVE_LLAMA) check(r.prompt != NULL);
        if (kind == SERVE_CHAT_MESSAGE) check(r.content != NULL);
        serve_req_free(&r);
    } else {
        check(err.status >= 400 && err.status <= 500 && err.message[0]);
    }
    size_t n1 = 0, n2 = 0;
    char *a = serve_utf8_clean(body, len, &n1);
    if (a) {
        check(n1 <= 3 * len && strlen(a) == n1);
        char *b = serve_utf8_clean(a, n1, &n2);
        check(b && n2 == n1 && !memcmp(a, b, n1)); /* clean output is valid UTF-8 */
        free(b);
    }
    free(a);
    return 0;
}
