/*
 * vks-serve: rotation from the API and the UI. `vks cred rotate` is long (a set hook, an SMTP test
 * against the relay), so it runs on a detached thread of its own, never on the loop: the job gets
 * its own Vault client made from a copy of the operator's token (so a logout revokes what the job
 * can still do: the rotation then stops at a step and can be resumed), its own vks_cred_ctx, and
 * the core's progress callback appends each step to the job. The API answers 202 with the job id;
 * GET /api/v1/jobs/ID (same operator only) returns the steps so far and, at the end, the outcome.
 * Abort (and the refusals before a claim) run synchronously.
 * Threading: the job table is guarded by one mutex; the core calls of a job use only its own ctx
 * and client; the audit sink and keyring are thread-safe (vks_audit.h, vks_envelope.h).
 */
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "vks_cred_rotate.h"

#define SV_JOBS 32
#define SV_STEPS 12

struct job {
    bool used, done;
    char id[33], accessor[64], operator_name[128], addr[64], ua[200];
    char name[VKS_CRED_NAME_MAX + 1], prefix[VKS_CRED_NAME_MAX + 1];
    bool resume;
    char steps[SV_STEPS][160];
    int nsteps;
    vks_status st;
    char err[512];
    int64_t old_version, new_version, finished;
    vks_secret token;
};

static struct job J[SV_JOBS];
static pthread_mutex_t jlock = PTHREAD_MUTEX_INITIALIZER;

static void on_step(const char *step, const char *detail, void *arg)
{
    struct job *j = arg;
    pthread_mutex_lock(&jlock);
    if (j->nsteps < SV_STEPS)
        snprintf(j->steps[j->nsteps++], sizeof j->steps[0], "%s%s%.120s", step, detail && *detail ? ": " : "",
                 detail ? detail : "");
    pthread_mutex_unlock(&jlock);
}

static void *run(void *arg)
{
    struct job *j = arg;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_vault_config c = sv_cfg->vault;
    c.token = j->token;
    struct vks_vault *v = NULL;
    struct vks_cred_ctx ctx;
    struct vks_cred_rotate_result res;
    memset(&res, 0, sizeof res);
    vks_status st = vks_vault_new(&c, &v, &e);
    vks_secret_free(&j->token); /* the client holds its own copy */
    if (st == VKS_OK)
        st = vks_cred_ctx_init(&ctx, v, sv_keyring, sv_cfg->mount, j->prefix, "serve", &e);
    if (st == VKS_OK) {
        snprintf(ctx.operator_name, sizeof ctx.operator_name, "%s", j->operator_name);
        snprintf(ctx.operator_accessor, sizeof ctx.operator_accessor, "%s", j->accessor);
        ctx.identity_known = true;
        ctx.client_addr = j->addr;
        ctx.user_agent = j->ua;
        struct vks_cred_rotate_opts ro = {
            .resume = j->resume, .set_hook = sv_cfg->rotate_set_hook,
            .smtp = { .cafile = sv_cfg->rotate_cafile, .ehlo_name = sv_cfg->rotate_ehlo },
            .progress = on_step, .progress_arg = j,
        };
        st = vks_cred_rotate(&ctx, j->name, &ro, &res, &e);
    }
    pthread_mutex_lock(&jlock);
    j->st = st;
    snprintf(j->err, sizeof j->err, "%s", st == VKS_OK ? "" : e.msg);
    j->old_version = res.old_version;
    j->new_version = res.new_version;
    j->finished = (int64_t)time(NULL);
    j->done = true;
    pthread_mutex_unlock(&jlock);
    vks_cred_rotate_result_free(&res);
    vks_vault_free(v);
    return NULL;
}

/* a free slot (finished jobs older than 10 minutes are reused); jlock held */
static struct job *slot(int64_t now)
{
    for (int i = 0; i < SV_JOBS; i++)
        if (!J[i].used || (J[i].done && now - J[i].finished > 600)) {
            vks_secret_free(&J[i].token);
            memset(&J[i], 0, sizeof J[i]);
            return &J[i];
        }
    return NULL;
}

