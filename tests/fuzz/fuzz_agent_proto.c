/*
 * libFuzzer target for vks-agent's request side: whatever a socketmap or readsocket client sends
 * (agent/proto.c: netstrings, socketmap requests, Exim requests) and the key handling of
 * agent/lookup.c (key forms, path templates: no key may produce a path outside the template's
 * place), plus Exim escaping. Each call must end in a result or a clean refusal, never overrun.
 */
#include "../../agent/lookup.c"
#include "../../agent/proto.c"

/* lookup.c's metrics hooks (metrics.c needs libevent, not linked here) */
void ag_metrics_outcome(const char *o) { (void)o; }
void ag_metrics_vault_latency(double s) { (void)s; }
void ag_lookup_api(struct ag_job *job) { (void)job; abort(); } /* not reached: no vault_api job here */

static void check_path(const char *tmpl, const char *key)
{
    enum ag_form f;
    char out[2 * AG_KEY_MAX + 64], host[AG_KEY_MAX + 1], dom[AG_KEY_MAX + 1];
    if (!ag_key_form(key, &f))
        return;
    if (ag_expand_path(tmpl, key, f, out, sizeof out, host, sizeof host, dom, sizeof dom) == 1) {
        if (strstr(out, "..") != NULL || strncmp(out, "smtp-auth/", 10) != 0 || strchr(out + 10, '/') != NULL)
            abort(); /* a key escaped its path component */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t off = 0;
    for (int i = 0; i < 16 && off <= size; i++) {
        const char *payload = NULL, *why = NULL;
        size_t plen = 0, used = 0;
        enum ag_parse r = ag_netstring_parse(buf + off, size - off, 65536, &used, &payload, &plen, &why);
        if (r != AG_PARSE_OK)
            break;
        if (used == 0 || used > size - off || payload < buf + off || payload + plen > buf + off + used)
            abort();
        const char *n, *k;
        size_t nl, kl;
        if (ag_socketmap_split(payload, plen, &n, &nl, &k, &kl) && kl <= AG_KEY_MAX) {
            char key[AG_KEY_MAX + 1];
            memcpy(key, k, kl);
            key[kl] = '\0';
            for (char *p = key; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            if (strlen(key) == kl) {
                check_path("smtp-auth/{host}", key);
                check_path("smtp-auth/{key}", key);
                check_path("smtp-auth/{domain}", key);
                check_path("smtp-auth/{host}_{port}", key);
            }
        }
        off += used;
    }
    char item[8];
    const char *host, *why;
    size_t hl;
    if (size <= 1024 && ag_exim_request(buf, size, item, &host, &hl, &why) && (host < buf || host + hl > buf + size))
        abort();
    unsigned char esc[64];
    long w = ag_exim_escape(data, size, esc, sizeof esc);
    if (w > (long)sizeof esc)
        abort();
    char reply[128];
    char reason[64];
    size_t rl = size < sizeof reason - 1 ? size : sizeof reason - 1;
    memcpy(reason, data, rl);
    reason[rl] = '\0';
    size_t n = ag_netstring_reply(reply, sizeof reply, "TEMP", reason);
    if (n > 0) {
        const char *p2 = NULL, *why2 = NULL;
        size_t pl2 = 0, used2 = 0;
        if (ag_netstring_parse(reply, n, 65536, &used2, &p2, &pl2, &why2) != AG_PARSE_OK || used2 != n)
            abort(); /* our own replies must be valid netstrings */
    }
    return 0;
}
