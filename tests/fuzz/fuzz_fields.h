/*
 * Shared by fuzz_keysource.c and fuzz_config.c: decodes fuzzer bytes into an array of struct
 * vks_field, the form the Lua binding hands to the core (plugin/lvks.c lvks_to_field).
 *
 * Record: [name byte][type byte][len byte][len bytes of payload]...
 *   name byte: index into the caller's name list (mod its size); 0xff = a raw name taken from the
 *              payload (the value is then the empty string);
 *   type byte: VKS_FT_* (mod 6); the payload is the string (any bytes, NULs included), or the
 *              8 bytes of an integer / double, or one byte of a boolean, or a table length.
 * Payload bytes point into a copy of the input kept alive by the caller.
 */
#ifndef FUZZ_FIELDS_H
#define FUZZ_FIELDS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_keysource.h"

#define FUZZ_MAX_FIELDS 64

struct fuzz_fields {
    struct vks_field f[FUZZ_MAX_FIELDS];
    size_t n;
    char names[FUZZ_MAX_FIELDS][64];
    unsigned char *copy; /* owns the string payloads */
};

static void fuzz_fields_decode(const uint8_t *data, size_t size, const char *const *names, size_t nnames,
                               struct fuzz_fields *out)
{
    memset(out, 0, sizeof *out);
    out->copy = malloc(size + 1);
    if (out->copy == NULL)
        abort();
    if (size)
        memcpy(out->copy, data, size);
    size_t i = 0;
    while (i + 3 <= size && out->n < FUZZ_MAX_FIELDS) {
        uint8_t nb = data[i], tb = data[i + 1], lb = data[i + 2];
        i += 3;
        size_t len = lb;
        if (len > size - i)
            len = size - i;
        const unsigned char *pay = out->copy + i;
        i += len;
        struct vks_field *f = &out->f[out->n];
        memset(f, 0, sizeof *f);
        char *nm = out->names[out->n];
        if (nb == 0xff) {
            size_t k = len < 63 ? len : 63;
            memcpy(nm, pay, k);
            nm[k] = '\0';
            len = 0;
        } else {
            snprintf(nm, 64, "%s", names[nb % nnames]);
        }
        f->name = nm;
        f->type = (enum vks_field_type)(tb % 6);
        switch (f->type) {
        case VKS_FT_STRING:
            f->str = (const char *)pay;
            f->len = len;
            break;
        case VKS_FT_INTEGER:
        case VKS_FT_TABLE: {
            long long v = 0;
            memcpy(&v, pay, len < sizeof v ? len : sizeof v);
            f->ival = v;
            break;
        }
        case VKS_FT_NUMBER: {
            double d = 0;
            memcpy(&d, pay, len < sizeof d ? len : sizeof d);
            f->dval = d;
            break;
        }
        case VKS_FT_BOOLEAN:
            f->bval = len > 0 && (pay[0] & 1);
            break;
        default:
            f->type_name = "userdata";
            break;
        }
        /* names are unique in a Lua table: keep the first of each */
        int dup = 0;
        for (size_t j = 0; j < out->n; j++)
            if (strcmp(out->f[j].name, nm) == 0)
                dup = 1;
        if (!dup)
            out->n++;
    }
}

static void fuzz_fields_free(struct fuzz_fields *ff)
{
    free(ff->copy);
    ff->copy = NULL;
}

/* A message must be a NUL-terminated string of printable-ish bytes within its buffer. */
static void fuzz_check_msg(const struct vks_err *e)
{
    if (memchr(e->msg, '\0', sizeof e->msg) == NULL)
        abort();
}

/*
 * Whether a secret value is distinctive enough to look for in a message: at least 8 bytes with one
 * that no fixed message text has (an upper-case letter, a control byte or a non-ASCII byte), so
 * that a secret spelling e.g. "vault_token" is not mistaken for a leak of itself.
 */
static int fuzz_distinctive(const char *s, size_t n)
{
    if (n < 8)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || c < 0x20 || c >= 0x80)
            return 1;
    }
    return 0;
}

/* True when text holds the bytes of a distinctive secret field (named in secret_names) that no
 * other field spells in its name or value. */
static int fuzz_secret_leaks(const struct fuzz_fields *ff, const char *const *secret_names, const char *text,
                             size_t tlen)
{
    for (size_t i = 0; i < ff->n; i++) {
        const struct vks_field *s = &ff->f[i];
        int is_secret = 0;
        for (const char *const *sn = secret_names; *sn != NULL; sn++)
            if (strcmp(s->name, *sn) == 0)
                is_secret = 1;
        if (!is_secret || s->type != VKS_FT_STRING || !fuzz_distinctive(s->str, s->len))
            continue;
        int elsewhere = 0;
        for (size_t j = 0; j < ff->n && !elsewhere; j++) {
            if (j == i)
                continue;
            const struct vks_field *o = &ff->f[j];
            if (o->type == VKS_FT_STRING && o->len >= s->len && memmem(o->str, o->len, s->str, s->len))
                elsewhere = 1;
            if (strlen(o->name) >= s->len && memmem(o->name, strlen(o->name), s->str, s->len))
                elsewhere = 1;
        }
        if (!elsewhere && memmem(text, tlen, s->str, s->len) != NULL)
            return 1;
    }
    return 0;
}

#endif
