/*
 * `vks cred ...`: managed SMTP credentials (docs/credentials.md; man/vks-cred.1 — keep the two in
 * step: tests/integration/63-install-man.sh). Thin over src/vks_cred*.c: parse options, build the
 * Vault client and keyring from the environment, call the core, print.
 *
 * Exit status: 0 ok; 1 a local problem (usage, invalid input, configuration, keys, audit sink);
 * 2 a remote one (Vault refused, could not be reached, not found, exists, conflict).
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vks.h"
#include "cred_int.h"
#include "vks_cred.h"
#include "vks_envelope.h"
#include "vks_vault.h"

#define COMMON_HELP \
    "  --mount M          KV v2 mount (default $VKS_CRED_MOUNT, else secret)\n" \
    "  --prefix P         path prefix of the credentials (default $VKS_CRED_PREFIX, else smtp-auth/)\n"
#define EXIT_HELP \
    "Vault address, token and TLS come from VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT etc.; keys from\n" \
    "VKS_ENCRYPTION_KEY*; audit from VKS_AUDIT_* (docs/audit.md).\n" \
    "exit status: 0 ok; 1 local problem (usage, invalid input, keys, audit); 2 Vault refused or\n" \
    "could not be reached (not found, exists, conflict, permission denied, unavailable).\n"

const char vks_cli_cred_create_usage[] =
    "usage: vks cred create NAME --username U (--domain D... | --all-domains) [--ip A...]\n"
    "                       [--owner O] [--tenant T] [--relay HOST:PORT] [--password-stdin]\n"
    "                       [--inbound [--retrievable | --verifier SCHEME]] [--mount M] [--prefix P]\n"
    "\n"
    "Creates the credential NAME at <mount>/<prefix>NAME: the password (generated: 32 letters and\n"
    "digits from the kernel CSPRNG) stored as an ENC: envelope in field 'key', the username beside\n"
    "it, restrictions and lifecycle state in custom_metadata. The generated password is printed\n"
    "once on stdout and never again (reveal is audited).\n"
    "\n"
    "  --username U       SMTP AUTH user name: 1-255 of letters, digits and + = , . @ _ -, unique\n"
    "                     under the prefix\n"
    "  --domain D         allow this recipient domain (or *.suffix); repeatable\n"
    "  --all-domains      no domain restriction (the default is specific domains)\n"
    "  --ip A             allow this relay address or CIDR range (IPv4 or IPv6); repeatable;\n"
    "                     without it all IPs are allowed\n"
    "  --owner O          who to ask about the credential (free text)\n"
    "  --tenant T         tenant label (a-z 0-9 . _ -) for list --tenant\n"
    "  --relay HOST:PORT  the relay (submission port, STARTTLS) that `vks cred rotate` tests a\n"
    "                     new password against ([IPv6]:PORT for an address)\n"
    "  --password-stdin   read a provider-issued password from stdin instead of generating one\n"
    "                     (echo off on a terminal; never on the command line)\n"
    "  --inbound          a credential applications log in to our MTA with (docs/inbound.md):\n"
    "                     --domain are the sender domains it may use, --ip the source addresses\n"
    "                     it may connect from; only a verifier of the password is stored (field\n"
    "                     'verifier'): it cannot be revealed later\n"
    "  --retrievable      inbound: keep the password as an ENC: envelope in 'key' instead, so\n"
    "                     that reveal works\n"
    "  --verifier SCHEME  inbound: scrypt (default ln=14,r=8,p=5), scrypt:ln=N,r=R,p=P,\n"
    "                     pbkdf2-sha256 (default i=600000) or pbkdf2-sha256:i=N; or\n"
    "                     VKS_CRED_VERIFIER\n" COMMON_HELP "\n" EXIT_HELP;
const char vks_cli_cred_list_usage[] =
    "usage: vks cred list [--tenant T] [--state S] [--due-before DATE] [--json] [--mount M]\n"
    "                     [--prefix P]\n"
    "\n"
    "Lists every credential under the prefix: name, username, permissions (\"All domains, all\n"
    "IPs\" or \"2 domains, 3 IPs\"), created, last rotated, due and state. Reads metadata only.\n"
    "\n"
    "  --tenant T         only credentials of tenant T\n"
    "  --state S          only credentials in state S (active, rotating, reset; unmanaged for\n"
    "                     secrets under the prefix that vks cred did not create)\n"
    "  --due-before DATE  only credentials whose effective due (as in `vks cred due`) is before DATE\n"
    "                     (YYYY-MM-DD, UTC); those whose dates cannot be read are always listed\n"
    "  --json             one JSON array\n" COMMON_HELP "\n" EXIT_HELP;
const char vks_cli_cred_due_usage[] =
    "usage: vks cred due [--within DURATION] [--tenant T] [--json] [--mount M] [--prefix P]\n"
    "\n"
    "Lists the credentials that are past their due date or due within DURATION (default 30d), and\n"
    "those whose dates cannot be read (invalid: listed, never skipped). A credential is due at the\n"
    "earlier of its stored due date and last rotation + the rotation policy: custom_metadata\n"
    "rotation_days, else $VKS_CRED_ROTATION_DAYS, else 180 days. Reads metadata only.\n"
    "\n"
    "  --within DURATION  also list what falls due within DURATION: 0, Nd, Nw or Nh (at most 3650d)\n"
    "  --tenant T         only credentials of tenant T\n"
    "  --json             one JSON array\n" COMMON_HELP "\n"
    "exit status (fit for a systemd timer): 0 nothing overdue, invalid or due within DURATION;\n"
    "3 something overdue or invalid; 4 something due within DURATION, nothing overdue; 1 local\n"
    "problem; 2 Vault refused or could not be reached.\n";
const char vks_cli_cred_show_usage[] =
    "usage: vks cred show NAME [--json] [--mount M] [--prefix P]\n"
    "\n"
    "Shows a credential's metadata, restrictions, version history and the keyed fingerprint of\n"
    "its password (HMAC with the audit key's fingerprint subkey: the fp of lookup audit events;\n"
    "without VKS_AUDIT_KEY or VKS_AUDIT_KEY_FILE no fingerprint is shown).\n"
    "\n"
    "  --json             one JSON object\n" COMMON_HELP "\n" EXIT_HELP;
const char vks_cli_cred_reveal_usage[] =
    "usage: vks cred reveal NAME --reason TEXT [--force-stdout] [--mount M] [--prefix P]\n"
    "\n"
    "Prints the credential's password, for support. The reason and the operator's Vault identity\n"
    "are audited before the password is printed.\n"
    "\n"
    "  --reason TEXT      why the password is revealed (required, 1-256 characters)\n"
    "  --force-stdout     print even when stdout is not a terminal (a pipe or a file): refused\n"
    "                     without it, so a password does not end up in a file by accident\n" COMMON_HELP
    "\n" EXIT_HELP;
const char vks_cli_cred_restrict_usage[] =
    "usage: vks cred restrict NAME [--domain D...] [--remove-domain D...] [--all-domains]\n"
    "                         [--ip A...] [--remove-ip A...] [--all-ips]\n"
    "                         [--relay HOST:PORT | --no-relay] [--json] [--mount M] [--prefix P]\n"
    "\n"
    "Changes the domains and IPs a credential may be used for (the resolver enforces them on the\n"
    "next lookup). Lifting first, then removals, then additions; written with check-and-set.\n"
    "\n"
    "  --domain D         add an allowed domain (or *.suffix); repeatable\n"
    "  --remove-domain D  remove an allowed domain; repeatable\n"
    "  --all-domains      lift the domain restriction\n"
    "  --ip A             add an allowed address or CIDR range; repeatable\n"
    "  --remove-ip A      remove an allowed address or range; repeatable\n"
    "  --all-ips          lift the IP restriction\n"
    "  --relay HOST:PORT  the relay `vks cred rotate` tests new passwords against\n"
    "  --no-relay         forget the stored relay\n"
    "  --json             print the resulting credential as JSON\n" COMMON_HELP "\n"
    "Refused (exit 2, conflict) while a rotation is in flight: resume or abort it first.\n" EXIT_HELP;
const char vks_cli_cred_delete_usage[] =
    "usage: vks cred delete NAME [--confirm USERNAME] [--mount M] [--prefix P]\n"
    "\n"
    "Deletes the credential: every version and its metadata. Asks to type the credential's\n"
    "username on a terminal.\n"
    "\n"
    "  --confirm USERNAME the credential's username, instead of typing it\n" COMMON_HELP "\n" EXIT_HELP;

#define MAXL 256

struct copts {
    const char *name, *mount, *prefix, *username, *owner, *tenant, *state, *reason, *confirm, *due_before, *within;
    const char *relay, *verifier;
    bool all_domains, all_ips, json, password_stdin, force_stdout, no_relay, inbound, retrievable;
    const char *dom[MAXL], *rmdom[MAXL], *ip[MAXL], *rmip[MAXL];
    size_t ndom, nrmdom, nip, nrmip;
};

enum { O_MOUNT = 256, O_PREFIX, O_USER, O_OWNER, O_TENANT, O_STATE, O_REASON, O_CONFIRM, O_ALLD, O_ALLI, O_JSON,
       O_PWSTDIN, O_FORCE, O_DOM, O_RMDOM, O_IP, O_RMIP, O_DUE, O_WITHIN, O_RELAY, O_NORELAY,
       O_INBOUND, O_RETRIEVABLE, O_VERIFIER };

static int add_to(const char **arr, size_t *n, const char *v, const char *opt)
{
    if (*n == MAXL) {
        fprintf(stderr, "vks cred: at most %d %s options\n", MAXL, opt);
        return -1;
    }
    arr[(*n)++] = v;
    return 0;
}

/* `allowed`: the option codes this command takes (0-terminated). NAME is required when want_name. */
static int parse(int argc, char **argv, const int *allowed, bool want_name, const char *usage, struct copts *o)
{
    static const struct option all[] = {
        { "mount", required_argument, NULL, O_MOUNT }, { "prefix", required_argument, NULL, O_PREFIX },
        { "username", required_argument, NULL, O_USER }, { "owner", required_argument, NULL, O_OWNER },
        { "tenant", required_argument, NULL, O_TENANT }, { "state", required_argument, NULL, O_STATE },
        { "reason", required_argument, NULL, O_REASON }, { "confirm", required_argument, NULL, O_CONFIRM },
        { "all-domains", no_argument, NULL, O_ALLD }, { "all-ips", no_argument, NULL, O_ALLI },
        { "json", no_argument, NULL, O_JSON }, { "password-stdin", no_argument, NULL, O_PWSTDIN },
        { "force-stdout", no_argument, NULL, O_FORCE }, { "domain", required_argument, NULL, O_DOM },
        { "remove-domain", required_argument, NULL, O_RMDOM }, { "ip", required_argument, NULL, O_IP },
        { "remove-ip", required_argument, NULL, O_RMIP }, { "due-before", required_argument, NULL, O_DUE },
        { "within", required_argument, NULL, O_WITHIN }, { "relay", required_argument, NULL, O_RELAY },
        { "no-relay", no_argument, NULL, O_NORELAY }, { "inbound", no_argument, NULL, O_INBOUND },
        { "retrievable", no_argument, NULL, O_RETRIEVABLE }, { "verifier", required_argument, NULL, O_VERIFIER },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->mount = getenv("VKS_CRED_MOUNT");
    o->prefix = getenv("VKS_CRED_PREFIX");
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "", all, NULL)) != -1) {
        bool ok = false;
        for (const int *a = allowed; *a; a++)
            ok = ok || *a == c;
        if (!ok && c != '?')
            fprintf(stderr, "vks cred %s: option '%s' does not apply here\n", argv[0], argv[optind - 1]);
        int r = 0;
        switch (ok ? c : '?') {
        case O_MOUNT: o->mount = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_USER: o->username = optarg; break;
        case O_OWNER: o->owner = optarg; break;
        case O_TENANT: o->tenant = optarg; break;
        case O_STATE: o->state = optarg; break;
        case O_REASON: o->reason = optarg; break;
        case O_CONFIRM: o->confirm = optarg; break;
        case O_DUE: o->due_before = optarg; break;
        case O_WITHIN: o->within = optarg; break;
        case O_RELAY: o->relay = optarg; break;
        case O_NORELAY: o->no_relay = true; break;
        case O_INBOUND: o->inbound = true; break;
        case O_RETRIEVABLE: o->retrievable = true; break;
        case O_VERIFIER: o->verifier = optarg; break;
        case O_ALLD: o->all_domains = true; break;
        case O_ALLI: o->all_ips = true; break;
        case O_JSON: o->json = true; break;
        case O_PWSTDIN: o->password_stdin = true; break;
        case O_FORCE: o->force_stdout = true; break;
        case O_DOM: r = add_to(o->dom, &o->ndom, optarg, "--domain"); break;
        case O_RMDOM: r = add_to(o->rmdom, &o->nrmdom, optarg, "--remove-domain"); break;
        case O_IP: r = add_to(o->ip, &o->nip, optarg, "--ip"); break;
        case O_RMIP: r = add_to(o->rmip, &o->nrmip, optarg, "--remove-ip"); break;
        default: fputs(usage, stderr); return -1;
        }
        if (r != 0)
            return -1;
    }
    int rest = argc - optind;
    if (rest != (want_name ? 1 : 0)) {
        fprintf(stderr, "vks cred %s: %s\n\n", argv[0], want_name ? "give exactly one NAME" : "unexpected argument");
        fputs(usage, stderr);
        return -1;
    }
    o->name = want_name ? argv[optind] : NULL;
    return 0;
}


