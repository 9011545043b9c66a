/*
 * `vks cred rotate --due`: rotate every credential the rotation policy says is due (docs/credentials.md
 * "Rotating what is due"; man/vks-cred.1). Thin over src/vks_cred_rotate_due.c: parse options, build
 * the Vault client, keyring and rotation options from the environment, plan, print, run.
 * `vks cred rotate` (cli/cred_rotate.c) hands its arguments here when --due is among them.
 *
 * Exit status, for a systemd timer: 0 nothing due or every due credential rotated; 4 a rotation
 * failed or a credential is invalid; 1 a local problem; 2 Vault refused or could not be reached
 * for the listing. --dry-run: 0 nothing due, 3 something would be rotated, 4 something invalid.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cred_int.h"
#include "vks.h"
#include "vks_cred.h"
#include "vks_cred_rotate.h"
#include "vks_cred_rotate_due.h"
#include "vks_envelope.h"
#include "vks_vault.h"

const char vks_cli_cred_rotate_due_usage[] =
    "usage: vks cred rotate --due [--within DURATION] [--dry-run] [--json] [--tenant T]\n"
    "                       [--set-hook CMD] [--hook-timeout S] [--relay-cafile F] [--ehlo NAME]\n"
    "                       [--smtp-timeout S] [--mount M] [--prefix P]\n"
    "\n"
    "Rotates every managed credential that is past its due date (vks cred due), one at a time,\n"
    "each through the four steps of vks cred rotate against its stored relay, and goes on after a\n"
    "failure. A credential whose rotation is in flight is resumed (same rotation id); one in\n"
    "flight but not due is reported and left alone. Invalid dates (see vks cred due) are reported\n"
    "and count as a failure: never rotated blindly. Secrets the CLI does not manage are skipped.\n"
    "One line per credential on stdout, a summary on stderr; no password is ever printed.\n"
    "\n"
    "  --within DURATION  also rotate what falls due within DURATION: 0, Nd, Nw or Nh (default 0)\n"
    "  --dry-run          list what would be rotated and why (due date, policy); writes nothing\n"
    "  --json             one JSON array with each credential's action and outcome\n"
    "  --tenant T         only credentials of tenant T\n"
    "  --set-hook CMD     as for one credential, run for each (VKS_CRED_NAME tells which one), so\n"
    "                     one script serves all (default $VKS_CRED_SET_HOOK; none: nothing to set)\n"
    "  --hook-timeout S   seconds before the hook's process group is killed (default\n"
    "                     $VKS_CRED_HOOK_TIMEOUT, else 60)\n"
    "  --relay-cafile F   CA file for the relays' STARTTLS certificates (default\n"
    "                     $VKS_CRED_RELAY_CAFILE, else the system's CAs)\n"
    "  --ehlo NAME        EHLO name of the test sessions (default localhost)\n"
    "  --smtp-timeout S   deadline of each test session in seconds (default 30)\n"
    "  --mount M          KV v2 mount (default $VKS_CRED_MOUNT, else secret)\n"
    "  --prefix P         path prefix of the credentials (default $VKS_CRED_PREFIX, else smtp-auth/)\n"
    "\n"
    "Vault address, token and TLS come from VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT etc.; keys from\n"
    "VKS_ENCRYPTION_KEY*; audit from VKS_AUDIT_*; the policy from VKS_CRED_ROTATION_DAYS.\n"
    "exit status (fit for a systemd timer): 0 nothing due, or every due credential rotated;\n"
    "4 at least one rotation failed or a credential is invalid; 1 local problem (usage, keys,\n"
    "configuration); 2 Vault refused or could not be reached for the listing. With --dry-run: 0\n"
    "nothing due; 3 something would be rotated; 4 something is invalid (a real run would fail).\n";

struct ropts {
    const char *within, *tenant, *set_hook, *hook_timeout, *cafile, *ehlo, *smtp_timeout, *mount, *prefix;
    bool due, dry_run, json;
};

enum { R_DUE = 256, R_WITHIN, R_DRY, R_JSON, R_TENANT, R_HOOK, R_HOOKTO, R_CAFILE, R_EHLO, R_SMTPTO, R_MOUNT,
       R_PREFIX, R_ONE };

static int parse(int argc, char **argv, struct ropts *o)
{
    static const struct option all[] = {
        { "due", no_argument, NULL, R_DUE }, { "within", required_argument, NULL, R_WITHIN },
        { "dry-run", no_argument, NULL, R_DRY }, { "json", no_argument, NULL, R_JSON },
        { "tenant", required_argument, NULL, R_TENANT }, { "set-hook", required_argument, NULL, R_HOOK },
        { "hook-timeout", required_argument, NULL, R_HOOKTO }, { "relay-cafile", required_argument, NULL, R_CAFILE },
        { "ehlo", required_argument, NULL, R_EHLO }, { "smtp-timeout", required_argument, NULL, R_SMTPTO },
        { "mount", required_argument, NULL, R_MOUNT }, { "prefix", required_argument, NULL, R_PREFIX },
        /* named so that getopt does not take --relay as an abbreviation of --relay-cafile */
        { "relay", required_argument, NULL, R_ONE }, { "password-stdin", no_argument, NULL, R_ONE },
        { "resume", no_argument, NULL, R_ONE }, { "abort", no_argument, NULL, R_ONE },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->mount = getenv("VKS_CRED_MOUNT");
    o->prefix = getenv("VKS_CRED_PREFIX");
    o->set_hook = getenv("VKS_CRED_SET_HOOK");
    o->hook_timeout = getenv("VKS_CRED_HOOK_TIMEOUT");
    o->cafile = getenv("VKS_CRED_RELAY_CAFILE");
    int c, li = 0;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "", all, &li)) != -1) {
        switch (c) {
        case R_DUE: o->due = true; break;
        case R_WITHIN: o->within = optarg; break;
        case R_DRY: o->dry_run = true; break;
        case R_JSON: o->json = true; break;
        case R_TENANT: o->tenant = optarg; break;
        case R_HOOK: o->set_hook = optarg; break;
        case R_HOOKTO: o->hook_timeout = optarg; break;
        case R_CAFILE: o->cafile = optarg; break;
        case R_EHLO: o->ehlo = optarg; break;
        case R_SMTPTO: o->smtp_timeout = optarg; break;
        case R_MOUNT: o->mount = optarg; break;
        case R_PREFIX: o->prefix = optarg; break;
        case R_ONE:
            fprintf(stderr, "vks cred rotate --due: --%s is for one credential (vks cred rotate NAME): each due "
                    "credential uses its stored relay and a generated password\n\n", all[li].name);
            fputs(vks_cli_cred_rotate_due_usage, stderr);
            return -1;
        default:
            fputs(vks_cli_cred_rotate_due_usage, stderr);
            return -1;
        }
    }
    if (!o->due || optind != argc) {
        fprintf(stderr, "vks cred rotate --due: %s\n\n", o->due ? "no NAME with --due" : "--due is required here");
        fputs(vks_cli_cred_rotate_due_usage, stderr);
        return -1;
    }
    return 0;
}

