/*
 * vks_cred_rotate: zero-downtime rotation, abort and rollback (contract: vks_cred_rotate.h;
 * design: docs/internals/cred-rotate.md; stored shape: docs/credentials.md "Rotation").
 *
 * State lives in two places, each written with check-and-set:
 *  - the credential's custom_metadata (state, rotation_id, rotation_started, current/previous/
 *    pending_version), under the data-version lock of docs/credentials.md;
 *  - the pending record <mount>/data/vks-rotation/<prefix><name>: pending_key (an envelope bound
 *    to that path and field), rotation_id, step, base_version, finish_version.
 * The main path's latest version always holds the current password, so resolvers (and KumoMTA
 * reading Vault directly) never see a pending one.
 */
#include <arpa/inet.h>
#include <json-c/json.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "vks_cred_int.h"
#include "vks_cred_reset.h"
#include "vks_cred_rotate.h"
#include "vks_hook.h"
#include "vks_restrict.h"

#define ROTATION_DIR "vks-rotation/"
#define SMTP_TIMEOUT_MS 30000

struct rot {
    struct vks_cred_ctx *ctx;
    const char *name;
    const struct vks_cred_rotate_opts *opts;
    struct vks_cred_rotate_result *res;
    char path[VKS_CRED_PATH_MAX], ppath[VKS_CRED_PATH_MAX + 16];
    struct vks_cred_record rec;      /* the main path's metadata, as last read or written        */
    char rid[64];                    /* the rotation in flight                                  */
    vks_secret pw;                   /* the pending password                                    */
    char *penv;                      /* its envelope in the pending record (heap, wiped)        */
    bool have_record;                /* the pending record of THIS rotation exists              */
    bool stale_record;               /* a pending record of another rotation (or unreadable)     */
    int64_t pver;                    /* the pending record's version (its cas)                   */
    char step[16];                   /* the pending record's step                               */
    int64_t base_version, finish_version;
};

/* The drill knob (docs/internals/cred-rotate.md "Crash drills"): dies as if killed after `step`. */
static void drill(const char *step)
{
    const char *k = getenv("VKS_CRED_ROTATE_STOP_AFTER");
    if (k != NULL && strcmp(k, step) == 0)
        _exit(137);
}

static void progress(struct rot *r, const char *step, const char *detail)
{
    if (r->opts && r->opts->progress)
        r->opts->progress(step, detail, r->opts->progress_arg);
}

static bool is_rotating(const struct vks_cred_record *rec)
{
    return strcmp(rec->state, "rotating") == 0;
}

static vks_status new_rotation_id(char out[64], struct vks_err *err)
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return vks_err_set(err, VKS_E_INTERNAL, "getrandom failed: no rotation id");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* UUID version 4, RFC 4122 variant */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 64, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return VKS_OK;
}

/* One cred.<action> event for the step; returns st (or the audit failure). */
static vks_status event(struct rot *r, const char *action, int64_t version, const char *more, vks_status st,
                        struct vks_err *err)
{
    char detail[128];
    snprintf(detail, sizeof detail, "rotation_id=%s%s%s", r->rid, more && more[0] ? " " : "", more ? more : "");
    return vks_cred_int_audit(r->ctx, action, r->path, r->rec.username, version, NULL, detail, st, err);
}