static int fail(const char *cmd, vks_status st, const struct vks_err *e)
{
    fprintf(stderr, "vks cred %s: %s (%s)\n", cmd, e->msg[0] ? e->msg : vks_status_code(st), vks_status_code(st));
    if (st == VKS_E_PERMISSION_DENIED)
        fprintf(stderr, "vks cred %s: permission denied: the token's Vault policies do not allow this; what each "
                "command needs: vks-cred(1) ACCESS CONTROL, docs/credentials.md\n", cmd);
    return vks_cli_exit_code(st);
}

struct env {
    struct vks_vault *vault;
    struct vks_keyring *kr;
    struct vks_cred_ctx ctx;
};

static void env_close(struct env *v)
{
    vks_vault_free(v->vault);
    vks_keyring_free(v->kr);
}

/* The rotation policy: $VKS_CRED_ROTATION_DAYS (1-3650), else 180 days. */
static vks_status policy_days(int *days, struct vks_err *e)
{
    const char *s = getenv("VKS_CRED_ROTATION_DAYS");
    *days = VKS_CRED_DUE_DAYS;
    if (s != NULL && !vks_cred_parse_days(s, days))
        return vks_err_set(e, VKS_E_CONFIG, "VKS_CRED_ROTATION_DAYS \"%.16s\" must be a number of days 1-%d", s,
                           VKS_CRED_DAYS_MAX);
    return VKS_OK;
}

