/*
 * vks-serve: the audit trail in the API and the UI. One reader: the file the core writes
 * (VKS_AUDIT_FILE, set from [audit] file) fed line by line to the core's verifier
 * (vks_audit_verifier_*, as `vks audit verify` and `vks audit report`), whose event callback hands
 * over each parsed event; the filters pick the newest `limit` of them, and the verdict of the
 * whole chain comes with every answer. Vault cannot grant the audit file: the query of the whole
 * trail is given to an operator whose token may list the credentials' metadata (every role of
 * docs/credentials.md but mta-reader and tenants); a credential's own events come with its page.
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve.h"
#include "vks_audit.h"
#include "vks_file.h"

struct q {
    const char *path, *op, *action, *since, *until;
    int limit;
    json_object **ring;
    int n, next;
};

static const char *sget(const struct json_object *ev, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex((json_object *)ev, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : NULL;
}

static void on_event(void *ud, const char *where, unsigned long line, const struct json_object *ev, bool bad)
{
    (void)where;
    struct q *q = ud;
    const char *type = sget(ev, "type"), *ts = sget(ev, "ts");
    if (!type || (strncmp(type, "cred.", 5) && strncmp(type, "serve.", 6) && strncmp(type, "backup.", 7)))
        return; /* the resolver's lookups have their own report (vks audit report) */
    if (!q->action && (!strcmp(type, "serve.view") || !strcmp(type, "serve.list")))
        return; /* reads are many: shown when asked for (action=view, action=list) */
    if (q->path && (!sget(ev, "path") || strcmp(sget(ev, "path"), q->path)))
        return;
    if (q->op && (!sget(ev, "operator") || !strstr(sget(ev, "operator"), q->op)))
        return;
    if (q->action && !strstr(type, q->action))
        return;
    if ((q->since && ts && strcmp(ts, q->since) < 0) || (q->until && ts && strcmp(ts, q->until) > 0))
        return;
    json_object *c = NULL;
    if (json_object_deep_copy((json_object *)ev, &c, NULL) != 0)
        return;
    json_object_object_add(c, "line", json_object_new_int64((int64_t)line));
    json_object_object_add(c, "line_verified", json_object_new_boolean(!bad));
    json_object_object_del(c, "mac");
    json_object_put(q->ring[q->next]);
    q->ring[q->next] = c;
    q->next = (q->next + 1) % q->limit;
    if (q->n < q->limit)
        q->n++;
}

static int feed(struct vks_audit_verifier *v, const char *path)
{
    const struct vks_file_opts fo = { .what = "audit log", .code = VKS_E_CONFIG };
    struct vks_err e;
    int fd = -1;
    if (vks_file_open(path, &fo, &fd, NULL, &e) != VKS_OK)
        return -1;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        vks_audit_verifier_line(v, path, line, len);
    }
    free(line);
    fclose(f);
    return 0;
}

json_object *sv_audit_query(const char *path, const char *operator_name, const char *action, const char *since,
                            const char *until, int limit, char *verdict, size_t vcap)
{
    json_object *out = json_object_new_array();
    const char *file = getenv("VKS_AUDIT_FILE");
    snprintf(verdict, vcap, "unavailable");
    if (!file || !*file)
        return out;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_audit_keys *keys = NULL;
    bool found = false;
    struct vks_audit_verifier *v = NULL;
    if (vks_audit_keys_load(NULL, &keys, &found, &e) != VKS_OK || vks_audit_verifier_new(keys, "file", &v, &e) != VKS_OK) {
        vks_audit_keys_free(keys);
        return out;
    }
    struct q q = { path, operator_name, action, since, until, limit < 1 ? 1 : limit > 500 ? 500 : limit, NULL, 0, 0 };
    q.ring = calloc((size_t)q.limit, sizeof *q.ring);
    vks_audit_verifier_on_event(v, on_event, &q);
    if (q.ring && feed(v, file) == 0) {
        int rc = vks_audit_verifier_finish(v, NULL);
        unsigned long bad = 0;
        long long seq = -1;
        vks_audit_verifier_first_bad(v, &bad, &seq);
        if (rc == 0)
            snprintf(verdict, vcap, "verified");
        else if (rc == 1)
            snprintf(verdict, vcap, "broken at line %lu", bad);
        else
            snprintf(verdict, vcap, "unverifiable (no audit key for some chain)");
        for (int i = 0; i < q.n; i++) /* newest first */
            json_object_array_add(out, q.ring[(q.next - 1 - i + q.limit) % q.limit]);
    } else {
        for (int i = 0; q.ring && i < q.n; i++)
            json_object_put(q.ring[i]);
    }
    free(q.ring);
    vks_audit_verifier_free(v);
    vks_audit_keys_free(keys);
    return out;
}

void sv_api_audit(struct sv_req *r, bool verify_only)
{
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    bool can = false;
    char p[VKS_CRED_NAME_MAX + 160];
    vks_status st = sv_ctx(r, NULL, &ctx, &e);
    snprintf(p, sizeof p, "%s/metadata/%s", ctx.mount, ctx.prefix);
    if (st == VKS_OK)
        st = vks_vault_token_can(r->s->vault, p, "list", &can, &e);
    if (st == VKS_OK && !can)
        st = vks_err_set(&e, VKS_E_PERMISSION_DENIED, "the audit trail covers every credential under %s: this "
                         "role may not list them", ctx.prefix);
    if (st != VKS_OK)
        {
            sv_send_status(r, st, &e);
            return;
        }
    const char *lim = sv_query(r, "limit"), *cred = sv_query(r, "credential");
    int limit = lim ? atoi(lim) : 100;
    if (lim && (limit < 1 || limit > 500))
        {
            sv_send_error(r, 400, "invalid_input", "limit", "limit: 1-500");
            return;
        }
    char path[512], verdict[80];
    if (cred)
        snprintf(path, sizeof path, "%s%s", ctx.prefix, cred);
    json_object *ev = sv_audit_query(cred ? path : NULL, sv_query(r, "operator"), sv_query(r, "action"),
                                     sv_query(r, "since"), sv_query(r, "until"), verify_only ? 1 : limit, verdict,
                                     sizeof verdict);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "chain", json_object_new_string(verdict));
    json_object_object_add(o, "verified", json_object_new_boolean(!strcmp(verdict, "verified")));
    if (verify_only)
        json_object_put(ev);
    else
        json_object_object_add(o, "events", ev);
    sv_send_json(r, 200, o, true);
}
