/*
 * `vks rekey --to KEYID`: re-encrypt every ENC: value under a prefix under one key (docs/rekey.md;
 * man/vks-rekey.1 — keep the two in step). Thin over src/vks_rekey.c: options, confirmation,
 * progress on stderr, the summary, the verify pass.
 *
 * Exit status: 0 done and verified (0 values left under other keys); 1 a local problem (usage, the
 * keyring, the target key not in it, the audit sink); 2 Vault refused or could not be reached
 * before anything was written; 3 partial: some items failed or were skipped (each named), or the
 * verify pass found values left under other keys: nothing was lost, run it again.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks.h"
#include "vks_cred.h"
#include "vks_envelope.h"
#include "vks_http.h"
#include "vks_rekey.h"
#include "vks_vault.h"

#define EXIT_PARTIAL 3

const char vks_cli_rekey_usage[] =
    "usage: vks rekey --to KEYID [--mount M] [--prefix P] [--dry-run] [--json] [--yes]\n"
    "                 [--max-secrets N]\n"
    "\n"
    "Walks every secret under <mount>/<prefix> (LIST, recursively) and re-encrypts each string value\n"
    "of its latest version that is an ENC: envelope not under KEYID: decrypted with the keyring,\n"
    "encrypted as ENC:v2:KEYID bound to the same mount, path and field, written back with\n"
    "check-and-set (a concurrent edit is re-read and retried, never overwritten). A managed\n"
    "credential's metadata records key_id. Plaintext and non-string values are left alone. Then a\n"
    "verify pass lists again and counts the values left under other keys: 0 means the old key can\n"
    "be retired (docs/rekey.md). Killed at any point, a rerun finishes the work.\n"
    "\n"
    "The keyring (VKS_ENCRYPTION_KEYS, VKS_ENCRYPTION_KEYRING_FILE, ...) must hold KEYID and the old\n"
    "keys; readers should hold both for the whole run. Vault: VAULT_ADDR, VAULT_TOKEN, ...; audit:\n"
    "VKS_AUDIT_* (one rekey.run event, one cred.rekey per credential written).\n"
    "\n"
    "  --to KEYID        the key id to re-encrypt under (required)\n"
    "  --mount M         KV v2 mount (default $VKS_CRED_MOUNT, else secret)\n"
    "  --prefix P        folder under the mount (default $VKS_CRED_PREFIX, else smtp-auth/)\n"
    "  --dry-run         read, decrypt and count what would change; write nothing\n"
    "  --json            print the summary as JSON on stdout\n"
    "  --yes             do not ask for confirmation (required when stdin is not a terminal)\n"
    "  --max-secrets N   refuse, before any write, a prefix holding more than N secrets\n"
    "                    (default and most 100000)\n"
    "\n"
    "exit status: 0 done, 0 values left under other keys; 1 local problem (usage, keyring, key id,\n"
    "audit); 2 Vault refused or could not be reached, nothing written; 3 partial: items failed or\n"
    "were skipped (each named) or values are left under other keys; nothing lost, run it again.\n";

struct ropts {
    const char *to, *mount, *prefix;
    bool dry_run, json, yes;
    size_t max_secrets;
};

enum { O_TO = 256, O_MOUNT, O_PREFIX, O_DRY, O_JSON, O_YES, O_MAX };

static int parse(int argc, char **argv, struct ropts *o)
{
    static const struct option opts[] = {
        { "to", required_argument, NULL, O_TO }, { "mount", required_argument, NULL, O_MOUNT },
        { "prefix", required_argument, NULL, O_PREFIX }, { "dry-run", no_argument, NULL, O_DRY },
        { "json", no_argument, NULL, O_JSON }, { "yes", no_argument, NULL, O_YES },
        { "max-secrets", required_argument, NULL, O_MAX }, { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->mount = getenv("VKS_CRED_MOUNT");
    o->prefix = getenv("VKS_CRED_PREFIX");
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_TO: o->to = optarg; break;
        case O_MOUNT: o->mount = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_DRY: o->dry_run = true; break;
        case O_JSON: o->json = true; break;
        case O_YES: o->yes = true; break;
        case O_MAX: {
            char *end = NULL;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (optarg[0] < '1' || optarg[0] > '9' || !end || *end || n > VKS_REKEY_SECRETS_MAX) {
                fprintf(stderr, "vks rekey: --max-secrets '%s' must be a number from 1 to %d\n", optarg,
                        VKS_REKEY_SECRETS_MAX);
                return -1;
            }
            o->max_secrets = (size_t)n;
            break;
        }
        default: fputs(vks_cli_rekey_usage, stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vks rekey: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->to == NULL || o->to[0] == '\0') {
        fprintf(stderr, "vks rekey: --to KEYID is required\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ progress */