static int env_open(const char *cmd, const struct copts *o, bool keys, struct env *v)
{
    memset(v, 0, sizeof *v);
    struct vks_vault_config cfg;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_vault_config_from_env(&cfg, &e);
    if (st == VKS_OK) {
        st = vks_vault_new(&cfg, &v->vault, &e);
        vks_vault_config_clear(&cfg);
    }
    if (st == VKS_OK && keys)
        st = vks_keyring_load_env(&v->kr, &e);
    if (st == VKS_OK)
        st = vks_cred_ctx_init(&v->ctx, v->vault, v->kr, o->mount, o->prefix, "cli", &e);
    if (st == VKS_OK)
        st = policy_days(&v->ctx.rotation_days, &e);
    if (st != VKS_OK) {
        env_close(v);
        fail(cmd, st, &e);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ create */

static vks_status build_lists(const struct copts *o, struct vks_cred_restrictions *r, struct vks_err *e)
{
    memset(r, 0, sizeof *r);
    r->domains.all = o->all_domains;
    r->hosts.all = o->nip == 0;
    vks_status st = VKS_OK;
    if (o->all_domains && o->ndom)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "--domain and --all-domains exclude each other");
    for (size_t i = 0; st == VKS_OK && i < o->ndom; i++)
        st = vks_cred_list_add(&r->domains, false, o->dom[i], "--domain", e);
    for (size_t i = 0; st == VKS_OK && i < o->nip; i++)
        st = vks_cred_list_add(&r->hosts, true, o->ip[i], "--ip", e);
    return st;
}

int vks_cli_cred_create(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_USER, O_OWNER, O_TENANT, O_ALLD, O_DOM, O_IP, O_PWSTDIN,
                                   O_RELAY, O_INBOUND, O_RETRIEVABLE, O_VERIFIER, 0 };
    struct copts o;
    if (parse(argc, argv, allowed, true, vks_cli_cred_create_usage, &o) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_restrictions r;
    vks_status st = build_lists(&o, &r, &e);
    if (st == VKS_OK && !o.username)
        st = vks_err_set(&e, VKS_E_INVALID_INPUT, "--username is required");
    struct vks_verifier_params vp;
    const char *vs = o.verifier ? o.verifier : getenv("VKS_CRED_VERIFIER");
    if (st == VKS_OK && (o.retrievable || o.verifier) && !o.inbound)
        st = vks_err_set(&e, VKS_E_INVALID_INPUT, "--retrievable and --verifier apply to --inbound credentials only");
    if (st == VKS_OK && o.retrievable && o.verifier)
        st = vks_err_set(&e, VKS_E_INVALID_INPUT, "--retrievable keeps the password itself: no --verifier with it");
    if (st == VKS_OK && o.inbound && !o.retrievable && vs)
        st = vks_verifier_params_parse(vs, o.verifier ? "--verifier" : "VKS_CRED_VERIFIER", &vp, &e);
    else
        vks_verifier_params_default(&vp);
    if (st != VKS_OK) {
        vks_cred_restrictions_free(&r);
        return fail("create", st, &e);
    }
    vks_secret given = VKS_SECRET_EMPTY;
    if (o.password_stdin && vks_cli_read_secret(&given, VKS_CRED_PROVIDED_MAX + 2, "password") != 0) {
        vks_cred_restrictions_free(&r);
        return 1;
    }
    struct env v;
    int rc = 1;
    if (env_open("create", &o, !(o.inbound && !o.retrievable), &v) == 0) {
        struct vks_cred_create_req req = { o.name, o.username, o.owner, o.tenant, &r,
                                           o.password_stdin ? &given : NULL, o.relay, o.inbound, o.retrievable,
                                           &vp };
        vks_secret pw = VKS_SECRET_EMPTY;
        int64_t version = 0;
        st = vks_cred_create(&v.ctx, &req, &pw, &version, &e);
        if (version > 0) {
            char sum[64];
            vks_cred_summary(&r, sum, sizeof sum);
            fprintf(stderr, "created %s/%s%s version %lld (username %s; %s)\n", v.ctx.mount, v.ctx.prefix, o.name,
                    (long long)version, o.username, sum);
            if (!o.password_stdin) {
                fprintf(stderr, o.inbound && !o.retrievable
                                    ? "the password is shown once, below; only a verifier is stored: it cannot be "
                                      "retrieved later:\n"
                                    : "the password is shown once, below; it is not stored anywhere in clear:\n");
                fwrite(pw.data, 1, pw.len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
            }
        }
        vks_secret_free(&pw);
        rc = st == VKS_OK ? 0 : fail("create", st, &e);
        env_close(&v);
    }
    vks_secret_free(&given);
    vks_cred_restrictions_free(&r);
    return rc;
}

/* ------------------------------------------------------------------ list, show */

static json_object *lst_json(const struct vks_cred_list *l)
{
    if (l->all)
        return NULL;
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < l->n; i++)
        json_object_array_add(a, json_object_new_string(l->v[i]));
    return a;
}

static void jset(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v && v[0] ? json_object_new_string(v) : NULL);
}

