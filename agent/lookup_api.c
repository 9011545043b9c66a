/*
 * vks-agent vault_api lookups, on the loop (cache hits, ag_lookup_inline) or on worker threads:
 * one GET of a KV secret answered in Vault's response shape from the core (cache, audit). The
 * core resolves one field at a time, so the agent reads the configured `fields` (default "key")
 * and returns those present; each is one vks_resolve and one audit event (api "agent.vault_api",
 * tag with the client's name and peer); the first names the others as siblings, so a cold read
 * is one Vault request. The body is built directly in an arena slot; an inline try that stops at
 * a field not cached leaves the body and its position in the job for the pool.
 * Restrictions: a Vault-shaped request carries no destination or domain; the context is the
 * client's configured `destination`/`domain` (both NULL unless bound), so a restricted secret is
 * refused (403, a message saying why) to every client not bound to an allowed one.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/rand.h>

#include "agent.h"
#include "vks_resolver.h"

struct jw {
    vks_secret *s;
    bool overflow;
};

static void jw_raw(struct jw *w, const char *p, size_t n)
{
    if (w->overflow || w->s->len + n > w->s->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->s->data + w->s->len, p, n);
    w->s->len += n;
}

static void jw_lit(struct jw *w, const char *p)
{
    jw_raw(w, p, strlen(p));
}

/* A JSON string; bytes >= 0x80 are copied (the values came from Vault's JSON, valid UTF-8). */
static void jw_str(struct jw *w, const unsigned char *p, size_t n)
{
    jw_raw(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = { '\\', (char)ch };
            jw_raw(w, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            jw_raw(w, esc, 6);
        } else {
            jw_raw(w, (const char *)&ch, 1);
        }
    }
    jw_raw(w, "\"", 1);
}

