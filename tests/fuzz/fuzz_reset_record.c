/*
 * libFuzzer target for vks_reset_record_parse (the reset control record, as Vault's GET data
 * answer). Rules: every call returns OK or a known refusal with a printable message naming the
 * control record; a record that parses is consistent (entries ascending, within first_seq..seq,
 * each path or prefix non-empty) and survives a round trip through vks_reset_record_json.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_reset_record.h"

static void same(const struct vks_reset_record *a, const struct vks_reset_record *b)
{
    if (a->seq != b->seq || a->first_seq != b->first_seq || a->n != b->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const struct vks_reset_entry *x = &a->entries[i], *y = &b->entries[i];
        if (x->seq != y->seq || x->scope != y->scope || x->npaths != y->npaths || strcmp(x->prefix, y->prefix) != 0)
            abort();
        for (size_t j = 0; j < x->npaths; j++)
            if (strcmp(x->paths[j], y->paths[j]) != 0 || !vks_reset_entry_matches(y, x->paths[j], strlen(x->paths[j])))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vks_reset_record r;
    struct vks_err err;
    vks_status st = vks_reset_record_parse((const char *)data, size, &r, &err);
    if (st != VKS_OK) {
        if ((st != VKS_E_BAD_RESPONSE && st != VKS_E_NOMEM) || r.n != 0 || r.entries != NULL)
            abort();
        if (st == VKS_E_BAD_RESPONSE && strncmp(err.msg, "control record: ", 16) != 0)
            abort();
        for (const char *m = err.msg; *m; m++)
            if ((unsigned char)*m < 0x20 || (unsigned char)*m >= 0x7f)
                abort();
        return 0;
    }
    for (size_t i = 0; i < r.n; i++) {
        const struct vks_reset_entry *e = &r.entries[i];
        if (e->seq < r.first_seq || e->seq > r.seq || (i > 0 && e->seq <= r.entries[i - 1].seq))
            abort();
        if (e->scope == VKS_RESET_ALL ? e->prefix[0] == '\0' : e->npaths == 0)
            abort();
    }
    char *json = NULL;
    if (vks_reset_record_json(&r, &json, &err) == VKS_OK) {
        size_t n = strlen(json) + 32;
        char *answer = malloc(n);
        if (answer == NULL)
            abort();
        int k = snprintf(answer, n, "{\"data\":{\"data\":%s}}", json);
        struct vks_reset_record r2;
        if (vks_reset_record_parse(answer, (size_t)k, &r2, &err) != VKS_OK)
            abort();
        same(&r, &r2);
        vks_reset_record_free(&r2);
        free(answer);
    }
    free(json);
    vks_reset_record_free(&r);
    return 0;
}
