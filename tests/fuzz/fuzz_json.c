/*
 * libFuzzer target for the JSON scanner (src/vks_json.c): every input must be either refused with
 * VKS_E_BAD_RESPONSE or scanned; every span found must lie inside the input; decoding a found string
 * must fit its computed length; array iteration must terminate inside the array.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_span(const struct vks_json_span *s, size_t size)
{
    if (s->type == VKS_JSON_NONE)
        return;
    if (s->off > size || s->len > size - s->off || s->len == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy into an exact-size heap buffer so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct vks_json_query q[5] = {
        { .npath = 0 },
        { .path = { "data", "data", "key" }, .npath = 3 },
        { .path = { "data", "metadata", "custom_metadata" }, .npath = 3 },
        { .path = { "errors" }, .npath = 1 },
        { .path = { "auth", "client_token" }, .npath = 2 },
    };
    struct vks_err err;
    vks_status st = vks_json_scan(buf, size, q, 5, "fuzz input", &err);
    if (st != VKS_OK && st != VKS_E_BAD_RESPONSE && st != VKS_E_NOMEM /* key index */)
        abort();
    if (st == VKS_OK) {
        if (q[0].found.type == VKS_JSON_NONE)
            abort();
        for (int i = 0; i < 5; i++) {
            check_span(&q[i].found, size);
            if (q[i].found.type == VKS_JSON_STRING) {
                size_t need = vks_json_string_decoded_len(buf, &q[i].found);
                unsigned char *out = malloc(need ? need : 1);
                size_t got = 0;
                if (!out)
                    break;
                if (vks_json_string_decode(buf, &q[i].found, out, need, &got, NULL) != VKS_OK || got != need)
                    abort();
                free(out);
            }
            if (q[i].found.type == VKS_JSON_ARRAY) {
                size_t cur = 0, n = 0;
                struct vks_json_span el;
                while (vks_json_array_next(buf, &q[i].found, &cur, &el)) {
                    check_span(&el, size);
                    if (el.off < q[i].found.off || el.off + el.len > q[i].found.off + q[i].found.len)
                        abort();
                    if (++n > size)
                        abort();
                }
            }
        }
    }
    free(buf);
    return 0;
}