/* Whole seconds 1-3600 (as cli/cred_rotate.c): 0, or -1 after saying why. */
static int seconds(const char *what, const char *s, int *ms)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v < 1 || v > 3600) {
        fprintf(stderr, "vks cred rotate --due: %s \"%.16s\" must be whole seconds 1-3600\n", what, s);
        return -1;
    }
    *ms = (int)v * 1000;
    return 0;
}

/* The run's rotation options from the command line and environment: 0, or -1 after saying why.
 * The core forces the test step's TLS (required, verified); only cafile, ehlo and timeout are ours. */
static int rotate_opts(const struct ropts *o, struct vks_cred_rotate_opts *r)
{
    memset(r, 0, sizeof *r);
    r->set_hook = o->set_hook && o->set_hook[0] ? o->set_hook : NULL;
    r->smtp.cafile = o->cafile && o->cafile[0] ? o->cafile : NULL;
    r->smtp.ehlo_name = o->ehlo;
    if (o->hook_timeout && seconds("--hook-timeout (or VKS_CRED_HOOK_TIMEOUT)", o->hook_timeout,
                                   &r->hook_timeout_ms) != 0)
        return -1;
    if (o->smtp_timeout && seconds("--smtp-timeout", o->smtp_timeout, &r->smtp.timeout_ms) != 0)
        return -1;
    return 0;
}

#define CMD "rotate --due"

/* The Vault client, keyring (a real run: a primary key is required before anything is touched)
 * and context, as the other vks cred commands build them: 0, or -1 after saying why. */