static json_object *rec_json(const struct vks_cred_record *r, bool full)
{
    char sum[64];
    vks_cred_summary(&r->restrictions, sum, sizeof sum);
    json_object *o = json_object_new_object();
    jset(o, "name", r->name);
    jset(o, "username", r->username);
    jset(o, "state", r->managed ? (r->state[0] ? r->state : "active") : "unmanaged");
    jset(o, "permissions", r->restrictions_bad ? "unreadable restrictions (refused by the resolver)" : sum);
    json_object_object_add(o, "allowed_domains", lst_json(&r->restrictions.domains));
    json_object_object_add(o, "allowed_ips", lst_json(&r->restrictions.hosts));
    jset(o, "created", r->created);
    jset(o, "rotated", r->rotated);
    jset(o, "due", r->due);
    jset(o, "owner", r->owner);
    jset(o, "tenant", r->tenant);
    jset(o, "relay", r->relay);
    jset(o, "direction", r->direction[0] ? r->direction : "outbound");
    json_object_object_add(o, "version", json_object_new_int64(r->vault_version));
    if (full) {
        jset(o, "rotation_id", r->rotation_id);
        jset(o, "rotation_started", r->rotation_started);
        json_object_object_add(o, "current_version", r->current_version ? json_object_new_int64(r->current_version)
                                                                         : NULL);
        json_object_object_add(o, "previous_version", r->previous_version ?
                               json_object_new_int64(r->previous_version) : NULL);
        json_object_object_add(o, "pending_version", r->pending_version ? json_object_new_int64(r->pending_version)
                                                                         : NULL);
        json_object *vs = json_object_new_array();
        for (size_t i = 0; i < r->nversions; i++) {
            json_object *x = json_object_new_object();
            json_object_object_add(x, "version", json_object_new_int64(r->versions[i].version));
            jset(x, "created", r->versions[i].created);
            jset(x, "deleted", r->versions[i].deleted);
            json_object_object_add(x, "destroyed", json_object_new_boolean(r->versions[i].destroyed));
            json_object_array_add(vs, x);
        }
        json_object_object_add(o, "versions", vs);
    }
    return o;
}

