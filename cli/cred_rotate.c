/*
 * `vks cred rotate` and `vks cred rollback`: zero-downtime rotation (docs/credentials.md
 * "Rotation", man/vks-cred.1; core src/vks_cred_rotate.c). Thin: parse, read the provider's
 * password from stdin when asked, call the core, print.
 *
 * Exit status: 0 done; 1 local (usage, invalid input, keys, audit); 2 remote (Vault refused or
 * could not be reached, conflict or rotation in flight, the relay refused or could not be
 * reached, the set hook failed or timed out).
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cred_int.h"
#include "cred_rotate_due.h"
#include "vks.h"
#include "vks_cred_rotate.h"

const char vks_cli_cred_rotate_usage[] =
    "usage: vks cred rotate NAME [--set-hook CMD] [--hook-timeout SECONDS] [--password-stdin]\n"
    "                       [--relay HOST:PORT] [--relay-cafile FILE] [--ehlo NAME]\n"
    "                       [--smtp-timeout SECONDS] [--json] [--mount M] [--prefix P]\n"
    "       vks cred rotate --resume NAME [same options]\n"
    "       vks cred rotate --abort NAME [--json] [--mount M] [--prefix P]\n"
    "\n"
    "Gives the credential a new password without downtime, in four steps, each recorded in Vault\n"
    "before the next starts: create (the new password stored as pending, where resolvers never\n"
    "read it), set (the hook makes the relay accept it), test (a real SMTP AUTH PLAIN over STARTTLS\n"
    "with a verified certificate: only 235 goes on), finish (the pending password becomes current\n"
    "with check-and-set; the old one stays as previous for rollback). A failure stops at its step\n"
    "with the current password untouched; --resume continues the same rotation, --abort ends it.\n"
    "\n"
    "  --set-hook CMD     run CMD with /bin/sh -c, the new password on stdin (one line), env\n"
    "                     VKS_CRED_NAME, VKS_CRED_USERNAME, VKS_CRED_ROTATION_ID (VAULT_* and VKS_*\n"
    "                     removed); exit 0 means the relay accepts the new password (it may keep\n"
    "                     the old one too: that overlap is the zero downtime). No hook: nothing to\n"
    "                     set (the provider rotates, or --password-stdin)\n"
    "  --hook-timeout S   kill the hook's process group after S seconds (default 60)\n"
    "  --password-stdin   the new password comes from stdin (provider-issued; never argv)\n"
    "  --relay HOST:PORT  the relay to test against (default: the credential's stored relay)\n"
    "  --relay-cafile F   CA certificates for the relay's certificate (default: the system's)\n"
    "  --ehlo NAME        EHLO name for the test (default localhost)\n"
    "  --smtp-timeout S   deadline of the whole test session (default 30)\n"
    "  --resume           continue the rotation in flight (after a crash or a failed step)\n"
    "  --abort            end the rotation in flight: the pending password is removed, the\n"
    "                     current one stays\n"
    "  --json             one JSON object on stdout\n"
    "  --mount M, --prefix P  as for the other vks cred commands\n"
    "\n"
    "VKS_CRED_ROTATE_STOP_AFTER=claim|create|set|test|finish-data is a crash drill: the process\n"
    "dies (exit 137, as if killed) right after that step; --resume must then complete.\n"
    "exit status: 0 done; 1 local problem; 2 Vault, the relay or the hook refused or failed, or a\n"
    "rotation is already in flight (conflict).\n"
    "\n" VKS_CLI_CRED_ROTATE_DUE_BRIEF;

const char vks_cli_cred_rollback_usage[] =
    "usage: vks cred rollback NAME --reason TEXT [--json] [--mount M] [--prefix P]\n"
    "\n"
    "Makes the previous password (the one before the last rotation) current again: its stored\n"
    "envelope is copied unchanged as a new version with check-and-set, rotated/due follow that\n"
    "password's age, and the act is audited with the reason. The token must be allowed to read the\n"
    "credential's data (cred-operator alone is not; cred-operator with cred-support is).\n"
    "\n"
    "  --reason TEXT      why (required, 1-256 characters; audited)\n"
    "  --json             one JSON object on stdout\n"
    "exit status: 0 done; 1 local problem; 2 Vault refused (permission, conflict, no previous).\n";

struct ropts {
    const char *name, *mount, *prefix, *hook, *relay, *cafile, *ehlo, *reason;
    int hook_timeout_s, smtp_timeout_s;
    bool resume, abort_, json, password_stdin;
};

enum { R_MOUNT = 256, R_PREFIX, R_HOOK, R_HOOKT, R_PWSTDIN, R_RELAY, R_CAFILE, R_EHLO, R_SMTPT, R_RESUME, R_ABORT,
       R_JSON, R_REASON };

static int seconds(const char *opt, const char *s, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v < 1 || v > 3600) {
        fprintf(stderr, "vks cred rotate: %s \"%.16s\" must be whole seconds 1-3600\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int rparse(int argc, char **argv, bool rollback, struct ropts *o)
{
    static const struct option all[] = {
        { "mount", required_argument, NULL, R_MOUNT }, { "prefix", required_argument, NULL, R_PREFIX },
        { "set-hook", required_argument, NULL, R_HOOK }, { "hook-timeout", required_argument, NULL, R_HOOKT },
        { "password-stdin", no_argument, NULL, R_PWSTDIN }, { "relay", required_argument, NULL, R_RELAY },
        { "relay-cafile", required_argument, NULL, R_CAFILE }, { "ehlo", required_argument, NULL, R_EHLO },
        { "smtp-timeout", required_argument, NULL, R_SMTPT }, { "resume", no_argument, NULL, R_RESUME },
        { "abort", no_argument, NULL, R_ABORT }, { "json", no_argument, NULL, R_JSON },
        { "reason", required_argument, NULL, R_REASON }, { NULL, 0, NULL, 0 },
    };
    const char *usage = rollback ? vks_cli_cred_rollback_usage : vks_cli_cred_rotate_usage;
    memset(o, 0, sizeof *o);
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "", all, NULL)) != -1) {
        bool ok = rollback ? (c == R_MOUNT || c == R_PREFIX || c == R_JSON || c == R_REASON) : c != R_REASON;
        if (!ok && c != '?')
            fprintf(stderr, "vks cred %s: option '%s' does not apply here\n", argv[0], argv[optind - 1]);
        int r = 0;
        switch (ok ? c : '?') {
        case R_MOUNT: o->mount = optarg; break;
        case R_PREFIX: o->prefix = optarg; break;
        case R_HOOK: o->hook = optarg; break;
        case R_HOOKT: r = seconds("--hook-timeout", optarg, &o->hook_timeout_s); break;
        case R_PWSTDIN: o->password_stdin = true; break;
        case R_RELAY: o->relay = optarg; break;
        case R_CAFILE: o->cafile = optarg; break;
        case R_EHLO: o->ehlo = optarg; break;
        case R_SMTPT: r = seconds("--smtp-timeout", optarg, &o->smtp_timeout_s); break;
        case R_RESUME: o->resume = true; break;
        case R_ABORT: o->abort_ = true; break;
        case R_JSON: o->json = true; break;
        case R_REASON: o->reason = optarg; break;
        default: fputs(usage, stderr); return -1;
        }
        if (r != 0)
            return -1;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "vks cred %s: give exactly one NAME\n\n", argv[0]);
        fputs(usage, stderr);
        return -1;
    }
    o->name = argv[optind];
    if (o->resume && o->abort_) {
        fprintf(stderr, "vks cred rotate: --resume and --abort exclude each other\n");
        return -1;
    }
    if (o->abort_ && (o->hook || o->password_stdin || o->relay || o->cafile || o->ehlo)) {
        fprintf(stderr, "vks cred rotate: --abort takes only NAME, --json, --mount and --prefix\n");
        return -1;
    }
    return 0;
}

static void on_progress(const char *step, const char *detail, void *arg)
{
    const char *name = arg;
    fprintf(stderr, "rotate %s: %s%s%s\n", name, step, detail && detail[0] ? ": " : "", detail ? detail : "");
}

static void print_result(const struct ropts *o, const struct vks_cred_rotate_result *res, vks_status st,
                         const struct vks_err *e)
{
    if (!o->json) {
        if (st == VKS_OK)
            printf("%s: rotated; version %lld is current, version %lld is previous (vks cred rollback)\n", o->name,
                   (long long)res->new_version, (long long)res->old_version);
        return;
    }
    json_object *j = json_object_new_object();
    json_object_object_add(j, "name", json_object_new_string(o->name));
    json_object_object_add(j, "result", json_object_new_string(st == VKS_OK ? "success" : "failure"));
    json_object_object_add(j, "code", json_object_new_string(vks_status_code(st)));
    json_object_object_add(j, "error", st == VKS_OK ? NULL : json_object_new_string(e->msg));
    json_object_object_add(j, "rotation_id", res->rotation_id[0] ? json_object_new_string(res->rotation_id) : NULL);
    json_object_object_add(j, "step", res->step && res->step[0] ? json_object_new_string(res->step) : NULL);
    json_object_object_add(j, "old_version", res->old_version ? json_object_new_int64(res->old_version) : NULL);
    json_object_object_add(j, "new_version", res->new_version ? json_object_new_int64(res->new_version) : NULL);
    if (res->test.stage) {
        json_object *t = json_object_new_object();
        json_object_object_add(t, "ok", json_object_new_boolean(res->test.ok));
        json_object_object_add(t, "stage", json_object_new_string(res->test.stage));
        json_object_object_add(t, "code", json_object_new_int(res->test.code));
        json_object_object_add(t, "peer", json_object_new_string(res->test.peer));
        json_object_object_add(t, "tls_version", json_object_new_string(res->test.tls_version));
        json_object_object_add(t, "tls_verified", json_object_new_boolean(res->test.tls_verified));
        json_object_object_add(j, "test", t);
    }
    puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
}

static int do_abort(const struct ropts *o)
{
    struct vks_cli_cred_env v;
    if (vks_cli_cred_open("rotate", o->mount, o->prefix, false, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cred_rotate_abort(&v.ctx, o->name, &e);
    if (o->json) {
        struct vks_cred_rotate_result none;
        memset(&none, 0, sizeof none);
        print_result(o, &none, st, &e);
    } else if (st == VKS_OK) {
        printf("%s: rotation aborted; the current password is unchanged\n", o->name);
    }
    vks_cli_cred_close(&v);
    return st == VKS_OK ? 0 : vks_cli_cred_fail("rotate", st, &e);
}

int vks_cli_cred_rotate(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--due") == 0) /* every due credential: cli/cred_rotate_due.c */
            return vks_cli_cred_rotate_due(argc, argv);
    struct ropts o;
    if (rparse(argc, argv, false, &o) != 0)
        return 1;
    if (o.abort_)
        return do_abort(&o);
    vks_secret given = VKS_SECRET_EMPTY;
    if (o.password_stdin && vks_cli_read_secret(&given, VKS_CRED_PROVIDED_MAX + 2, "new password") != 0)
        return 1;
    struct vks_cli_cred_env v;
    if (vks_cli_cred_open("rotate", o.mount, o.prefix, true, &v) != 0) {
        vks_secret_free(&given);
        return 1;
    }
    struct vks_cred_rotate_opts ro = {
        .resume = o.resume, .password = o.password_stdin ? &given : NULL, .set_hook = o.hook,
        .hook_timeout_ms = o.hook_timeout_s * 1000, .relay = o.relay,
        .smtp = { .cafile = o.cafile, .ehlo_name = o.ehlo, .timeout_ms = o.smtp_timeout_s * 1000 },
        .progress = on_progress, .progress_arg = (void *)o.name,
    };
    struct vks_cred_rotate_result res;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cred_rotate(&v.ctx, o.name, &ro, &res, &e);
    print_result(&o, &res, st, &e);
    vks_cred_rotate_result_free(&res);
    vks_secret_free(&given);
    vks_cli_cred_close(&v);
    return st == VKS_OK ? 0 : vks_cli_cred_fail("rotate", st, &e);
}

