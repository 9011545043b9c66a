/*
 * libFuzzer target for vks_keysource: table keysources as the binding hands them over (fields,
 * see fuzz_fields.h), string keysources (file paths), vault addresses and kv_version values.
 * Every call must return a known status with a terminated message, copies and descriptions must
 * work on whatever was accepted, and neither a message nor a description may repeat the bytes of
 * key_data or vault_token.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fields.h"
#include "vks_keysource.h"

static const char *const names[] = {
    "key_data", "vault_mount", "vault_path", "vault_key", "vault_address", "vault_token",
    "vault_namespace", "vault_kv_version", "vault_version", "event_name", "event_args",
    "vault_typo", "other", "",
};

static const char *const secret_names[] = { "key_data", "vault_token", NULL };

static int secret_leaks(const struct fuzz_fields *ff, const char *text, size_t tlen)
{
    return fuzz_secret_leaks(ff, secret_names, text, tlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct vks_err e;
    vks_err_clear(&e);

    if ((mode & 3) == 0) {
        /* a string keysource: a file path, any bytes */
        struct vks_keysource ks;
        memset(&ks, 0, sizeof ks);
        vks_status st = vks_keysource_from_path((const char *)data, size, &ks, &e);
        if (st != VKS_OK && st != VKS_E_BAD_KEYSOURCE)
            abort();
        fuzz_check_msg(&e);
        if (st == VKS_OK && ks.kind != VKS_KS_FILE)
            abort();
        vks_keysource_clear(&ks);
        vks_keysource_clear(&ks);
        return 0;
    }
    if ((mode & 3) == 1) {
        /* an address, as vault_address or VAULT_ADDR */
        vks_status st = vks_address_validate((const char *)data, size, "vault_address", &e);
        fuzz_check_msg(&e);
        if (st == VKS_OK) {
            char *z = strndup((const char *)data, size);
            if (z == NULL)
                abort();
            (void)vks_address_is_loopback(z);
            free(z);
        }
        return 0;
    }

    struct fuzz_fields ff;
    fuzz_fields_decode(data, size, names, sizeof names / sizeof names[0], &ff);
    if ((mode & 3) == 2 && ff.n > 0) {
        int v = 0;
        vks_status st = vks_kv_version_parse(&ff.f[0], &v, &e);
        fuzz_check_msg(&e);
        if (st == VKS_OK && v != 0 && v != 1 && v != 2)
            abort();
    }
    struct vks_keysource ks;
    memset(&ks, 0, sizeof ks);
    vks_err_clear(&e);
    vks_status st = vks_keysource_from_fields(ff.f, ff.n, &ks, &e);
    fuzz_check_msg(&e);
    if (st != VKS_OK) {
        if (st != VKS_E_BAD_KEYSOURCE && st != VKS_E_LOCKED_MEMORY)
            abort();
        if (ks.kind != VKS_KS_NONE || ks.key_data.data != NULL || ks.token.data != NULL)
            abort(); /* on failure nothing is left to release */
        if (secret_leaks(&ff, e.msg, strlen(e.msg)))
            abort();
    } else {
        char d[512];
        vks_keysource_describe(&ks, (mode & 4) ? "https://vault.example:8200" : NULL, d, sizeof d);
        if (memchr(d, '\0', sizeof d) == NULL || secret_leaks(&ff, d, strlen(d)))
            abort();
        (void)vks_keysource_kind_name(ks.kind);
        struct vks_keysource cp;
        memset(&cp, 0, sizeof cp);
        if (vks_keysource_copy(&ks, &cp, &e) == VKS_OK) {
            if (cp.kind != ks.kind || cp.key_data.len != ks.key_data.len ||
                (ks.key_data.len && memcmp(cp.key_data.data, ks.key_data.data, ks.key_data.len) != 0))
                abort();
            vks_keysource_clear(&cp);
        }
    }
    vks_keysource_clear(&ks);
    fuzz_fields_free(&ff);
    return 0;
}
