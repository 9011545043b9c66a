/*
 * Fuzzes the audit log verifier (the parser behind `vks audit verify`) and the event writer.
 *
 * Input byte 0 chooses:
 *  - even: the rest is an audit log; its lines are fed to a verifier with a key, plus an anchored
 *    head. It must never crash, leak or hang, and return 0, 1 or 3.
 *  - odd: the rest is split at NUL bytes into event strings (path, ctx fields, error, ...), one
 *    event is written (callback capture only, no file) and the captured lines must verify OK:
 *    whatever bytes a policy passes, the line is valid JSON and its MAC checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit.h"

static struct vks_audit_keys *keys;

static void init(void)
{
    if (keys != NULL)
        return;
    setenv("VKS_AUDIT_KEY", "ZnV6ei1hdWRpdC1rZXktMDEyMzQ1Njc4OWFiY2RlZmc=", 1);
    bool found = false;
    if (vks_audit_keys_load(NULL, &keys, &found, NULL) != VKS_OK || !found)
        abort();
}

static void verify_log(const uint8_t *data, size_t size)
{
    struct vks_audit_verifier *v = NULL;
    if (vks_audit_verifier_new(keys, "file", &v, NULL) != VKS_OK)
        abort();
    (void)vks_audit_verifier_add_head(
        v, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL);
    size_t at = 0;
    while (at <= size) {
        const uint8_t *nl = at < size ? memchr(data + at, '\n', size - at) : NULL;
        size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
        if (len > 0 || nl != NULL)
            vks_audit_verifier_line(v, "fuzz", (const char *)data + at, len);
        at += len + 1;
    }
    int rc = vks_audit_verifier_finish(v, NULL);
    if (rc != 0 && rc != 1 && rc != 3)
        abort();
    vks_audit_verifier_free(v);
}

static void round_trip(const uint8_t *data, size_t size)
{
    /* up to 12 NUL-terminated strings from the input */
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return;
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *s[12] = { 0 };
    size_t n = 0, at = 0;
    while (n < 12 && at <= size) {
        s[n++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.callback = true;
    if (vks_audit_configure(&cfg, NULL) != VKS_OK)
        abort();
    struct vks_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.outcome = (enum vks_audit_outcome)(size % VKS_AUDIT_OUTCOME_COUNT);
    ev.status = VKS_OK;
    ev.source = VKS_AUDIT_SRC_VAULT;
    ev.path = s[0];
    ev.mount = s[1];
    ev.key = s[2];
    ev.error = s[3];
    ev.vault_addr = s[4];
    ev.token_accessor = s[5];
    ev.ctx.domain = s[6];
    ev.ctx.site_name = s[7];
    ev.ctx.username = s[8];
    ev.ctx.destination = s[9];
    ev.ctx.tag = s[10];
    ev.file_path = s[11];
    ev.value = data;
    ev.value_len = size;
    vks_audit_capture_begin();
    vks_status st = vks_audit_emit(&ev, NULL, NULL);
    char *lines = vks_audit_capture_end();
    if (st != VKS_OK || lines == NULL)
        abort();
    struct vks_audit_verifier *v = NULL;
    if (vks_audit_verifier_new(keys, "file", &v, NULL) != VKS_OK)
        abort();
    char *p = lines;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        vks_audit_verifier_line(v, "fuzz", p, len);
        p += len + (nl ? 1 : 0);
    }
    if (vks_audit_verifier_finish(v, NULL) != 0)
        abort(); /* a line we wrote does not verify */
    vks_audit_verifier_free(v);
    free(lines);
    free(buf);
    vks_audit_shutdown(); /* a fresh chain (start event) for the next input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size == 0)
        return 0;
    if (data[0] & 1)
        round_trip(data + 1, size - 1);
    else
        verify_log(data + 1, size - 1);
    return 0;
}
