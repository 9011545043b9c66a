/*
 * `vks cred reset`: the emergency reset (docs/incident-runbook.md, man/vks-cred.1; core
 * src/vks_cred_reset.c). Thin: parse, confirm a fleet-wide reset on a terminal, call the core,
 * print what was done per credential.
 *
 * Exit status (vks_cli_exit_code, as the other cred commands): 0 done; 1 local (usage, reason,
 * keys, audit, not confirmed); 2 remote (Vault refused or could not be reached midway: what was
 * done is printed, a rerun completes; a rotation failed).
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cred_int.h"
#include "vks.h"
#include "vks_cred_reset.h"

const char vks_cli_cred_reset_usage[] =
    "usage: vks cred reset NAME --reason TEXT [--rotate] [--json] [--mount M] [--prefix P]\n"
    "       vks cred reset --tenant T --reason TEXT [--rotate] [--yes] [--json] ...\n"
    "       vks cred reset --all --reason TEXT [--rotate] [--yes] [--json] ...\n"
    "\n"
    "Emergency reset: at once marks each credential reset in Vault (custom_metadata state=reset),\n"
    "so every new lookup refuses it with code 'revoked' (vks-agent answers Postfix TEMP: mail is\n"
    "deferred, never sent without AUTH), then writes the control record every running resolver\n"
    "checks (default every 2 s), so processes drop their cached copy within seconds. With --rotate\n"
    "each one then gets a new password (the steps of vks cred rotate), which ends its reset.\n"
    "Connections already authenticated are not cut: see docs/incident-runbook.md.\n"
    "\n"
    "  NAME               one credential\n"
    "  --tenant T         every managed credential whose tenant is T\n"
    "  --all              every managed credential under the prefix\n"
    "  --reason TEXT      why (required, 1-256 characters; audited with the operator and scope)\n"
    "  --rotate           then rotate each one (stored relay; --set-hook, --relay-cafile, --ehlo\n"
    "                     as for vks cred rotate)\n"
    "  --yes              no confirmation for --tenant / --all (required when stdin is not a\n"
    "                     terminal)\n"
    "  --json             one JSON object on stdout\n"
    "  --mount M, --prefix P  as for the other vks cred commands\n"
    "exit status: 0 done; 1 local problem or not confirmed; 2 Vault refused or failed midway (what\n"
    "was done is printed; run the same command again to complete) or a rotation failed.\n";

struct xopts {
    const char *name, *tenant, *reason, *mount, *prefix, *hook, *cafile, *ehlo;
    bool all, rotate, yes, json;
};

enum { X_TENANT = 256, X_ALL, X_REASON, X_ROTATE, X_YES, X_JSON, X_MOUNT, X_PREFIX, X_HOOK, X_CAFILE, X_EHLO };

static int xparse(int argc, char **argv, struct xopts *o)
{
    static const struct option all[] = {
        { "tenant", required_argument, NULL, X_TENANT }, { "all", no_argument, NULL, X_ALL },
        { "reason", required_argument, NULL, X_REASON }, { "rotate", no_argument, NULL, X_ROTATE },
        { "yes", no_argument, NULL, X_YES }, { "json", no_argument, NULL, X_JSON },
        { "mount", required_argument, NULL, X_MOUNT }, { "prefix", required_argument, NULL, X_PREFIX },
        { "set-hook", required_argument, NULL, X_HOOK }, { "relay-cafile", required_argument, NULL, X_CAFILE },
        { "ehlo", required_argument, NULL, X_EHLO }, { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 1;
    for (int c; (c = getopt_long(argc, argv, "", all, NULL)) != -1;) {
        switch (c) {
        case X_TENANT: o->tenant = optarg; break;
        case X_ALL: o->all = true; break;
        case X_REASON: o->reason = optarg; break;
        case X_ROTATE: o->rotate = true; break;
        case X_YES: o->yes = true; break;
        case X_JSON: o->json = true; break;
        case X_MOUNT: o->mount = optarg; break;
        case X_PREFIX: o->prefix = optarg; break;
        case X_HOOK: o->hook = optarg; break;
        case X_CAFILE: o->cafile = optarg; break;
        case X_EHLO: o->ehlo = optarg; break;
        default: fputs(vks_cli_cred_reset_usage, stderr); return -1;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "vks cred reset: at most one NAME\n");
        return -1;
    }
    o->name = optind < argc ? argv[optind] : NULL;
    if ((o->name != NULL) + (o->tenant != NULL) + o->all != 1) {
        fprintf(stderr, "vks cred reset: give exactly one of NAME, --tenant T, --all\n\n%s", vks_cli_cred_reset_usage);
        return -1;
    }
    if (!o->reason) {
        fprintf(stderr, "vks cred reset: --reason TEXT is required (it is audited)\n");
        return -1;
    }
    if (!o->rotate && (o->hook || o->cafile || o->ehlo)) {
        fprintf(stderr, "vks cred reset: --set-hook, --relay-cafile and --ehlo apply only with --rotate\n");
        return -1;
    }
    return 0;
}

/* A fleet-wide reset stops mail for many senders: typed confirmation on a terminal, --yes otherwise. */
static int confirm(const struct xopts *o)
{
    if (o->name || o->yes)
        return 0;
    const char *word = o->all ? "all" : o->tenant;
    if (!isatty(0)) {
        fprintf(stderr, "vks cred reset: stdin is not a terminal: give --yes to reset %s\n",
                o->all ? "every credential" : "the tenant's credentials");
        return -1;
    }
    fprintf(stderr, "This refuses %s at once (mail using them is deferred until they are rotated).\n"
            "Type '%s' to confirm: ", o->all ? "EVERY managed credential under the prefix" :
            "every credential of this tenant", word);
    char line[128] = "";
    if (fgets(line, sizeof line, stdin) == NULL)
        line[0] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, word) != 0) {
        fprintf(stderr, "vks cred reset: not confirmed; nothing was done\n");
        return -1;
    }
    return 0;
}