int vks_cli_cred_rollback(int argc, char **argv)
{
    struct ropts o;
    if (rparse(argc, argv, true, &o) != 0)
        return 1;
    if (!o.reason) {
        fprintf(stderr, "vks cred rollback: --reason TEXT is required (it is audited)\n");
        return 1;
    }
    struct vks_cli_cred_env v;
    if (vks_cli_cred_open("rollback", o.mount, o.prefix, false, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    int64_t nv = 0;
    vks_status st = vks_cred_rollback(&v.ctx, o.name, o.reason, &nv, &e);
    if (o.json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "name", json_object_new_string(o.name));
        json_object_object_add(j, "result", json_object_new_string(st == VKS_OK ? "success" : "failure"));
        json_object_object_add(j, "code", json_object_new_string(vks_status_code(st)));
        json_object_object_add(j, "error", st == VKS_OK ? NULL : json_object_new_string(e.msg));
        json_object_object_add(j, "new_version", nv ? json_object_new_int64(nv) : NULL);
        puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    } else if (st == VKS_OK) {
        printf("%s: back to the previous password as version %lld\n", o.name, (long long)nv);
    }
    vks_cli_cred_close(&v);
    return st == VKS_OK ? 0 : vks_cli_cred_fail("rollback", st, &e);
}
