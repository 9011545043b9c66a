/*
 * libFuzzer target for the audit chain verifier behind `vks audit verify` (src/vks_audit_verify.c):
 * an attacker who can write the audit file controls every byte it reads. The input is split into
 * lines at '\n' and fed in order, with the fuzz key (tests/test-secrets.d/qa.txt) or, when the
 * first byte is odd, without a key (structure-only checks); an optional first line "HEAD <hex>"
 * anchors a head. The verdict must be 0, 1 or 3 and a line the verifier calls bad must be one.
 * The seed corpus (tests/fuzz/corpus/fuzz_audit_verify/) was written by the module with this key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit.h"

#define FUZZ_AUDIT_KEY "cWEtZnV6ei1hdWRpdC1rZXktMDEyMzQ1Njc4OWFiY2Q="

static struct vks_audit_keys *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL) {
        bool found = false;
        struct vks_err e;
        setenv("VKS_AUDIT_KEY", FUZZ_AUDIT_KEY, 1);
        if (vks_audit_keys_load(NULL, &keys, &found, &e) != VKS_OK || !found)
            abort();
    }
    if (size < 1)
        return 0;
    bool keyed = (data[0] & 1) == 0;
    data++;
    size--;
    struct vks_audit_verifier *v = NULL;
    struct vks_err e;
    if (vks_audit_verifier_new(keyed ? keys : NULL, (size & 1) ? "file" : "stderr", &v, &e) != VKS_OK)
        abort();
    const char *p = (const char *)data, *end = p + size;
    unsigned long nlines = 0;
    if (size > 5 && memcmp(p, "HEAD ", 5) == 0) {
        const char *nl = memchr(p, '\n', size);
        size_t hl = nl ? (size_t)(nl - p) : size;
        char head[200];
        if (hl - 5 < sizeof head) {
            memcpy(head, p + 5, hl - 5);
            head[hl - 5] = '\0';
            (void)vks_audit_verifier_add_head(v, head, &e);
        }
        p = nl ? nl + 1 : end;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        /* a copy of exactly the line, so that reading past it is caught */
        char *line = malloc(len ? len : 1);
        if (line == NULL)
            abort();
        memcpy(line, p, len);
        if (keyed)
            (void)vks_audit_line_mac_ok(keys, line, len);
        vks_audit_verifier_line(v, "fuzz.jsonl", line, len);
        free(line);
        nlines++;
        p = nl ? nl + 1 : end;
    }
    int rc = vks_audit_verifier_finish(v, NULL);
    if (rc != 0 && rc != 1 && rc != 3)
        abort();
    unsigned long bad_line = 0;
    long long bad_seq = -1;
    vks_audit_verifier_first_bad(v, &bad_line, &bad_seq);
    if (bad_line > nlines) /* 0: a problem of no one line (e.g. an anchored head never seen) */
        abort();
    vks_audit_verifier_free(v);
    return 0;
}
