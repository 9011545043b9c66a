/*
 * libFuzzer target for vks_restrict (custom_metadata JSON + context).
 * Input layout: "domain\ndestination\n" followed by the custom_metadata text; a missing line means
 * a NULL context field. Every call must return a known status and leave a printable message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_restrict.h"

static char *take_line(const uint8_t **p, size_t *n)
{
    const uint8_t *nl = memchr(*p, '\n', *n);
    if (nl == NULL)
        return NULL;
    size_t k = (size_t)(nl - *p);
    char *s = malloc(k + 1);
    if (s == NULL)
        abort();
    memcpy(s, *p, k);
    s[k] = '\0';
    *p += k + 1;
    *n -= k + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    char *domain = take_line(&p, &n);
    char *dest = take_line(&p, &n);
    struct vks_restrict_ctx ctx = { .domain = domain, .destination = dest };
    struct vks_err err;
    vks_status st = vks_restrict_check((const char *)p, n, &ctx, &err);
    /* one rule: whatever cannot be understood is refused: restricted, or bad_response for a
     * repeated key (as every JSON reader does), never a pass */
    if (st != VKS_OK && st != VKS_E_RESTRICTED && st != VKS_E_NOMEM &&
        !(st == VKS_E_BAD_RESPONSE && strstr(err.msg, "repeated") != NULL))
        abort();
    if (st != VKS_OK)
        for (const char *m = err.msg; *m; m++)
            if ((unsigned char)*m < 0x20 || (unsigned char)*m >= 0x7f)
                abort();
    bool restricted;
    vks_status v = vks_restrict_validate((const char *)p, n, &restricted, &err);
    /* a check that allowed must agree that the lists are well-formed */
    if (st == VKS_OK && v != VKS_OK)
        abort();
    /* metadata without any restriction allows every context */
    if (v == VKS_OK && !restricted && st != VKS_OK && st != VKS_E_NOMEM)
        abort();
    free(domain);
    free(dest);
    return 0;
}