static void on_progress(const char *name, const char *what, void *arg)
{
    (void)arg;
    fprintf(stderr, "reset %s: %s\n", name, what);
}

static void print_json(const struct vks_cred_reset_result *r, vks_status st, const struct vks_err *e)
{
    json_object *j = json_object_new_object(), *a = json_object_new_array();
    json_object_object_add(j, "result", json_object_new_string(st == VKS_OK ? "success" : "failure"));
    json_object_object_add(j, "code", json_object_new_string(vks_status_code(st)));
    json_object_object_add(j, "error", st == VKS_OK ? NULL : json_object_new_string(e->msg));
    json_object_object_add(j, "reset_id", r->reset_id[0] ? json_object_new_string(r->reset_id) : NULL);
    json_object_object_add(j, "scope", r->scope[0] ? json_object_new_string(r->scope) : NULL);
    json_object_object_add(j, "marked", json_object_new_int64((int64_t)r->n_marked));
    json_object_object_add(j, "failed", json_object_new_int64((int64_t)r->n_failed));
    json_object_object_add(j, "rotated", json_object_new_int64((int64_t)r->n_rotated));
    json_object_object_add(j, "record_written", json_object_new_boolean(r->record_written));
    json_object_object_add(j, "record_seq", r->record_seq ? json_object_new_int64(r->record_seq) : NULL);
    for (size_t i = 0; i < r->n; i++) {
        json_object *it = json_object_new_object();
        json_object_object_add(it, "name", json_object_new_string(r->items[i].name));
        json_object_object_add(it, "outcome", json_object_new_string(r->items[i].outcome));
        json_object_object_add(it, "code", json_object_new_string(vks_status_code(r->items[i].status)));
        json_object_object_add(it, "error", r->items[i].error[0] ? json_object_new_string(r->items[i].error) : NULL);
        json_object_object_add(it, "new_version",
                               r->items[i].new_version ? json_object_new_int64(r->items[i].new_version) : NULL);
        json_object_array_add(a, it);
    }
    json_object_object_add(j, "credentials", a);
    puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
}

static void print_text(const struct vks_cred_reset_result *r)
{
    for (size_t i = 0; i < r->n; i++)
        printf("%s: %s%s%s\n", r->items[i].name, r->items[i].outcome, r->items[i].error[0] ? ": " : "",
               r->items[i].error);
    if (r->reset_id[0])
        printf("reset %s (%s): %zu marked, %zu failed%s; control record %s\n", r->reset_id, r->scope, r->n_marked,
               r->n_failed, "", r->record_written ? "written: running processes refuse within seconds"
                                                   : "NOT written: run the same command again");
}

int vks_cli_cred_reset(int argc, char **argv)
{
    struct xopts o;
    if (xparse(argc, argv, &o) != 0 || confirm(&o) != 0)
        return 1;
    struct vks_cli_cred_env v;
    if (vks_cli_cred_open("reset", o.mount, o.prefix, o.rotate, &v) != 0)
        return 1;
    struct vks_cred_rotate_opts ro = { .set_hook = o.hook, .smtp = { .cafile = o.cafile, .ehlo_name = o.ehlo } };
    struct vks_cred_reset_req q = {
        .scope = o.name ? VKS_CRED_RESET_NAME : o.tenant ? VKS_CRED_RESET_TENANT : VKS_CRED_RESET_ALL,
        .name = o.name, .tenant = o.tenant, .reason = o.reason, .rotate = o.rotate, .rotate_opts = &ro,
        .progress = o.json ? NULL : on_progress,
    };
    struct vks_cred_reset_result res;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cred_reset(&v.ctx, &q, &res, &e);
    if (o.json)
        print_json(&res, st, &e);
    else
        print_text(&res);
    vks_cred_reset_result_free(&res);
    vks_cli_cred_close(&v);
    return st == VKS_OK ? 0 : vks_cli_cred_fail("reset", st, &e);
}
