/*
 * vks_rekey, the pure parts (contract: vks_rekey.h): the members of a secret's data object, read
 * without decoding any value, and the crash drill's spec. No I/O, no allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "vks_json.h"
#include "vks_rekey.h"

static size_t skip_ws(const char *b, size_t i, size_t end)
{
    while (i < end && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/* i at an opening quote: the index just past the closing one. */
static size_t skip_string(const char *b, size_t i, size_t end)
{
    for (i++; i < end && b[i] != '"'; i++)
        if (b[i] == '\\')
            i++;
    return i < end ? i + 1 : end;
}

/* i at the first byte of a value (well formed): the index just past it. */
static size_t skip_value(const char *b, size_t i, size_t end)
{
    if (b[i] == '"')
        return skip_string(b, i, end);
    if (b[i] != '{' && b[i] != '[') {
        while (i < end && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' &&
               b[i] != '\n' && b[i] != '\r')
            i++;
        return i;
    }
    int depth = 0;
    while (i < end) {
        if (b[i] == '"') {
            i = skip_string(b, i, end);
            continue;
        }
        if (b[i] == '{' || b[i] == '[')
            depth++;
        else if ((b[i] == '}' || b[i] == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return end;
}

static enum vks_rekey_kind kind_of(const char *b, size_t off, size_t len)
{
    if (b[off] != '"')
        return VKS_REKEY_NOT_STRING;
    /* Vault (Go's encoding/json) never escapes the bytes of "ENC:", so the raw prefix decides */
    return len >= 5 && memcmp(b + off, "\"ENC:", 5) == 0 ? VKS_REKEY_ENC : VKS_REKEY_PLAIN;
}

vks_status vks_rekey_fields(const char *buf, size_t len, size_t obj_off, size_t obj_len, struct vks_rekey_field *out,
                            size_t cap, size_t *n, struct vks_err *err)
{
    *n = 0;
    if (buf == NULL || obj_len < 2 || obj_off + obj_len > len || buf[obj_off] != '{')
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the secret's data is not a JSON object");
    size_t end = obj_off + obj_len - 1, i = skip_ws(buf, obj_off + 1, end);
    while (i < end) {
        if (buf[i] != '"')
            return vks_err_set(err, VKS_E_INVALID_INPUT, "the secret's data is not a well-formed object");
        size_t kend = skip_string(buf, i, end);
        struct vks_json_span ks = { VKS_JSON_STRING, i, kend - i };
        size_t klen = vks_json_string_decoded_len(buf, &ks);
        if (*n == cap)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "the secret has more than %zu fields", cap);
        struct vks_rekey_field *f = &out[*n];
        size_t got = 0;
        if (klen > VKS_REKEY_FIELD_NAME_MAX ||
            vks_json_string_decode(buf, &ks, (unsigned char *)f->name, VKS_REKEY_FIELD_NAME_MAX, &got, NULL) != VKS_OK)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "a field name of %zu bytes is longer than %d", klen,
                               VKS_REKEY_FIELD_NAME_MAX);
        f->name[got] = '\0';
        i = skip_ws(buf, kend, end);
        if (i >= end || buf[i] != ':')
            return vks_err_set(err, VKS_E_INVALID_INPUT, "the secret's data is not a well-formed object");
        i = skip_ws(buf, i + 1, end);
        size_t vend = skip_value(buf, i, end);
        f->off = i;
        f->len = vend - i;
        f->kind = kind_of(buf, i, f->len);
        (*n)++;
        i = skip_ws(buf, vend, end);
        if (i < end && buf[i] == ',')
            i = skip_ws(buf, i + 1, end);
    }
    return VKS_OK;
}

bool vks_rekey_drill_match(const char *spec, const char *step, unsigned long count)
{
    if (spec == NULL || step == NULL)
        return false;
    size_t sl = strlen(step);
    if (strncmp(spec, step, sl) != 0)
        return false;
    if (spec[sl] == '\0')
        return count == 1;
    if (spec[sl] != ':' || spec[sl + 1] < '1' || spec[sl + 1] > '9')
        return false;
    char *e = NULL;
    unsigned long want = strtoul(spec + sl + 1, &e, 10);
    return e && *e == '\0' && want == count;
}