static vks_status save_meta(struct rot *r, struct vks_err *err)
{
    char *meta = NULL;
    vks_status st = vks_cred_metadata_body(&r->rec, &meta, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_metadata_write(r->ctx->vault, r->ctx->mount, r->path, meta, err);
    free(meta);
    return st;
}

/* Reads the main metadata again and checks that this rotation still owns it. */
static vks_status reload(struct rot *r, struct vks_err *err)
{
    vks_cred_record_free(&r->rec);
    vks_status st = vks_cred_int_load(r->ctx, r->name, r->path, &r->rec, err);
    if (st == VKS_OK && (!is_rotating(&r->rec) || strcmp(r->rec.rotation_id, r->rid) != 0))
        st = vks_err_set(err, VKS_E_CONFLICT, "'%s': rotation %s is no longer in flight (aborted, finished or "
                         "replaced by someone else): nothing more was written", r->path, r->rid);
    return st;
}

/* ------------------------------------------------------------------ the pending record */

static void drop_record_copy(struct rot *r)
{
    if (r->penv) {
        vks_wipe(r->penv, strlen(r->penv));
        free(r->penv);
        r->penv = NULL;
    }
}

static int64_t num(const vks_secret *s)
{
    char b[24] = "";
    if (s->len > 0 && s->len < sizeof b)
        memcpy(b, s->data, s->len);
    return strtoll(b, NULL, 10);
}

/* Reads the pending record: of this rotation (have_record, the password decrypted into r->pw),
   of another (stale_record), or none. */
static vks_status record_read(struct rot *r, bool decrypt, struct vks_err *err)
{
    static const char *const sib[] = { "rotation_id", "step", "base_version", "finish_version" };
    struct vks_kv_request rq = { .mount = r->ctx->mount, .path = r->ppath, .key = "pending_key", .kv_version = 2,
                                 .siblings = sib, .n_siblings = 4 };
    struct vks_kv_result kr;
    memset(&kr, 0, sizeof kr);
    r->have_record = r->stale_record = false;
    vks_status st = vks_vault_kv_read(r->ctx->vault, &rq, &kr, err);
    if (st == VKS_E_NOT_FOUND)
        return VKS_OK;
    if (st == VKS_E_DELETED || st == VKS_E_DESTROYED || st == VKS_E_MISSING_KEY) {
        r->stale_record = true;
        return VKS_OK;
    }
    if (st != VKS_OK)
        return st;
    bool mine = r->rid[0] && kr.siblings[0].len == strlen(r->rid) &&
                memcmp(kr.siblings[0].data, r->rid, kr.siblings[0].len) == 0;
    if (!mine) {
        r->stale_record = true;
        vks_kv_result_free(&kr);
        return VKS_OK;
    }
    r->pver = kr.secret_version;
    snprintf(r->step, sizeof r->step, "%.*s", (int)(kr.siblings[1].len < 15 ? kr.siblings[1].len : 15),
             (const char *)kr.siblings[1].data);
    r->base_version = num(&kr.siblings[2]);
    r->finish_version = num(&kr.siblings[3]);
    drop_record_copy(r);
    r->penv = strndup((const char *)kr.value.data, kr.value.len);
    struct vks_envelope_place place = { r->ctx->mount, r->ppath, "pending_key" };
    vks_secret_free(&r->pw);
    if (r->penv == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    else if (decrypt)
        st = vks_envelope_decrypt(r->ctx->keyring, kr.value.data, kr.value.len, &place, &r->pw, NULL, err);
    vks_kv_result_free(&kr);
    r->have_record = st == VKS_OK;
    return st;
}

/* Writes the pending record (POST, cas) with step and finish_version; r->pver follows. */
static vks_status record_write(struct rot *r, const char *step, int64_t finish_version, int64_t cas,
                               struct vks_err *err)
{
    char b[24], f[24];
    snprintf(b, sizeof b, "%lld", (long long)r->base_version);
    snprintf(f, sizeof f, "%lld", (long long)finish_version);
    json_object *o = json_object_new_object();
    bool ok = o && json_object_object_add(o, "pending_key", json_object_new_string(r->penv)) == 0 &&
              json_object_object_add(o, "rotation_id", json_object_new_string(r->rid)) == 0 &&
              json_object_object_add(o, "step", json_object_new_string(step)) == 0 &&
              json_object_object_add(o, "base_version", json_object_new_string(b)) == 0 &&
              (finish_version == 0 || json_object_object_add(o, "finish_version", json_object_new_string(f)) == 0);
    char *body = ok ? strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) : NULL;
    json_object_put(o);
    if (body == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    int64_t nv = 0;
    vks_status st = vks_vault_kv2_write(r->ctx->vault, r->ctx->mount, r->ppath, body, cas, false, &nv, err);
    vks_wipe(body, strlen(body));
    free(body);
    if (st == VKS_OK) {
        r->pver = nv;
        snprintf(r->step, sizeof r->step, "%s", step);
        r->finish_version = finish_version;
        r->have_record = true;
    }
    return st;
}

/* Removes the pending record, every version (nothing of the password stays there). */
static vks_status record_remove(struct rot *r, struct vks_err *err)
{
    vks_status st = vks_vault_kv2_metadata_delete(r->ctx->vault, r->ctx->mount, r->ppath, err);
    r->have_record = r->stale_record = false;
    return st == VKS_E_NOT_FOUND ? VKS_OK : st;
}

/* ------------------------------------------------------------------ the steps */

static vks_status step_claim(struct rot *r, struct vks_err *err)
{
    vks_status st = vks_cred_int_editable(&r->rec, r->path, err);
    if (st != VKS_OK && st == VKS_E_CONFLICT && err)
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                 " (vks cred rotate --resume %s adopts the newer version and rotates)", r->name);
    if (st == VKS_OK)
        st = new_rotation_id(r->rid, err);
    int64_t nv = 0;
    if (st == VKS_OK) /* the data version is the lock: a PATCH of username, same password */
        st = vks_cred_int_bump(r->ctx, r->path, &r->rec, &nv, err);
    if (st == VKS_OK) {
        r->rec.rev = r->rec.current_version = r->rec.vault_version = nv;
        snprintf(r->rec.state, sizeof r->rec.state, "rotating");
        snprintf(r->rec.rotation_id, sizeof r->rec.rotation_id, "%s", r->rid);
        vks_cred_time((int64_t)time(NULL), 0, r->rec.rotation_started);
        r->rec.pending_version = 0;
        st = save_meta(r, err);
        if (st != VKS_OK && err) {
            char why[VKS_ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            vks_err_set(err, st, "claim: version %lld was written but not the metadata that marks the rotation; "
                        "the password is unchanged and resolves; vks cred rotate --resume %s repairs it: %s",
                        (long long)nv, r->name, why);
        }
    }
    st = event(r, "rotate.claim", nv, NULL, st, err);
    if (st == VKS_OK) {
        progress(r, "claim", r->rid);
        drill("claim");
    }
    return st;
}

static vks_status fresh_password(struct rot *r, struct vks_err *err)
{
    vks_secret_free(&r->pw);
    vks_status st = r->opts->password ? vks_secret_dup(r->opts->password->data, r->opts->password->len, &r->pw, err)
                                      : vks_cred_generate(&r->pw, err);
    struct vks_envelope_place place = { r->ctx->mount, r->ppath, "pending_key" };
    drop_record_copy(r);
    if (st == VKS_OK)
        st = vks_envelope_encrypt(r->ctx->keyring, vks_keyring_primary_id(r->ctx->keyring), &place, r->pw.data,
                                  r->pw.len, &r->penv, err);
    return st;
}

static vks_status step_create(struct rot *r, struct vks_err *err)
{
    vks_status st = record_read(r, true, err);
    if (st == VKS_OK && r->have_record && r->opts->password &&
        (r->pw.len != r->opts->password->len || CRYPTO_memcmp(r->pw.data, r->opts->password->data, r->pw.len)))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--password-stdin: rotation %s already holds a different "
                           "pending password; resume without it, or --abort and start again", r->rid);
    if (st == VKS_OK && r->have_record && r->rec.pending_version > 0)
        return VKS_OK; /* done before (resume) */
    bool wrote = false;
    if (st == VKS_OK && !r->have_record) {
        if (r->stale_record) /* left by an aborted or crashed rotation: replaced */
            st = record_remove(r, err);
        r->base_version = r->rec.current_version;
        if (st == VKS_OK)
            st = fresh_password(r, err);
        if (st == VKS_OK)
            st = record_write(r, "create", 0, 0, err);
        wrote = st == VKS_OK;
    }
    if (st == VKS_OK)
        st = reload(r, err);
    if (st == VKS_OK) {
        r->rec.pending_version = r->pver;
        st = save_meta(r, err);
    }
    char more[sizeof r->ctx->mount + sizeof r->ppath + 24];
    snprintf(more, sizeof more, "pending %s/%s%s", r->ctx->mount, r->ppath, wrote ? "" : " (kept)");
    st = event(r, "rotate.create", r->pver, more, st, err);
    if (st == VKS_OK) {
        progress(r, "create", more + 8);
        drill("create");
    }
    return st;
}

static bool step_done(const struct rot *r, const char *const *later)
{
    for (; *later; later++)
        if (strcmp(r->step, *later) == 0)
            return true;
    return false;
}

static vks_status step_set(struct rot *r, struct vks_err *err)
{
    static const char *const later[] = { "set", "test", "finish", NULL };
    if (step_done(r, later))
        return VKS_OK;
    vks_status st = VKS_OK;
    int code = -1;
    char more[64] = "no hook";
    if (r->opts->set_hook) {
        char e1[VKS_CRED_NAME_MAX + 16], e2[VKS_CRED_USERNAME_MAX + 24], e3[96];
        snprintf(e1, sizeof e1, "VKS_CRED_NAME=%s", r->name);
        snprintf(e2, sizeof e2, "VKS_CRED_USERNAME=%s", r->rec.username);
        snprintf(e3, sizeof e3, "VKS_CRED_ROTATION_ID=%s", r->rid);
        const char *const env[] = { e1, e2, e3 };
        st = vks_hook_run(r->opts->set_hook, &r->pw, env, 3, r->opts->hook_timeout_ms, &code, err);
        snprintf(more, sizeof more, "hook exit %d", code);
        if (st != VKS_OK && err) {
            char why[VKS_ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            vks_err_set(err, st, "%s; the current password is unchanged; fix the hook, then vks cred rotate --resume "
                        "%s, or end it with vks cred rotate --abort %s", why, r->name, r->name);
        }
    }
    if (st == VKS_OK)
        st = record_write(r, "set", 0, r->pver, err);
    st = event(r, "rotate.set", r->pver, more, st, err);
    if (st == VKS_OK) {
        progress(r, "set", more);
        drill("set");
    }
    return st;
}

/* peer_ok for the test step: the address connected to must be in the credential's allowed_hosts,
   matched by the resolver's own check. */
static bool relay_allowed(const struct sockaddr *sa, socklen_t len, void *arg, char *why, size_t whyn)
{
    const struct vks_cred_record *rec = arg;
    char host[NI_MAXHOST];
    if (getnameinfo(sa, len, host, sizeof host, NULL, 0, NI_NUMERICHOST) != 0) {
        snprintf(why, whyn, "the relay's address cannot be printed");
        return false;
    }
    json_object *v = NULL;
    if (rec->custom == NULL || !json_object_object_get_ex((json_object *)rec->custom, "allowed_hosts", &v))
        return true; /* all IPs */
    json_object *o = json_object_new_object();
    json_object_object_add(o, "allowed_hosts", json_object_get(v));
    const char *js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    struct vks_restrict_ctx rc = { NULL, host };
    bool ok = vks_restrict_check(js, strlen(js), &rc, NULL) == VKS_OK;
    json_object_put(o);
    if (!ok)
        snprintf(why, whyn, "the relay's address %s is not in the credential's allowed_hosts", host);
    return ok;
}

static vks_status test_verdict(struct rot *r, const char *relay, vks_status st, struct vks_err *err)
{
    const struct vks_smtp_result *t = &r->res->test;
    if (st == VKS_OK && !t->ok && t->stage && strcmp(t->stage, "restrict") == 0)
        st = vks_err_set(err, VKS_E_RESTRICTED, "test: %s: %s; nothing was sent", relay, t->error);
    else if (st == VKS_OK && !t->ok)
        st = vks_err_set(err, VKS_E_REJECTED, "test: the relay %s did not accept the pending password (stage %s, "
                         "reply %d %.160s)", relay, t->stage ? t->stage : "?", t->code, t->reply);
    if (st != VKS_OK && err) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        vks_err_set(err, st, "%s; the current password is unchanged and still resolves; once the relay accepts the "
                    "new password: vks cred rotate --resume %s; or vks cred rotate --abort %s", why, r->name, r->name);
    }
    return st;
}

static vks_status step_test(struct rot *r, struct vks_err *err)
{
    static const char *const later[] = { "test", "finish", NULL };
    if (step_done(r, later))
        return VKS_OK;
    const char *relay = r->opts->relay ? r->opts->relay : r->rec.relay;
    char host[VKS_CRED_RELAY_MAX + 1];
    int port = 0;
    vks_status st = vks_cred_parse_relay(relay, r->opts->relay ? "--relay" : "custom_metadata.relay", host,
                                         sizeof host, &port, err);
    struct vks_smtp_opts so = r->opts->smtp;
    so.host = host;
    so.port = port;
    so.username = r->rec.username;
    so.username_len = strlen(r->rec.username);
    so.tls = VKS_SMTP_TLS_REQUIRED; /* a password is only ever tested over verified TLS */
    so.allow_without_tls = so.allow_invalid_cert = false;
    so.timeout_ms = so.timeout_ms > 0 ? so.timeout_ms : SMTP_TIMEOUT_MS;
    so.peer_ok = relay_allowed;
    so.peer_ok_arg = &r->rec;
    if (st == VKS_OK) {
        vks_smtp_result_free(&r->res->test);
        st = vks_smtp_check_auth(&so, &r->pw, &r->res->test, err);
        st = test_verdict(r, relay, st, err);
    }
    if (st == VKS_OK)
        st = record_write(r, "test", 0, r->pver, err);
    char more[VKS_CRED_RELAY_MAX + 48];
    snprintf(more, sizeof more, "relay %s: %d%s%s", relay ? relay : "-", r->res->test.code,
             r->res->test.tls_version[0] ? " " : "", r->res->test.tls_version);
    st = event(r, "rotate.test", r->pver, more, st, err);
    if (st == VKS_OK) {
        progress(r, "test", more);
        drill("test");
    }
    return st;
}

/* The policy in days for the new due date: the credential's rotation_days, else the context's. */
static int policy_days(const struct vks_cred_ctx *ctx, const struct vks_cred_record *rec)
{
    json_object *v = NULL;
    int dflt = ctx->rotation_days > 0 ? ctx->rotation_days : VKS_CRED_DUE_DAYS, days = dflt;
    if (rec->custom && json_object_object_get_ex((json_object *)rec->custom, "rotation_days", &v) &&
        json_object_is_type(v, json_type_string) && !vks_cred_parse_days(json_object_get_string(v), &days))
        days = dflt;
    return days;
}

/* The last part of finish and rollback: when st is VKS_OK, writes envelope env (and the username)
 * as the credential's new version with check-and-set on the version read (*nv: the version
 * written). Wipes and frees env and the request body whatever happens. */
static vks_status write_current(struct rot *r, vks_status st, char *env, int64_t *nv, struct vks_err *err)
{
    char *data = NULL;
    if (st == VKS_OK)
        st = vks_cred_int_data_json(env, r->rec.username, &data, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_write(r->ctx->vault, r->ctx->mount, r->path, data, r->rec.vault_version, false, nv, err);
    if (env)
        vks_wipe(env, strlen(env));
    if (data)
        vks_wipe(data, strlen(data));
    free(env);
    free(data);
    return st;
}

/* POST the pending password as the main path's new version (cas); the pending record says which
   version that will be first, so a crash between this write and the metadata is recognised. */
static vks_status finish_data(struct rot *r, int64_t *nv, struct vks_err *err)
{
    vks_status st = vks_cred_int_editable(&r->rec, r->path, err);
    int64_t fv = r->rec.vault_version + 1;
    if (st == VKS_OK)
        st = record_write(r, "finish", fv, r->pver, err);
    struct vks_envelope_place place = { r->ctx->mount, r->path, "key" };
    char *env = NULL;
    if (st == VKS_OK)
        st = vks_envelope_encrypt(r->ctx->keyring, vks_keyring_primary_id(r->ctx->keyring), &place, r->pw.data,
                                  r->pw.len, &env, err);
    st = write_current(r, st, env, nv, err);
    if (st == VKS_E_CONFLICT && r->finish_version == fv) { /* version fv is someone else's: forget it, so a
                                                               resume does not take it for ours (best effort) */
        struct vks_err ignored;
        (void)record_write(r, "test", 0, r->pver, &ignored);
    }
    if (st == VKS_OK)
        drill("finish-data");
    return st;
}

static vks_status step_finish(struct rot *r, struct vks_err *err)
{
    vks_status st = reload(r, err);
    int64_t nv = 0, old = r->rec.current_version;
    bool landed = st == VKS_OK && r->finish_version > 0 && r->rec.vault_version == r->finish_version &&
                  r->rec.rev == r->finish_version - 1;
    if (landed)
        nv = r->finish_version; /* the data write of an earlier run went through */
    else if (st == VKS_OK)
        st = finish_data(r, &nv, err);
    if (st == VKS_OK) {
        int64_t now = (int64_t)time(NULL);
        r->rec.previous_version = old;
        snprintf(r->rec.previous_rotated, sizeof r->rec.previous_rotated, "%s", r->rec.rotated);
        r->rec.rev = r->rec.current_version = r->rec.vault_version = nv;
        snprintf(r->rec.state, sizeof r->rec.state, "active");
        if (r->rec.custom) { /* a new password ends an emergency reset (vks_cred_reset.h) */
            json_object_object_del((json_object *)r->rec.custom, "reset_id");
            json_object_object_del((json_object *)r->rec.custom, "reset_at");
        }
        vks_cred_time(now, 0, r->rec.rotated);
        vks_cred_time(now, policy_days(r->ctx, &r->rec), r->rec.due);
        r->rec.rotation_id[0] = r->rec.rotation_started[0] = '\0';
        r->rec.pending_version = 0;
        st = save_meta(r, err);
        if (st != VKS_OK && err) {
            char why[VKS_ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            vks_err_set(err, st, "finish: the new password is current (version %lld, it resolves) but the metadata "
                        "was not written: vks cred rotate --resume %s completes it: %s", (long long)nv, r->name, why);
        }
    }
    if (st == VKS_OK)
        st = record_remove(r, err);
    char more[64];
    snprintf(more, sizeof more, "previous_version=%lld", (long long)old);
    st = event(r, "rotate.finish", nv, more, st, err);
    if (st == VKS_OK) {
        r->res->old_version = old;
        r->res->new_version = nv;
        progress(r, "finish", more);
    }
    return st;
}

/* ------------------------------------------------------------------ rotate */

static vks_status prechecks(struct rot *r, struct vks_err *err)
{
    const struct vks_cred_rotate_opts *o = r->opts;
    if (r->ctx->keyring == NULL || vks_keyring_primary_id(r->ctx->keyring) == NULL)
        return vks_err_set(err, VKS_E_CONFIG, "rotation stores the pending password as an ENC: envelope: set "
                           "VKS_ENCRYPTION_KEY, VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS");
    if (o->password && vks_cred_check_password(o->password->data, o->password->len, err) != VKS_OK)
        return VKS_E_INVALID_INPUT;
    if (o->set_hook && o->set_hook[0] == '\0')
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--set-hook: the command is empty");
    if (o->relay)
        return vks_cred_parse_relay(o->relay, "--relay", NULL, 0, NULL, err);
    return VKS_OK;
}

/* `--resume` of a credential whose metadata lags one version (a claim or an edit died between its
   two writes): the newer version holds the same password, so the metadata adopts it. */
static vks_status repair(struct rot *r, struct vks_err *err)
{
    if (r->rec.rev != r->rec.vault_version - 1)
        return vks_err_set(err, VKS_E_NOT_FOUND, "'%s': no rotation in flight: nothing to resume (start one with "
                           "vks cred rotate %s)", r->path, r->name);
    r->rec.rev = r->rec.current_version = r->rec.vault_version;
    vks_status st = save_meta(r, err);
    if (st == VKS_OK)
        progress(r, "repair", "the metadata now describes the latest version");
    return st;
}

static vks_status rotate_run(struct rot *r, struct vks_err *err)
{
    vks_status st = vks_cred_int_load(r->ctx, r->name, r->path, &r->rec, err);
    if (st != VKS_OK) /* refused or not found: the attempt is audited all the same */
        return event(r, "rotate.claim", 0, NULL, st, err);
    if (r->rec.managed && strcmp(r->rec.direction, "inbound") == 0) /* issue 15: not yet */
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "'%s' is an inbound credential: vks cred rotate does not rotate "
                         "those yet (create a new one, move the application, delete this one)", r->path);
    else if (!r->rec.managed)
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "'%s' is not managed by vks cred (no custom_metadata.vks_cred)",
                         r->path);
    if (st == VKS_OK && !r->opts->relay && !r->rec.relay[0])
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "--relay: '%s' has no relay to test a new password against: give "
                         "--relay HOST:PORT or store one (vks cred restrict %s --relay HOST:PORT)", r->path, r->name);
    if (st != VKS_OK)
        return st;
    if (is_rotating(&r->rec)) {
        snprintf(r->rid, sizeof r->rid, "%s", r->rec.rotation_id);
        if (!r->opts->resume)
            return event(r, "rotate.claim", 0, "refused: in flight",
                         vks_err_set(err, VKS_E_CONFLICT, "'%s': a rotation is already in flight (rotation_id %s, "
                                     "started %s): continue it with vks cred rotate --resume %s, or end it with "
                                     "vks cred rotate --abort %s", r->path, r->rid, r->rec.rotation_started, r->name,
                                     r->name), err);
        progress(r, "resume", r->rid);
    } else {
        if (r->opts->resume && (st = repair(r, err)) != VKS_OK)
            return st;
        if ((st = step_claim(r, err)) != VKS_OK)
            return st;
    }
    snprintf(r->res->rotation_id, sizeof r->res->rotation_id, "%s", r->rid);
    const char *names[] = { "create", "set", "test" };
    vks_status (*steps[])(struct rot *, struct vks_err *) = { step_create, step_set, step_test };
    r->res->step = "claim";
    for (size_t i = 0; i < 3; i++) {
        if ((st = steps[i](r, err)) != VKS_OK)
            return st;
        r->res->step = names[i];
    }
    if ((st = step_finish(r, err)) == VKS_OK)
        r->res->step = "finish";
    return st;
}