static int env_open(const struct ropts *o, bool keys, struct vks_cli_cred_env *v)
{
    if (vks_cli_cred_open(CMD, o->mount, o->prefix, keys, v) != 0)
        return -1;
    if (keys && vks_keyring_primary_id(v->kr) == NULL) {
        struct vks_err e;
        vks_err_clear(&e);
        vks_err_set(&e, VKS_E_CONFIG, "no encryption key to store new passwords as ENC: envelopes: set "
                    "VKS_ENCRYPTION_KEY, VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS");
        vks_cli_cred_close(v);
        vks_cli_cred_fail(CMD, VKS_E_CONFIG, &e);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ output */

struct out {
    const struct vks_cred_due_sel *sel;
    bool dry_run, json;
    json_object *arr;
};

static const char *outcome(const struct vks_cred_due_item *it, bool dry_run)
{
    switch (it->action) {
    case VKS_CRED_DUE_REFUSE: return "invalid";
    case VKS_CRED_DUE_INFLIGHT: return "in-flight";
    case VKS_CRED_DUE_RESUME: return dry_run ? "would-resume" : it->status == VKS_OK ? "resumed" : "failed";
    case VKS_CRED_DUE_ROTATE: return dry_run ? "would-rotate" : it->status == VKS_OK ? "rotated" : "failed";
    }
    return "?";
}

/* "overdue since 2026-01-02T03:04:05Z (12 days; 180-day policy)" */
static void why_due(const struct vks_cred_due_item *it, int64_t now, char *out, size_t cap)
{
    char due[40];
    vks_cred_time(it->due.due, 0, due);
    long long d = (long long)((it->due.due - now) / 86400);
    snprintf(out, cap, "%s %s (%lld day%s%s; %d-day policy%s%s)",
             it->due.status == VKS_CRED_DUE_OVERDUE ? "overdue since" : "due", due, d < 0 ? -d : d,
             (d == 1 || d == -1) ? "" : "s", it->due.status == VKS_CRED_DUE_OVERDUE ? " ago" : " left", it->due.days,
             it->due.per_credential ? " of the credential" : "", it->due.stored_earlier ? ", stored due earlier" : "");
}

static void jset(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v && v[0] ? json_object_new_string(v) : NULL);
}

static json_object *item_json(const struct vks_cred_due_item *it, const struct out *w)
{
    json_object *o = json_object_new_object();
    char due[40] = "";
    bool invalid = it->due.status == VKS_CRED_DUE_INVALID;
    if (!invalid)
        vks_cred_time(it->due.due, 0, due);
    jset(o, "name", it->rec->name);
    jset(o, "username", it->rec->username);
    jset(o, "tenant", it->rec->tenant);
    jset(o, "action", vks_cred_due_action_name(it->action));
    jset(o, "outcome", outcome(it, w->dry_run));
    jset(o, "status", invalid ? "invalid" : it->due.status == VKS_CRED_DUE_OVERDUE ? "overdue"
                      : it->due.status == VKS_CRED_DUE_SOON ? "due-soon" : "ok");
    jset(o, "rotated", it->rec->rotated);
    jset(o, "due", due);
    json_object_object_add(o, "days_left", invalid ? NULL : json_object_new_int64((it->due.due - w->sel->now) / 86400));
    json_object_object_add(o, "rotation_days", invalid ? NULL : json_object_new_int(it->due.days));
    jset(o, "policy", invalid ? "" : it->due.per_credential ? "rotation_days" : "default");
    jset(o, "invalid", it->action == VKS_CRED_DUE_REFUSE ? it->due.why : "");
    jset(o, "relay", it->relay);
    jset(o, "rotation_id", it->rotation_id);
    json_object_object_add(o, "version", json_object_new_int64(it->rec->current_version ? it->rec->current_version
                                                                                       : it->rec->vault_version));
    if (it->ran) {
        jset(o, "step", it->step);
        json_object_object_add(o, "old_version", json_object_new_int64(it->old_version));
        json_object_object_add(o, "new_version", it->status == VKS_OK ? json_object_new_int64(it->new_version) : NULL);
        jset(o, "error", it->message);
        jset(o, "code", it->status == VKS_OK ? "" : vks_status_code(it->status));
    }
    return o;
}

static void item_text(FILE *f, const struct vks_cred_due_item *it, const struct out *w)
{
    char why[200];
    const char *name = it->rec->name;
    if (it->action == VKS_CRED_DUE_REFUSE) {
        fprintf(f, "invalid      %s: %s; not rotated (fix it, then vks cred rotate %s)\n", name, it->due.why, name);
        return;
    }
    if (it->action == VKS_CRED_DUE_INFLIGHT) {
        fprintf(f, "in-flight    %s: rotation %s in flight and not due: left to whoever started it (vks cred rotate "
               "--resume %s, or --abort %s)\n", name, it->rotation_id[0] ? it->rotation_id : "-", name, name);
        return;
    }
    why_due(it, w->sel->now, why, sizeof why);
    const char *relay = it->relay[0] ? it->relay : "(no relay stored)";
    if (w->dry_run) {
        fprintf(f, "%-12s %s: %s; relay %s%s%s\n", it->action == VKS_CRED_DUE_RESUME ? "would resume" : "would rotate",
               name, why, relay, it->rotation_id[0] ? "; rotation " : "", it->rotation_id);
    } else if (it->status == VKS_OK) {
        fprintf(f, "%-12s %s: version %lld -> %lld; was %s\n", it->action == VKS_CRED_DUE_RESUME ? "resumed" : "rotated",
               name, (long long)it->old_version, (long long)it->new_version, why);
    } else {
        fprintf(f, "FAILED       %s: %s (%s) after step %s; the current password is untouched; vks cred rotate "
               "--resume %s, or --abort %s\n", name, it->message, vks_status_code(it->status),
               it->step ? it->step : "none", name, name);
    }
}

static void progress(const struct vks_cred_due_item *it, size_t i, size_t n, void *arg)
{
    struct out *w = arg;
    (void)i, (void)n;
    if (w->json) /* the array on stdout at the end; the progress line on stderr now */
        json_object_array_add(w->arr, item_json(it, w));
    item_text(w->json ? stderr : stdout, it, w);
    fflush(w->json ? stderr : stdout);
}

static void summary(const struct vks_cred_due_plan *p, const struct out *w, const struct vks_cli_cred_env *v,
                    const char *within)
{
    const struct vks_cred_due_counts *c = &p->counts;
    if (w->dry_run)
        fprintf(stderr, "vks cred rotate --due --dry-run: %zu would be rotated, %zu resumed, %zu invalid (a failure), "
                "%zu in flight and not due (left alone), %zu not due",
                c->rotate, c->resume, c->refuse, c->inflight, c->not_due);
    else
        fprintf(stderr, "vks cred rotate --due: %zu rotated, %zu failed, %zu invalid (not rotated), %zu in flight "
                "and not due (left alone), %zu not due", c->rotated, c->failed, c->refuse, c->inflight, c->not_due);
    fprintf(stderr, " (within %s); policy %d days; %zu secret%s under %s/%s not managed by vks cred (skipped)\n",
            within ? within : "0", v->ctx.rotation_days, c->unmanaged, c->unmanaged == 1 ? "" : "s", v->ctx.mount,
            v->ctx.prefix);
}

/* ------------------------------------------------------------------ the command */

int vks_cli_cred_rotate_due(int argc, char **argv)
{
    struct ropts o;
    struct vks_cred_rotate_opts ro;
    struct vks_cred_due_sel sel = { .now = (int64_t)time(NULL) };
    if (parse(argc, argv, &o) != 0 || rotate_opts(&o, &ro) != 0)
        return 1;
    if (o.within && !vks_cred_parse_duration(o.within, &sel.within)) {
        fprintf(stderr, "vks cred rotate --due: --within \"%.32s\" is not a duration: 0, Nd, Nw or Nh, at most %dd\n",
                o.within, VKS_CRED_DAYS_MAX);
        return 1;
    }
    struct vks_err e;
    vks_err_clear(&e);
    if (o.tenant && vks_cred_check_tenant(o.tenant, "--tenant", &e) != VKS_OK)
        return vks_cli_cred_fail(CMD, VKS_E_INVALID_INPUT, &e);
    struct vks_cli_cred_env v;
    if (env_open(&o, !o.dry_run, &v) != 0)
        return 1;
    sel.default_days = v.ctx.rotation_days;
    sel.tenant = o.tenant;
    struct vks_cred_due_plan plan;
    vks_status st = vks_cred_due_plan(&v.ctx, &sel, &plan, &e);
    if (st != VKS_OK) {
        vks_cli_cred_close(&v);
        return vks_cli_cred_fail(CMD, st, &e);
    }
    struct out w = { &sel, o.dry_run, o.json, o.json ? json_object_new_array() : NULL };
    int rc;
    if (o.dry_run) {
        for (size_t i = 0; i < plan.n; i++)
            progress(&plan.items[i], i, plan.n, &w);
        rc = plan.counts.refuse ? 4 : plan.counts.rotate + plan.counts.resume ? 3 : 0;
    } else {
        vks_cred_rotate_due_run(&v.ctx, &plan, &ro, progress, &w);
        rc = plan.counts.refuse + plan.counts.failed ? 4 : 0;
    }
    if (w.arr) {
        puts(json_object_to_json_string_ext(w.arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(w.arr);
    }
    summary(&plan, &w, &v, o.within);
    vks_cred_due_plan_free(&plan);
    vks_cli_cred_close(&v);
    return rc;
}