static const char *dash(const char *s)
{
    return s && s[0] ? s : "-";
}

/* The effective due of a managed credential (vks_cred_due_eval: the earlier of the stored due and
 * rotated + policy) as "YYYY-MM-DDTHH:MM:SSZ", "invalid" when its dates cannot be read, "" unmanaged. */
static void effective_due(const struct vks_cred_record *r, int days, char out[40])
{
    out[0] = '\0';
    if (!r->managed)
        return;
    struct vks_cred_due d;
    vks_cred_due_eval(r, (int64_t)time(NULL), 0, days, &d);
    if (d.status == VKS_CRED_DUE_INVALID)
        snprintf(out, 40, "invalid");
    else
        vks_cred_time(d.due, 0, out);
}

static bool keep(const struct vks_cred_record *r, const struct copts *o, int days)
{
    const char *state = r->managed ? (r->state[0] ? r->state : "active") : "unmanaged";
    /* the effective due (text order is time order); an invalid one is always listed (fail closed); an
       unmanaged secret has no due date and is never "due" */
    char due[40];
    effective_due(r, days, due);
    bool due_ok = !o->due_before || strcmp(due, "invalid") == 0 || (due[0] && strncmp(due, o->due_before, 10) < 0);
    return (!o->tenant || strcmp(o->tenant, r->tenant) == 0) && (!o->state || strcmp(o->state, state) == 0) &&
           due_ok;
}

static bool date_ok(const char *d)
{
    int y, m, dd;
    char tail;
    return strlen(d) == 10 && sscanf(d, "%4d-%2d-%2d%c", &y, &m, &dd, &tail) == 3 && d[4] == '-' && d[7] == '-' &&
           m >= 1 && m <= 12 && dd >= 1 && dd <= 31;
}

int vks_cli_cred_list(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_TENANT, O_STATE, O_JSON, O_DUE, 0 };
    struct copts o;
    struct env v;
    if (parse(argc, argv, allowed, false, vks_cli_cred_list_usage, &o) != 0)
        return 1;
    if (o.due_before && !date_ok(o.due_before)) {
        fprintf(stderr, "vks cred list: --due-before \"%.32s\" is not a date YYYY-MM-DD\n", o.due_before);
        return 1;
    }
    if (env_open("list", &o, false, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    vks_status st = vks_cred_list(&v.ctx, &recs, &n, &e);
    if (st == VKS_OK && o.json) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < n; i++)
            if (keep(&recs[i], &o, v.ctx.rotation_days)) {
                json_object *j = rec_json(&recs[i], false);
                char due[40];
                effective_due(&recs[i], v.ctx.rotation_days, due);
                jset(j, "effective_due", due); /* "due" stays the stored value */
                json_object_array_add(a, j);
            }
        puts(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(a);
    } else if (st == VKS_OK) {
        printf("%-32s %-24s %-22s %-20s %-20s %-20s %s\n", "NAME", "USERNAME", "PERMISSIONS", "CREATED", "ROTATED",
               "DUE", "STATE");
        for (size_t i = 0; i < n; i++) {
            const struct vks_cred_record *r = &recs[i];
            if (!keep(r, &o, v.ctx.rotation_days))
                continue;
            char sum[64], due[40];
            vks_cred_summary(&r->restrictions, sum, sizeof sum);
            effective_due(r, v.ctx.rotation_days, due);
            printf("%-32s %-24s %-22s %-20s %-20s %-20s %s\n", r->name, dash(r->username),
                   r->restrictions_bad ? "unreadable (refused)" : sum, dash(r->created), dash(r->rotated),
                   dash(due), r->managed ? dash(r->state) : "unmanaged");
        }
    }
    vks_cred_records_free(recs, n);
    env_close(&v);
    return st == VKS_OK ? 0 : fail("list", st, &e);
}

