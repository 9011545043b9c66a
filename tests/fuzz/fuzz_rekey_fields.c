/*
 * libFuzzer target for vks_rekey_fields (src/vks_rekey_scan.c): for any input the JSON scanner
 * accepts, listing the members of data.data (when it is an object) either succeeds or is refused
 * with VKS_E_INVALID_INPUT; every member's span lies inside the object, members come in order
 * without overlap, a name is NUL-terminated within its buffer, and a member classified as an
 * envelope is a string beginning with "ENC:".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_json.h"
#include "vks_rekey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exact size: ASan sees any read past the end */
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct vks_json_span sp = { 0 };
    struct vks_err err;
    static struct vks_rekey_field f[VKS_REKEY_FIELDS_MAX];
    if (vks_json_find(buf, size, "data.data", &sp, &err) == VKS_OK && sp.type == VKS_JSON_OBJECT) {
        size_t n = 0;
        vks_status st = vks_rekey_fields(buf, size, sp.off, sp.len, f, VKS_REKEY_FIELDS_MAX, &n, &err);
        if (st != VKS_OK && st != VKS_E_INVALID_INPUT)
            abort();
        size_t prev = sp.off;
        for (size_t i = 0; st == VKS_OK && i < n; i++) {
            if (f[i].off <= prev || f[i].len == 0 || f[i].off + f[i].len > sp.off + sp.len - 1)
                abort();
            if (memchr(f[i].name, '\0', sizeof f[i].name) == NULL)
                abort();
            if (f[i].kind == VKS_REKEY_ENC && (f[i].len < 5 || memcmp(buf + f[i].off, "\"ENC:", 5) != 0))
                abort();
            prev = f[i].off + f[i].len - 1;
        }
    }
    free(buf);
    return 0;
}
