/*
 * fuzz_keysource: keysource validation, address validation and the config option parsers, fed
 * with arbitrary fields. Input: lines "<type><name>=<value>", type one of s (string), i (integer),
 * n (number), b (boolean), t (table), o (other). Values may hold any byte but '\n'.
 * Invariants checked: no crash or leak; a parsed keysource describes itself without its token or
 * key_data; copies equal the original; the config survives any option and clears.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_config.h"
#include "vks_keysource.h"

#define MAXF 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    struct vks_field f[MAXF];
    size_t n = 0;
    char *p = buf, *end = buf + size;
    while (p < end && n < MAXF) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl != NULL ? nl : end;
        *line_end = '\0';
        char *eq = memchr(p, '=', (size_t)(line_end - p));
        if (eq != NULL && eq > p) {
            *eq = '\0';
            struct vks_field *x = &f[n++];
            memset(x, 0, sizeof *x);
            x->name = p + 1;
            const char *v = eq + 1;
            size_t vlen = (size_t)(line_end - (eq + 1));
            switch (p[0]) {
            case 'i': x->type = VKS_FT_INTEGER; x->ival = strtoll(v, NULL, 10); break;
            case 'n': x->type = VKS_FT_NUMBER; x->dval = strtod(v, NULL); break;
            case 'b': x->type = VKS_FT_BOOLEAN; x->bval = vlen > 0 && v[0] == '1'; break;
            case 't': x->type = VKS_FT_TABLE; x->ival = (long long)vlen; break;
            case 'o': x->type = VKS_FT_OTHER; x->type_name = "userdata"; break;
            default: x->type = VKS_FT_STRING; x->str = v; x->len = vlen; break;
            }
        }
        p = line_end + 1;
    }

    struct vks_err err;
    struct vks_keysource ks, copy;
    if (vks_keysource_from_fields(f, n, &ks, &err) == VKS_OK) {
        char d[512];
        static const char default_address[] = "https://127.0.0.1:8200";
        vks_keysource_describe(&ks, default_address, d, sizeof d);
        /* a token must never reach a description (unless the same bytes are also a name in it) */
        if (ks.token.len >= 8 && memmem(d, strlen(d), ks.token.data, ks.token.len) != NULL) {
            const char *names[] = { ks.mount, ks.path, ks.key, ks.address, ks.namespace_,
                                    default_address };
            bool named = false;
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                if (names[i] != NULL && memmem(names[i], strlen(names[i]), ks.token.data, ks.token.len) != NULL)
                    named = true;
            if (!named)
                abort();
        }
        if (vks_keysource_copy(&ks, &copy, &err) == VKS_OK) {
            if (copy.kind != ks.kind || copy.token.len != ks.token.len || copy.key_data.len != ks.key_data.len)
                abort();
            vks_keysource_clear(&copy);
        }
        vks_keysource_clear(&ks);
    }
    if (n > 0 && f[0].type == VKS_FT_STRING) {
        if (vks_keysource_from_path(f[0].str, f[0].len, &ks, &err) == VKS_OK)
            vks_keysource_clear(&ks);
        if (vks_address_validate(f[0].str, f[0].len, "fuzz", &err) == VKS_OK) {
            char *a = strndup(f[0].str, f[0].len);
            if (a != NULL) {
                (void)vks_address_is_loopback(a);
                free(a);
            }
        }
    }

    struct vks_config cfg;
    vks_config_defaults(&cfg);
    for (size_t i = 0; i < n; i++) {
        long ms;
        size_t sz;
        bool b;
        (void)vks_parse_duration_ms(&f[i], "fuzz", &ms, &err);
        (void)vks_parse_size(&f[i], "fuzz", &sz, &err);
        (void)vks_parse_bool(&f[i], "fuzz", &b, &err);
        (void)vks_config_set(&cfg, &f[i], &err);
    }
    (void)vks_config_finish(&cfg, &err);
    struct vks_config c2;
    if (vks_config_copy(&cfg, &c2, &err) == VKS_OK) {
        if (!vks_config_equal(&cfg, &c2))
            abort();
        vks_config_clear(&c2);
    }
    vks_config_clear(&cfg);
    free(buf);
    return 0;
}