static void show_text(const struct vks_cred_ctx *ctx, const struct vks_cred_record *r, const char *fp,
                      const char *fp_note)
{
    char sum[64];
    vks_cred_summary(&r->restrictions, sum, sizeof sum);
    printf("name:         %s\npath:         %s/%s%s\n", r->name, ctx->mount, ctx->prefix, r->name);
    printf("username:     %s\nstate:        %s\n", dash(r->username), r->managed ? dash(r->state) : "unmanaged");
    printf("permissions:  %s\n", r->restrictions_bad ? "unreadable restrictions: the resolver refuses this secret"
                                                     : sum);
    for (int k = 0; k < 2; k++) {
        const struct vks_cred_list *l = k ? &r->restrictions.hosts : &r->restrictions.domains;
        printf("%s", k ? "allowed IPs:  " : "domains:      ");
        if (l->all)
            printf("all");
        for (size_t i = 0; i < l->n; i++)
            printf("%s%s", i ? ", " : "", l->v[i]);
        printf("\n");
    }
    printf("created:      %s\nrotated:      %s\ndue:          %s\nowner:        %s\ntenant:       %s\n",
           dash(r->created), dash(r->rotated), dash(r->due), dash(r->owner), dash(r->tenant));
    printf("relay:        %s\n", dash(r->relay));
    printf("direction:    %s\n", r->direction[0] ? r->direction : "outbound");
    if (r->rotation_id[0])
        printf("rotation:     %s (started %s; pending record version %lld)\n", r->rotation_id,
               dash(r->rotation_started), (long long)r->pending_version);
    if (r->current_version || r->previous_version)
        printf("current:      version %lld%s", (long long)r->current_version, r->previous_version ? "" : "\n");
    if (r->previous_version)
        printf("; previous (rollback): version %lld\n", (long long)r->previous_version);
    printf("version:      %lld\nfingerprint:  %s%s%s\nversions:\n", (long long)r->vault_version, fp[0] ? fp : "-",
           fp_note[0] ? "  " : "", fp_note);
    for (size_t i = 0; i < r->nversions; i++)
        printf("  %-4lld %s%s%s\n", (long long)r->versions[i].version, r->versions[i].created,
               r->versions[i].deleted[0] ? "  deleted " : "", r->versions[i].destroyed ? "  destroyed" : "");
}

int vks_cli_cred_show(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_JSON, 0 };
    struct copts o;
    struct env v;
    if (parse(argc, argv, allowed, true, vks_cli_cred_show_usage, &o) != 0 || env_open("show", &o, true, &v) != 0)
        return 1;
    struct vks_err e, fe;
    vks_err_clear(&e);
    vks_err_clear(&fe);
    struct vks_cred_record r;
    vks_status st = vks_cred_show(&v.ctx, o.name, &r, &e);
    if (st == VKS_OK) {
        char fp[33] = "", note[VKS_ERR_MSG_MAX + 4] = "";
        if (vks_cred_fingerprint(&v.ctx, o.name, fp, &fe) != VKS_OK)
            snprintf(note, sizeof note, "(%s)", fe.msg);
        if (o.json) {
            json_object *j = rec_json(&r, true);
            jset(j, "fingerprint", fp);
            if (note[0])
                jset(j, "fingerprint_unavailable", fe.msg);
            puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(j);
        } else {
            show_text(&v.ctx, &r, fp, note);
        }
        vks_cred_record_free(&r);
    }
    env_close(&v);
    return st == VKS_OK ? 0 : fail("show", st, &e);
}

/* ------------------------------------------------------------------ reveal, restrict, delete */