struct prog {
    bool tty;
    int64_t start_ms;
    size_t next;                   /* plain lines: the next count to print at */
};

static void fmt_eta(char *b, size_t cap, double s)
{
    if (s < 0 || s > 360000)
        snprintf(b, cap, "--:--");
    else
        snprintf(b, cap, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
}

static void progress(void *arg, const char *phase, size_t done, size_t total)
{
    struct prog *p = arg;
    double el = (double)(vks_http_now_ms() - p->start_ms) / 1000.0, rate = el > 0 ? (double)done / el : 0;
    char eta[32];
    fmt_eta(eta, sizeof eta, rate > 0 ? (double)(total - done) / rate : -1);
    if (p->tty) {
        int w = 30, fill = total ? (int)((double)done * w / (double)total) : w;
        fprintf(stderr, "\r%-7s [%.*s%*s] %zu/%zu %5.1f/s ETA %s\033[K", phase, fill,
                "##############################", w - fill, "", done, total, rate, eta);
        if (done == total)
            fputc('\n', stderr);
    } else if (done >= p->next || done == total) {
        fprintf(stderr, "vks rekey %s: %zu/%zu secrets, %.1f/s, ETA %s\n", phase, done, total, rate, eta);
        size_t step = total / 20 > 0 ? total / 20 : 1;
        p->next = done + step;
    }
}

/* ------------------------------------------------------------------ output */

static void jint(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

/* "k1 (3), legacy (1)" -> {"k1":3,"legacy":1} */
static json_object *by_key(const char *ids)
{
    json_object *o = json_object_new_object();
    char id[80];
    unsigned long n = 0;
    int used = 0;
    while (ids && sscanf(ids, " %79[^ (] (%lu)%n", id, &n, &used) == 2) {
        json_object_object_add(o, id, json_object_new_int64((int64_t)n));
        ids += used;
        if (*ids == ',')
            ids++;
    }
    return o;
}

static json_object *summary_json(const struct ropts *o, const struct vks_cred_ctx *ctx, const struct vks_rekey_result *r,
                                 const struct vks_rekey_verify *v, bool verified, double secs, bool ok)
{
    const struct vks_rekey_counts *c = &r->c;
    json_object *j = json_object_new_object(), *vals = json_object_new_object(), *errs = json_object_new_array();
    json_object_object_add(j, "mount", json_object_new_string(ctx->mount));
    json_object_object_add(j, "prefix", json_object_new_string(ctx->prefix));
    json_object_object_add(j, "to", json_object_new_string(o->to));
    json_object_object_add(j, "dry_run", json_object_new_boolean(o->dry_run));
    json_object_object_add(j, "result", json_object_new_string(ok ? "done" : "partial"));
    jint(j, "secrets", (int64_t)c->secrets);
    jint(j, "secrets_changed", (int64_t)c->secrets_changed);
    jint(j, "credentials_changed", (int64_t)c->managed_changed);
    jint(vals, "rekeyed", (int64_t)c->values_rekeyed);
    jint(vals, "current", (int64_t)c->values_current);
    jint(vals, "plaintext", (int64_t)c->values_plain);
    jint(vals, "not_string", (int64_t)c->values_other);
    json_object_object_add(j, "values", vals);
    jint(j, "no_live_version", (int64_t)c->no_live);
    jint(j, "rotation_in_flight", (int64_t)c->busy);
    jint(j, "cas_retries", (int64_t)c->cas_retries);
    jint(j, "metadata_repaired", (int64_t)c->meta_repaired);
    jint(j, "failed", (int64_t)c->failed);
    for (size_t i = 0; i < r->nerrors; i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "path", json_object_new_string(r->errors[i].path));
        json_object_object_add(e, "field", json_object_new_string(r->errors[i].field));
        json_object_object_add(e, "code", json_object_new_string(vks_status_code(r->errors[i].code)));
        json_object_object_add(e, "message", json_object_new_string(r->errors[i].msg));
        json_object_array_add(errs, e);
    }
    json_object_object_add(j, "errors", errs);
    jint(j, "requests", (int64_t)c->requests);
    json_object_object_add(j, "requests_per_secret",
                           json_object_new_double(c->secrets ? (double)c->requests / (double)c->secrets : 0));
    json_object_object_add(j, "seconds", json_object_new_double(secs));
    json_object *vj = NULL;
    if (verified) {
        vj = json_object_new_object();
        jint(vj, "secrets", (int64_t)v->secrets);
        jint(vj, "values_under_target", (int64_t)v->values_target);
        jint(vj, "values_left", (int64_t)(v->values_other + v->values_legacy));
        jint(vj, "legacy", (int64_t)v->values_legacy);
        json_object_object_add(vj, "left_by_key", by_key(v->other_ids));
        jint(vj, "rotation_in_flight", (int64_t)v->busy);
        jint(vj, "unreadable", (int64_t)v->failed);
    }
    json_object_object_add(j, "verify", vj);
    return j;
}

static void summary_text(const struct ropts *o, const struct vks_cred_ctx *ctx, const struct vks_rekey_result *r,
                         const struct vks_rekey_verify *v, bool verified)
{
    const struct vks_rekey_counts *c = &r->c;
    for (size_t i = 0; i < r->nerrors; i++)
        fprintf(stderr, "vks rekey: %s/%s%s%s: %s (%s)\n", ctx->mount, r->errors[i].path,
                r->errors[i].field[0] ? " field " : "", r->errors[i].field, r->errors[i].msg,
                vks_status_code(r->errors[i].code));
    printf("%s %zu values in %zu secrets (%zu credentials) under %s/%s to key '%s'; already under it: %zu; "
           "plaintext: %zu; not strings: %zu; no live version: %zu; rotation in flight: %zu; failed: %zu; "
           "%zu requests\n", o->dry_run ? "would re-key" : "re-keyed", c->values_rekeyed, c->secrets_changed,
           c->managed_changed, ctx->mount, ctx->prefix, o->to, c->values_current, c->values_plain, c->values_other,
           c->no_live, c->busy, c->failed, c->requests);
    if (verified)
        printf("verify: %zu secrets, %zu values under '%s', %zu left under other keys%s%s%s\n", v->secrets,
               v->values_target, o->to, v->values_other + v->values_legacy, v->other_ids[0] ? " (" : "",
               v->other_ids, v->other_ids[0] ? ")" : "");
    if (verified && v->values_other + v->values_legacy == 0 && v->busy == 0 && v->failed == 0)
        printf("nothing under %s/%s needs another key: the old key can be retired once every other prefix is "
               "re-keyed too (docs/rekey.md)\n", ctx->mount, ctx->prefix);
}

/* ------------------------------------------------------------------ the command */

static bool confirm(const struct ropts *o, const struct vks_cred_ctx *ctx)
{
    if (o->yes || o->dry_run)
        return true;
    if (!isatty(0)) {
        fprintf(stderr, "vks rekey: give --yes to run without a terminal (or --dry-run to count first)\n");
        return false;
    }
    fprintf(stderr, "Re-encrypt every ENC: value under %s/%s under key '%s'? Type 'yes': ", ctx->mount, ctx->prefix,
            o->to);
    char line[16] = "";
    return fgets(line, sizeof line, stdin) != NULL && strcmp(line, "yes\n") == 0;
}

static vks_status open_all(const struct ropts *o, struct vks_vault **v, struct vks_keyring **kr,
                           struct vks_cred_ctx *ctx, struct vks_err *e)
{
    struct vks_vault_config cfg;
    vks_status st = vks_keyring_load_env(kr, e);
    if (st == VKS_OK && (st = vks_vault_config_from_env(&cfg, e)) == VKS_OK) {
        st = vks_vault_new(&cfg, v, e);
        vks_vault_config_clear(&cfg);
    }
    if (st == VKS_OK)
        st = vks_cred_ctx_init(ctx, *v, *kr, o->mount, o->prefix, "cli", e);
    return st;
}

int vks_cli_rekey(int argc, char **argv)
{
    struct ropts o;
    if (parse(argc, argv, &o) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_vault *v = NULL;
    struct vks_keyring *kr = NULL;
    struct vks_cred_ctx ctx;
    vks_status st = open_all(&o, &v, &kr, &ctx, &e);
    if (st == VKS_OK && !confirm(&o, &ctx)) {
        vks_vault_free(v);
        vks_keyring_free(kr);
        return 1;
    }
    int64_t t0 = vks_http_now_ms();
    struct prog p = { .tty = isatty(2) != 0, .start_ms = t0 };
    struct vks_rekey_opts ro = { .ctx = &ctx, .target = o.to, .dry_run = o.dry_run, .max_secrets = o.max_secrets,
                                 .progress = progress, .progress_arg = &p };
    struct vks_rekey_result res = { 0 };
    struct vks_rekey_verify ver = { 0 };
    bool started = st == VKS_OK, verified = false;
    if (started)
        st = vks_rekey_run(&ro, &res, &e);
    bool partial = st == VKS_E_CONFLICT && res.c.secrets > 0;
    if ((st == VKS_OK || partial) && !o.dry_run) {
        p.start_ms = vks_http_now_ms(), p.next = 0;
        struct vks_err ve;
        vks_err_clear(&ve);
        verified = vks_rekey_verify(&ctx, o.to, progress, &p, &ver, &res.c.requests, &ve) == VKS_OK;
        if (!verified)
            fprintf(stderr, "vks rekey: verify pass failed: %s (%s)\n", ve.msg, vks_status_code(ve.status));
        partial = partial || !verified || ver.values_other + ver.values_legacy > 0 || ver.busy > 0 || ver.failed > 0;
    }
    double secs = (double)(vks_http_now_ms() - t0) / 1000.0;
    int rc = 0;
    if (st != VKS_OK && !partial) {
        fprintf(stderr, "vks rekey: %s (%s)\n", e.msg[0] ? e.msg : vks_status_code(st), vks_status_code(st));
        rc = vks_cli_exit_code(st);
    } else {
        if (o.json) {
            json_object *j = summary_json(&o, &ctx, &res, &ver, verified, secs, !partial);
            puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(j);
            for (size_t i = 0; i < res.nerrors; i++)
                fprintf(stderr, "vks rekey: %s/%s%s%s: %s\n", ctx.mount, res.errors[i].path,
                        res.errors[i].field[0] ? " field " : "", res.errors[i].field, res.errors[i].msg);
        } else {
            summary_text(&o, &ctx, &res, &ver, verified);
        }
        rc = partial ? EXIT_PARTIAL : 0;
        if (partial && st == VKS_E_CONFLICT)
            fprintf(stderr, "vks rekey: %s\n", e.msg);
    }
    vks_rekey_result_free(&res);
    vks_vault_free(v);
    vks_keyring_free(kr);
    return rc;
}