vks_status vks_cred_rotate(struct vks_cred_ctx *ctx, const char *name, const struct vks_cred_rotate_opts *opts,
                           struct vks_cred_rotate_result *result, struct vks_err *err)
{
    memset(result, 0, sizeof *result);
    result->step = "";
    struct rot r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.name = name;
    r.opts = opts;
    r.res = result;
    vks_status st = vks_cred_int_path(ctx, name, r.path, sizeof r.path, err);
    if (st == VKS_OK) {
        snprintf(r.ppath, sizeof r.ppath, ROTATION_DIR "%s", r.path);
        st = prechecks(&r, err);
    }
    if (st == VKS_OK)
        st = vks_cred_int_identity(ctx, err);
    if (st == VKS_OK)
        st = rotate_run(&r, err);
    snprintf(result->rotation_id, sizeof result->rotation_id, "%s", r.rid);
    vks_secret_free(&r.pw);
    drop_record_copy(&r);
    vks_cred_record_free(&r.rec);
    return st;
}

void vks_cred_rotate_result_free(struct vks_cred_rotate_result *result)
{
    if (result)
        vks_smtp_result_free(&result->test);
}

/* ------------------------------------------------------------------ abort */

vks_status vks_cred_rotate_abort(struct vks_cred_ctx *ctx, const char *name, struct vks_err *err)
{
    struct vks_cred_rotate_opts none;
    memset(&none, 0, sizeof none);
    struct vks_cred_rotate_result res;
    memset(&res, 0, sizeof res);
    struct rot r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.name = name;
    r.opts = &none;
    r.res = &res;
    vks_status st = vks_cred_int_path(ctx, name, r.path, sizeof r.path, err);
    snprintf(r.ppath, sizeof r.ppath, ROTATION_DIR "%s", r.path);
    if (st == VKS_OK)
        st = vks_cred_int_identity(ctx, err);
    if (st == VKS_OK)
        st = vks_cred_int_load(ctx, name, r.path, &r.rec, err);
    if (st != VKS_OK)
        return st;
    bool rotating = is_rotating(&r.rec);
    snprintf(r.rid, sizeof r.rid, "%s", r.rec.rotation_id);
    struct vks_err rerr;
    if (record_read(&r, false, &rerr) != VKS_OK) /* unreadable: removed all the same */
        r.stale_record = true;
    bool landed = r.have_record && r.finish_version > 0 && r.rec.vault_version == r.finish_version &&
                  r.rec.rev == r.finish_version - 1;
    if (!rotating && !r.have_record && !r.stale_record)
        st = vks_err_set(err, VKS_E_NOT_FOUND, "'%s': no rotation in flight: nothing to abort", r.path);
    else if (rotating && landed)
        st = vks_err_set(err, VKS_E_CONFLICT, "'%s': rotation %s already wrote the new password as version %lld "
                         "(it resolves): complete it with vks cred rotate --resume %s", r.path, r.rid,
                         (long long)r.finish_version, name);
    if (st == VKS_OK)
        st = record_remove(&r, err);
    if (st == VKS_OK && rotating) { /* the password is unchanged: a reset stays a reset */
        snprintf(r.rec.state, sizeof r.rec.state, "%s", vks_cred_is_reset(&r.rec) ? "reset" : "active");
        r.rec.rotation_id[0] = r.rec.rotation_started[0] = '\0';
        r.rec.pending_version = 0;
        st = save_meta(&r, err);
    }
    st = event(&r, "rotate.abort", r.rec.current_version, rotating ? NULL : "stale pending record", st, err);
    vks_secret_free(&r.pw);
    drop_record_copy(&r);
    vks_cred_record_free(&r.rec);
    return st;
}

