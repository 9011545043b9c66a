/*
 * libFuzzer target for the setup option parsers (vks_config): every option vks.setup accepts,
 * with any value of any type (fields as the Lua binding builds them, see fuzz_fields.h), then the
 * cross-option checks, copy, comparison and clear; and the shared duration / boolean / size
 * parsers on the first field. Only in-memory parsing: files are never opened here
 * (vks_config_check_files is not called). Messages must stay terminated and never repeat the
 * bytes given as token or secret_id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fields.h"
#include "vks_config.h"

static const char *const *names;
static size_t nnames;

static const char *const secret_names[] = { "token", "secret_id", NULL };

static int leaks(const struct fuzz_fields *ff, const char *text)
{
    return fuzz_secret_leaks(ff, secret_names, text, strlen(text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (names == NULL) {
        names = vks_config_option_names();
        while (names[nnames] != NULL)
            nnames++;
        if (nnames == 0)
            abort();
    }
    struct fuzz_fields ff;
    fuzz_fields_decode(data, size, names, nnames, &ff);
    struct vks_err e;
    vks_err_clear(&e);
    if (ff.n > 0) {
        long ms = 0;
        bool b = false;
        size_t sz = 0;
        (void)vks_parse_duration_ms(&ff.f[0], "fuzz", &ms, &e);
        fuzz_check_msg(&e);
        (void)vks_parse_bool(&ff.f[0], "fuzz", &b, &e);
        fuzz_check_msg(&e);
        (void)vks_parse_size(&ff.f[0], "fuzz", &sz, &e);
        fuzz_check_msg(&e);
    }
    struct vks_config cfg;
    vks_config_defaults(&cfg);
    vks_status st = VKS_OK;
    for (size_t i = 0; i < ff.n && st == VKS_OK; i++) {
        vks_err_clear(&e);
        st = vks_config_set(&cfg, &ff.f[i], &e);
        fuzz_check_msg(&e);
        if (st != VKS_OK && leaks(&ff, e.msg))
            abort();
    }
    if (st == VKS_OK) {
        vks_err_clear(&e);
        st = vks_config_finish(&cfg, &e);
        fuzz_check_msg(&e);
        if (st != VKS_OK && leaks(&ff, e.msg))
            abort();
    }
    if (st == VKS_OK) {
        struct vks_config cp;
        memset(&cp, 0, sizeof cp);
        if (vks_config_copy(&cfg, &cp, &e) == VKS_OK) {
            if (!vks_config_equal(&cfg, &cp))
                abort();
            vks_config_clear(&cp);
        }
    }
    vks_config_clear(&cfg);
    vks_config_clear(&cfg);
    fuzz_fields_free(&ff);
    return 0;
}