/* a job started for name: true with its id; false with why (nothing answered) */
bool sv_rotate_job(struct sv_req *r, const char *prefix, const char *name, bool resume, char id[33], const char **why)
{
    unsigned char rnd[16];
    struct vks_err e;
    vks_err_clear(&e);
    pthread_mutex_lock(&jlock);
    struct job *j = slot(r->now);
    if (!j || RAND_bytes(rnd, sizeof rnd) != 1 || vks_secret_dup(r->s->token.data, r->s->token.len, &j->token, &e) != VKS_OK) {
        pthread_mutex_unlock(&jlock);
        *why = "no rotation slot free: try again later";
        return false;
    }
    for (int i = 0; i < 16; i++)
        snprintf(j->id + 2 * i, 3, "%02x", rnd[i]);
    j->used = true;
    j->resume = resume;
    snprintf(j->accessor, sizeof j->accessor, "%s", r->s->accessor);
    snprintf(j->operator_name, sizeof j->operator_name, "%s", r->s->operator_name);
    snprintf(j->addr, sizeof j->addr, "%s", r->addr);
    snprintf(j->ua, sizeof j->ua, "%s", r->ua);
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->prefix, sizeof j->prefix, "%s", prefix);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    bool ok = pthread_create(&t, &a, run, j) == 0;
    pthread_attr_destroy(&a);
    if (!ok) {
        vks_secret_free(&j->token);
        j->used = false;
    }
    snprintf(id, 33, "%s", j->id);
    pthread_mutex_unlock(&jlock);
    *why = ok ? NULL : "cannot start the rotation";
    return ok;
}

static void start(struct sv_req *r, const char *prefix, const char *name, bool resume)
{
    struct vks_err e;
    vks_err_clear(&e);
    char id[33];
    const char *why = NULL;
    if (vks_cred_check_name(name, "name", &e) != VKS_OK) {
        sv_send_error(r, 400, "invalid_input", "name", "%s", e.msg);
        return;
    }
    if (!sv_rotate_job(r, prefix, name, resume, id, &why)) {
        sv_send_error(r, 503, "busy", NULL, "%s", why);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "job", json_object_new_string(id));
    json_object_object_add(o, "name", json_object_new_string(name));
    sv_send_json(r, 202, o, true);
}

void sv_api_rotate(struct sv_req *r, const char *prefix, const char *name)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    bool resume = false, abort_ = false;
    if (!b || !sv_json_bool(r, b, "resume", &resume) || !sv_json_bool(r, b, "abort", &abort_)) {
        json_object_put(b);
        return;
    }
    json_object_put(b);
    if (resume && abort_) {
        sv_send_error(r, 400, "invalid_input", "abort", "resume and abort exclude each other");
        return;
    }
    if (!abort_) {
        start(r, prefix, name, resume);
        return;
    }
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_rotate_abort(&ctx, name, &e);
    if (st != VKS_OK) {
        sv_send_status(r, st, &e);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "aborted", json_object_new_string(name));
    sv_send_json(r, 200, o, true);
}

void sv_api_job(struct sv_req *r, const char *id)
{
    json_object *o = NULL;
    pthread_mutex_lock(&jlock);
    for (int i = 0; i < SV_JOBS && !o; i++) {
        struct job *j = &J[i];
        if (!j->used || strcmp(j->id, id) != 0 || strcmp(j->accessor, r->s->accessor) != 0)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "job", json_object_new_string(j->id));
        json_object_object_add(o, "name", json_object_new_string(j->name));
        json_object *steps = json_object_new_array();
        for (int k = 0; k < j->nsteps; k++)
            json_object_array_add(steps, json_object_new_string(j->steps[k]));
        json_object_object_add(o, "steps", steps);
        json_object_object_add(o, "done", json_object_new_boolean(j->done));
        json_object_object_add(o, "result", j->done ? json_object_new_string(j->st == VKS_OK ? "success" : "failure") : NULL);
        json_object_object_add(o, "code", j->done ? json_object_new_string(vks_status_code(j->st)) : NULL);
        json_object_object_add(o, "error", j->done && j->st != VKS_OK ? json_object_new_string(j->err) : NULL);
        json_object_object_add(o, "old_version", j->done ? json_object_new_int64(j->old_version) : NULL);
        json_object_object_add(o, "new_version", j->done ? json_object_new_int64(j->new_version) : NULL);
    }
    pthread_mutex_unlock(&jlock);
    if (o)
        sv_send_json(r, 200, o, true);
    else
        sv_send_error(r, 404, "not_found", NULL, "no such rotation job for this operator");
}