/* ------------------------------------------------------------------ rollback */

static vks_status rollback_checks(struct rot *r, const char *reason, struct vks_err *err)
{
    size_t n = reason ? strlen(reason) : 0;
    if (n == 0 || n > 256)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason is required: 1-256 characters saying why the "
                           "credential goes back to its previous password (it is audited)");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason: character %zu is a control character", i + 1);
    vks_status st = vks_cred_int_editable(&r->rec, r->path, err);
    if (st == VKS_OK && is_rotating(&r->rec))
        st = vks_err_set(err, VKS_E_CONFLICT, "'%s': a rotation is in flight (rotation_id %s): finish it (vks cred "
                         "rotate --resume %s) or abort it (--abort) before a rollback", r->path, r->rec.rotation_id,
                         r->name);
    if (st == VKS_OK && r->rec.previous_version <= 0)
        st = vks_err_set(err, VKS_E_NOT_FOUND, "'%s' has no previous version to go back to (never rotated)",
                         r->path);
    char full[VKS_CRED_PATH_MAX + 160];
    bool can = false;
    snprintf(full, sizeof full, "%s/data/%s", r->ctx->mount, r->path);
    if (st == VKS_OK && (st = vks_vault_token_can(r->ctx->vault, full, "read", &can, err)) == VKS_OK && !can)
        st = vks_err_set(err, VKS_E_PERMISSION_DENIED, "rollback copies version %lld's envelope and this token may "
                         "not read %s (cred-operator cannot: use a token that also holds cred-support); nothing "
                         "was written", (long long)r->rec.previous_version, full);
    return st;
}