int vks_cli_cred_reveal(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_REASON, O_FORCE, 0 };
    struct copts o;
    if (parse(argc, argv, allowed, true, vks_cli_cred_reveal_usage, &o) != 0)
        return 1;
    if (!o.reason) {
        fprintf(stderr, "vks cred reveal: --reason TEXT is required (it is audited)\n");
        return 1;
    }
    if (!isatty(1) && !o.force_stdout) {
        fprintf(stderr, "vks cred reveal: stdout is not a terminal; refusing to write a password to a pipe or "
                        "file (use --force-stdout if that is what you want)\n");
        return 1;
    }
    struct env v;
    if (env_open("reveal", &o, true, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    vks_secret pw = VKS_SECRET_EMPTY;
    int64_t version = 0;
    vks_status st = vks_cred_reveal(&v.ctx, o.name, o.reason, &pw, &version, &e);
    if (st == VKS_OK) {
        fwrite(pw.data, 1, pw.len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    vks_secret_free(&pw);
    env_close(&v);
    return st == VKS_OK ? 0 : fail("reveal", st, &e);
}

int vks_cli_cred_restrict(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_DOM, O_RMDOM, O_ALLD, O_IP, O_RMIP, O_ALLI, O_JSON,
                                   O_RELAY, O_NORELAY, 0 };
    struct copts o;
    if (parse(argc, argv, allowed, true, vks_cli_cred_restrict_usage, &o) != 0)
        return 1;
    if (!o.ndom && !o.nrmdom && !o.nip && !o.nrmip && !o.all_domains && !o.all_ips && !o.relay && !o.no_relay) {
        fprintf(stderr, "vks cred restrict: nothing to change (give --domain, --remove-domain, --all-domains, "
                        "--ip, --remove-ip, --all-ips, --relay or --no-relay)\n");
        return 1;
    }
    if (o.relay && o.no_relay) {
        fprintf(stderr, "vks cred restrict: --relay and --no-relay exclude each other\n");
        return 1;
    }
    struct env v;
    if (env_open("restrict", &o, false, &v) != 0)
        return 1;
    struct vks_cred_change ch = { o.all_domains, o.all_ips, o.dom, o.rmdom, o.ip, o.rmip,
                                  o.ndom, o.nrmdom, o.nip, o.nrmip, o.relay, o.no_relay };
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record r;
    vks_status st = vks_cred_restrict(&v.ctx, o.name, &ch, &r, &e);
    if (st == VKS_OK) {
        if (o.json) {
            json_object *j = rec_json(&r, false);
            puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(j);
        } else {
            char sum[64];
            vks_cred_summary(&r.restrictions, sum, sizeof sum);
            printf("%s: %s (version %lld)\n", o.name, sum, (long long)r.vault_version);
        }
        vks_cred_record_free(&r);
    }
    env_close(&v);
    return st == VKS_OK ? 0 : fail("restrict", st, &e);
}

/* Reads one line from the terminal (the username is not secret: echo stays on). */
static int ask_username(const char *name, char *out, size_t cap)
{
    if (!isatty(0)) {
        fprintf(stderr, "vks cred delete: stdin is not a terminal: give --confirm USERNAME\n");
        return -1;
    }
    fprintf(stderr, "Deleting credential '%s' removes every version. Type its username to confirm: ", name);
    if (fgets(out, (int)cap, stdin) == NULL)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int vks_cli_cred_delete(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_CONFIRM, 0 };
    struct copts o;
    if (parse(argc, argv, allowed, true, vks_cli_cred_delete_usage, &o) != 0)
        return 1;
    char typed[VKS_CRED_USERNAME_MAX + 2] = "";
    if (!o.confirm && ask_username(o.name, typed, sizeof typed) != 0)
        return 1;
    struct env v;
    if (env_open("delete", &o, false, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cred_delete(&v.ctx, o.name, o.confirm ? o.confirm : typed, &e);
    if (st == VKS_OK)
        fprintf(stderr, "deleted %s/%s%s (every version)\n", v.ctx.mount, v.ctx.prefix, o.name);
    env_close(&v);
    return st == VKS_OK ? 0 : fail("delete", st, &e);
}

/* ------------------------------------------------------------------ due */

static const char *const due_names[] = { "ok", "due-soon", "overdue", "invalid" };

struct due_row {
    const struct vks_cred_record *r;
    struct vks_cred_due d;
};

static int due_cmp(const void *a, const void *b)
{
    const struct due_row *x = a, *y = b;
    bool xi = x->d.status == VKS_CRED_DUE_INVALID, yi = y->d.status == VKS_CRED_DUE_INVALID;
    if (xi != yi)
        return xi ? -1 : 1;
    if (x->d.due != y->d.due)
        return x->d.due < y->d.due ? -1 : 1;
    return strcmp(x->r->name, y->r->name);
}

/* Whole days until due (negative: whole days overdue; the status tells overdue from due today). */
static int64_t days_left(int64_t due, int64_t now)
{
    return (due - now) / 86400;
}

static json_object *due_json(const struct due_row *w, int64_t now)
{
    json_object *o = json_object_new_object();
    char due[40] = "";
    if (w->d.status != VKS_CRED_DUE_INVALID)
        vks_cred_time(w->d.due, 0, due);
    jset(o, "name", w->r->name);
    jset(o, "username", w->r->username);
    jset(o, "tenant", w->r->tenant);
    jset(o, "status", due_names[w->d.status]);
    jset(o, "rotated", w->r->rotated);
    jset(o, "due", due);
    json_object_object_add(o, "days_left", w->d.status == VKS_CRED_DUE_INVALID ? NULL :
                           json_object_new_int64(days_left(w->d.due, now)));
    json_object_object_add(o, "rotation_days", json_object_new_int(w->d.days));
    jset(o, "policy", w->d.per_credential ? "rotation_days" : "default");
    json_object_object_add(o, "stored_due_earlier", json_object_new_boolean(w->d.stored_earlier));
    jset(o, "invalid", w->d.why);
    return o;
}

static void due_print(const struct due_row *rows, size_t n, int64_t now, bool json)
{
    if (json) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < n; i++)
            json_object_array_add(a, due_json(&rows[i], now));
        puts(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(a);
        return;
    }
    if (n > 0)
        printf("%-32s %-24s %-9s %-20s %-20s %s\n", "NAME", "USERNAME", "STATUS", "ROTATED", "DUE", "DAYS LEFT");
    for (size_t i = 0; i < n; i++) {
        const struct due_row *w = &rows[i];
        char due[40] = "-";
        if (w->d.status == VKS_CRED_DUE_INVALID) {
            printf("%-32s %-24s %-9s %s\n", w->r->name, dash(w->r->username), "invalid", w->d.why);
            continue;
        }
        vks_cred_time(w->d.due, 0, due);
        printf("%-32s %-24s %-9s %-20s %-20s %lld (%d-day policy%s%s)\n", w->r->name, dash(w->r->username),
               due_names[w->d.status], dash(w->r->rotated), due, (long long)days_left(w->d.due, now), w->d.days,
               w->d.per_credential ? " of the credential" : "", w->d.stored_earlier ? "; stored due earlier" : "");
    }
}

int vks_cli_cred_due(int argc, char **argv)
{
    static const int allowed[] = { O_MOUNT, O_PREFIX, O_TENANT, O_JSON, O_WITHIN, 0 };
    struct copts o;
    struct env v;
    int64_t within = 30 * 86400;
    if (parse(argc, argv, allowed, false, vks_cli_cred_due_usage, &o) != 0)
        return 1;
    if (o.within && !vks_cred_parse_duration(o.within, &within)) {
        fprintf(stderr, "vks cred due: --within \"%.32s\" is not a duration: 0, Nd, Nw or Nh, at most %dd\n",
                o.within, VKS_CRED_DAYS_MAX);
        return 1;
    }
    if (env_open("due", &o, false, &v) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record *recs = NULL;
    size_t n = 0, nrows = 0, unmanaged = 0, count[4] = { 0 };
    int64_t now = (int64_t)time(NULL);
    vks_status st = vks_cred_list(&v.ctx, &recs, &n, &e);
    struct due_row *rows = st == VKS_OK ? calloc(n ? n : 1, sizeof *rows) : NULL;
    if (st == VKS_OK && rows == NULL)
        st = vks_err_set(&e, VKS_E_NOMEM, "out of memory");
    for (size_t i = 0; st == VKS_OK && i < n; i++) {
        if (o.tenant && strcmp(o.tenant, recs[i].tenant) != 0)
            continue;
        if (!recs[i].managed) { /* not under the policy: counted and said, not judged */
            unmanaged++;
            continue;
        }
        struct due_row w = { &recs[i], { 0 } };
        vks_cred_due_eval(&recs[i], now, within, v.ctx.rotation_days, &w.d);
        count[w.d.status]++;
        if (w.d.status != VKS_CRED_DUE_OK)
            rows[nrows++] = w;
    }
    int rc;
    if (st == VKS_OK) {
        qsort(rows, nrows, sizeof *rows, due_cmp);
        due_print(rows, nrows, now, o.json);
        fprintf(stderr, "vks cred due: %zu overdue, %zu invalid, %zu due within %s, %zu not due; policy %d days; "
                "%zu secret%s under %s/%s not managed by vks cred (not checked)\n", count[VKS_CRED_DUE_OVERDUE],
                count[VKS_CRED_DUE_INVALID], count[VKS_CRED_DUE_SOON], o.within ? o.within : "30d",
                count[VKS_CRED_DUE_OK], v.ctx.rotation_days, unmanaged, unmanaged == 1 ? "" : "s", v.ctx.mount,
                v.ctx.prefix);
        rc = count[VKS_CRED_DUE_OVERDUE] + count[VKS_CRED_DUE_INVALID] ? 3 : count[VKS_CRED_DUE_SOON] ? 4 : 0;
    } else {
        rc = fail("due", st, &e);
    }
    free(rows);
    vks_cred_records_free(recs, n);
    env_close(&v);
    return rc;
}

/* ------------------------------------------------------------------ shared with cli/cred_rotate.c */

int vks_cli_cred_open(const char *cmd, const char *mount, const char *prefix, bool keys, struct vks_cli_cred_env *out)
{
    struct copts o;
    memset(&o, 0, sizeof o);
    o.mount = mount ? mount : getenv("VKS_CRED_MOUNT");
    o.prefix = prefix ? prefix : getenv("VKS_CRED_PREFIX");
    struct env v;
    if (env_open(cmd, &o, keys, &v) != 0)
        return -1;
    out->vault = v.vault;
    out->kr = v.kr;
    out->ctx = v.ctx;
    return 0;
}

void vks_cli_cred_close(struct vks_cli_cred_env *v)
{
    vks_vault_free(v->vault);
    vks_keyring_free(v->kr);
}

int vks_cli_cred_fail(const char *cmd, vks_status st, const struct vks_err *e)
{
    return fail(cmd, st, e);
}