static void uuid4(char out[37])
{
    unsigned char b[16] = { 0 };
    if (RAND_bytes(b, sizeof b) != 1) /* OpenSSL's DRBG: no system call per response */
        memset(b, 0, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void api_error(struct ag_job *job, int status, const char *msg)
{
    struct vks_err ve;
    job->http_status = status;
    vks_secret_free(&job->reply);
    if (vks_secret_alloc(512, &job->reply, &ve) != VKS_OK)
        return;
    struct jw w = { &job->reply, false };
    jw_lit(&w, "{\"errors\":[");
    if (msg != NULL)
        jw_str(&w, (const unsigned char *)msg, strlen(msg));
    jw_lit(&w, "]}\n");
}

/* Vault's error shape for a restricted secret: a Vault read names no destination or domain, so
 * only a client bound to one in the config (destination, domain) can pass a restriction. */
#define RESTRICTED_MSG "permission denied: the secret is restricted (allowed_hosts/allowed_domains) and this client token is not bound to an allowed destination or domain"

/* A credential under an emergency reset (vks cred reset), or a mount whose reset control record
 * is malformed: refused until the credential is rotated (docs/incident-runbook.md). */
#define REVOKED_MSG "permission denied: the credential was reset (revoked) and is refused until it is rotated"

static int status_of(vks_status st)
{
    switch (st) {
    case VKS_E_NOT_FOUND:
    case VKS_E_DELETED:
    case VKS_E_DESTROYED:
        return 404;
    case VKS_E_RESTRICTED:
    case VKS_E_PERMISSION_DENIED:
    case VKS_E_NOT_ENCRYPTED:
    case VKS_E_REVOKED: /* reset: a client must not retry it as a transient failure */
        return 403;
    case VKS_E_UNAVAILABLE:
    case VKS_E_TIMEOUT:
    case VKS_E_SEALED:
    case VKS_E_TLS:
    case VKS_E_BAD_RESPONSE:
    case VKS_E_AUTH_FAILED:
        return 503;
    default:
        return 500;
    }
}

/* The response up to the first field, once per job (an inline try may have written it). */
static bool api_start(struct ag_job *job)
{
    struct vks_err ve;
    if (job->reply.data != NULL)
        return true;
    if (vks_secret_alloc(VKS_SECRET_MAX, &job->reply, &ve) != VKS_OK)
        return false;
    char rid[37];
    uuid4(rid);
    struct jw w = { &job->reply, false };
    jw_lit(&w, "{\"request_id\":\"");
    jw_lit(&w, rid);
    jw_lit(&w, "\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,\"data\":{");
    if (job->kv_version == 2)
        jw_lit(&w, "\"data\":{");
    job->api_overflow = w.overflow;
    return true;
}

void ag_lookup_api(struct ag_job *job)
{
    const struct ag_api_conf *api = &job->conf->api;
    struct ag_cred_map m = { .mount = job->mount, .kv_version = job->kv_version };
    char tag[AG_KEY_MAX + 256];
    snprintf(tag, sizeof tag, "vks-agent vault_api client=%s %s path=%s", job->client->name, job->peer_desc, job->key);
    /* a request names no destination: only a client bound to one (config) has a context */
    struct vks_ctx ctx = { .tag = tag, .destination = job->client->destination, .domain = job->client->domain };
    struct vks_err ve;
    job->result = AG_R_OK;
    if (!api_start(job)) {
        job->result = AG_R_TEMP;
        api_error(job, 500, "out of locked memory");
        return;
    }
    struct jw w = { &job->reply, job->api_overflow };
    for (size_t i = job->api_next; i < api->n_fields; i++) {
        vks_secret v = VKS_SECRET_EMPTY;
        int64_t sv = 0;
        /* the fields after this one come from the same Vault read (cached as siblings) */
        vks_status st = ag_resolve_field(job, &m, job->key, api->fields[i], job->kv_version, job->version,
                                         &ctx, (const char *const *)api->fields + i + 1, api->n_fields - i - 1,
                                         &v, &sv, &ve);
        if (st == VKS_E_NOT_CACHED) { /* inline try: the pool goes on from this field */
            job->api_next = i;
            job->api_overflow = w.overflow;
            job->needs_pool = true;
            return;
        }
        if (st == VKS_E_MISSING_KEY)
            continue;
        if (st != VKS_OK) {
            job->result = st == VKS_E_NOT_FOUND ? AG_R_NOTFOUND : AG_R_TEMP;
            snprintf(job->why, sizeof job->why, "%s: %s", vks_status_code(st), ve.msg);
            int code = status_of(st);
            api_error(job, code, code == 404 ? NULL
                                 : st == VKS_E_RESTRICTED ? RESTRICTED_MSG
                                 : st == VKS_E_REVOKED ? REVOKED_MSG
                                 : code == 403 ? "permission denied"
                                 : code == 503 ? "upstream Vault unavailable" : "internal error");
            return;
        }
        if (job->api_version == 0)
            job->api_version = sv;
        if (job->api_found++ > 0)
            jw_lit(&w, ",");
        jw_str(&w, (const unsigned char *)api->fields[i], strlen(api->fields[i]));
        jw_lit(&w, ":");
        jw_str(&w, v.data, v.len);
        vks_secret_free(&v);
    }
    long long version = job->api_version;
    if (job->kv_version == 2) {
        char meta[200];
        snprintf(meta, sizeof meta, "},\"metadata\":{\"created_time\":\"\",\"custom_metadata\":null,"
                                    "\"deletion_time\":\"\",\"destroyed\":false,\"version\":%lld}",
                 (long long)(version > 0 ? version : job->version > 0 ? job->version : 1));
        jw_lit(&w, meta);
    }
    jw_lit(&w, "},\"wrap_info\":null,\"warnings\":null,\"auth\":null}\n");
    if (w.overflow) {
        job->result = AG_R_TEMP;
        snprintf(job->why, sizeof job->why, "the secret's fields do not fit in %d bytes", VKS_SECRET_MAX);
        api_error(job, 500, "secret too large for the agent");
        return;
    }
    job->http_status = 200;
}