/* The previous version's envelope, copied unchanged (same mount, path and field: same binding). */
static vks_status rollback_write(struct rot *r, int64_t *nv, struct vks_err *err)
{
    struct vks_kv_request rq = { .mount = r->ctx->mount, .path = r->path, .key = "key", .kv_version = 2,
                                 .version = r->rec.previous_version };
    struct vks_kv_result kr;
    memset(&kr, 0, sizeof kr);
    vks_status st = vks_vault_kv_read(r->ctx->vault, &rq, &kr, err);
    if (st == VKS_E_DELETED || st == VKS_E_DESTROYED || st == VKS_E_NOT_FOUND)
        return vks_err_set(err, st, "'%s': previous version %lld is no longer readable (%s): no rollback",
                           r->path, (long long)r->rec.previous_version, vks_status_code(st));
    char *env = st == VKS_OK ? strndup((const char *)kr.value.data, kr.value.len) : NULL;
    vks_kv_result_free(&kr);
    if (st == VKS_OK && env == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    st = write_current(r, st, env, nv, err);
    return st;
}

/* `rotated` of the password rolled back to: stored at finish, else that version's creation time
   (Vault's "2026-12-03T17:30:00.123456Z" cut to the second). */
static void rolled_back_time(const struct vks_cred_record *rec, char out[40])
{
    snprintf(out, 40, "%s", rec->previous_rotated);
    for (size_t i = 0; !out[0] && i < rec->nversions; i++)
        if (rec->versions[i].version == rec->previous_version && strlen(rec->versions[i].created) >= 19)
            snprintf(out, 40, "%.19sZ", rec->versions[i].created);
}

vks_status vks_cred_rollback(struct vks_cred_ctx *ctx, const char *name, const char *reason, int64_t *new_version,
                             struct vks_err *err)
{
    *new_version = 0;
    struct rot r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.name = name;
    vks_status st = vks_cred_int_path(ctx, name, r.path, sizeof r.path, err);
    if (st == VKS_OK)
        st = vks_cred_int_identity(ctx, err);
    if (st == VKS_OK && (st = vks_cred_int_load(ctx, name, r.path, &r.rec, err)) != VKS_OK)
        return vks_cred_int_audit(ctx, "rollback", r.path, NULL, 0, reason, NULL, st, err); /* refused: audited */
    if (st != VKS_OK)
        return st;
    int64_t back = r.rec.previous_version, nv = 0, old = r.rec.current_version;
    st = rollback_checks(&r, reason, err);
    if (st == VKS_OK)
        st = rollback_write(&r, &nv, err);
    if (st == VKS_OK) {
        char when[40];
        rolled_back_time(&r.rec, when);
        r.rec.previous_version = old;
        snprintf(r.rec.previous_rotated, sizeof r.rec.previous_rotated, "%s", r.rec.rotated);
        r.rec.rev = r.rec.current_version = r.rec.vault_version = nv;
        int64_t t = 0;
        if (vks_cred_parse_time(when, &t)) { /* the password is that old: due counts from then */
            snprintf(r.rec.rotated, sizeof r.rec.rotated, "%s", when);
            vks_cred_time(t, policy_days(ctx, &r.rec), r.rec.due);
        }
        st = save_meta(&r, err);
    }
    char detail[128];
    snprintf(detail, sizeof detail, "back to version %lld (previous_version=%lld)", (long long)back, (long long)old);
    st = vks_cred_int_audit(ctx, "rollback", r.path, r.rec.username, nv, reason, detail, st, err);
    if (st == VKS_OK)
        *new_version = nv;
    vks_cred_record_free(&r.rec);
    return st;
}
