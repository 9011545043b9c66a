/*
 * vks audit report --from DATE --to DATE [--json|--csv] [--key-file PATH] [--sink NAME] FILE...
 * (documented in man/vks-audit.1; the logic is src/vks_audit_report.c, the reading and chain
 * verification are `vks audit verify`'s: vks_cli_audit_feed and the core verifier)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "cred_int.h"
#include "vks.h"
#include "vks_audit.h"
#include "vks_audit_report.h"

const char vks_cli_audit_report_usage[] =
    "usage: vks audit report --from DATE --to DATE [--json|--csv] [--key-file PATH]\n"
    "                        [--sink NAME] FILE...\n"
    "\n"
    "Reports from the audit log FILE (several files are read in order as one log, as for\n"
    "vks audit verify, whose chain verification it runs) for the period --from..--to (UTC, both\n"
    "inclusive; DATE is YYYY-MM-DD, a --to date covers that whole day, or YYYY-MM-DDTHH:MM:SSZ):\n"
    "lookups grouped by credential and actor (count, first and last time, served, refused,\n"
    "failed; inbound logins of vks-agent apart); reveals with operator and reason; every other\n"
    "administrative act (cred.*, backup.*, rekey.*, serve.*) with operator and result; rotations\n"
    "finished; emergency resets with reason and scope; failed and refused accesses; and\n"
    "each file's chain status (verified, broken at line N, unverifiable without the key).\n"
    "A broken chain is announced at the top of the report. The trail holds no secret; neither\n"
    "does the report.\n"
    "\n"
    "  --json           one JSON document\n"
    "  --csv            one row per event group (RFC 4180, header row; cells starting with\n"
    "                   = + - @ get a leading ')\n"
    "  --key-file PATH  the audit key, as for vks audit verify (default VKS_AUDIT_KEY or\n"
    "                   VKS_AUDIT_KEY_FILE)\n"
    "  --sink NAME      which sink wrote FILE: file (default), stderr or syslog\n"
    "  --vault          also list the credentials overdue for rotation now, or whose dates are\n"
    "                   invalid (vks cred due, window 0: VAULT_ADDR, VAULT_TOKEN, VKS_CRED_MOUNT,\n"
    "                   VKS_CRED_PREFIX as for vks cred; metadata only, the auditor policy is\n"
    "                   enough)\n"
    "\n"
    "exit status: 0 report written, every chain verified; 1 report written but a chain is\n"
    "broken (tampering, missing lines, no events); 2 usage, file, key, write or (--vault)\n"
    "Vault error (no report); 3 report written, no problem found but some chain could not be MAC-checked\n"
    "(no key, ephemeral or another key).\n";

struct report_opts {
    const char *from, *to, *key_file, *sink;
    enum vks_audit_report_format fmt;
    bool vault;
};

static int parse_opts(int argc, char **argv, struct report_opts *o)
{
    static const struct option opts[] = {
        { "from", required_argument, NULL, 'f' }, { "to", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },       { "csv", no_argument, NULL, 'c' },
        { "key-file", required_argument, NULL, 'k' }, { "sink", required_argument, NULL, 's' },
        { "vault", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:t:jck:s:", opts, NULL)) != -1) {
        switch (c) {
        case 'f': o->from = optarg; break;
        case 't': o->to = optarg; break;
        case 'j': case 'c':
            if (o->fmt != VKS_REPORT_TEXT) {
                fprintf(stderr, "vks audit report: --json and --csv exclude each other\n");
                return 2;
            }
            o->fmt = c == 'j' ? VKS_REPORT_JSON : VKS_REPORT_CSV;
            break;
        case 'k': o->key_file = optarg; break;
        case 'V': o->vault = true; break;
        case 's':
            if (strcmp(optarg, "file") && strcmp(optarg, "stderr") && strcmp(optarg, "syslog")) {
                fprintf(stderr, "vks audit report: --sink must be file, stderr or syslog\n");
                return 2;
            }
            o->sink = optarg;
            break;
        default:
            fputs(vks_cli_audit_report_usage, stderr);
            return 2;
        }
    }
    if (optind >= argc || o->from == NULL || o->to == NULL) {
        fprintf(stderr, "vks audit report: %s\n", optind >= argc ? "no FILE given"
                        : "--from and --to are required");
        fputs(vks_cli_audit_report_usage, stderr);
        return 2;
    }
    return 0;
}

/* Runs the verifier over every file, feeding the report; the verdict goes into the report. */
static int verify_into(struct vks_audit_verifier *v, struct vks_audit_report *r, char **files,
                       int n, bool syslog)
{
    unsigned long before = 0;
    struct vks_err err;
    vks_audit_verifier_on_event(v, vks_audit_report_event, r);
    for (int i = 0; i < n; i++) {
        if (vks_cli_audit_feed(v, files[i], syslog, "vks audit report") != 0)
            return 2;
        unsigned long after = before;
        vks_audit_verifier_lines(v, &after);
        if (vks_audit_report_add_file(r, files[i], before + 1, after, &err) != VKS_OK) {
            fprintf(stderr, "vks audit report: %s\n", err.msg);
            return 2;
        }
        before = after;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (mem == NULL) {
        fprintf(stderr, "vks audit report: out of memory\n");
        return 2;
    }
    int rc = vks_audit_verifier_finish(v, mem);
    fclose(mem);
    unsigned long bad_line;
    long long bad_seq;
    vks_audit_verifier_first_bad(v, &bad_line, &bad_seq);
    char *last = buf != NULL && len > 1 ? memrchr(buf, '\n', len - 1) : NULL;
    vks_audit_report_set_verdict(r, rc, bad_line, last ? last + 1 : (buf ? buf : ""));
    free(buf);
    return 0;
}

/* --vault: what is overdue now (vks_cred_list + vks_cred_due_eval, as `vks cred due --within 0`).
 * 0, or 2 after printing why (no report is written: fail closed). */
static int add_overdue(struct vks_audit_report *r)
{
    struct vks_cli_cred_env v;
    if (vks_cli_cred_open("due", NULL, NULL, false, &v) != 0)
        return 2;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    int64_t now = (int64_t)time(NULL);
    vks_status st = vks_cred_list(&v.ctx, &recs, &n, &e);
    for (size_t i = 0; st == VKS_OK && i < n; i++) {
        if (!recs[i].managed)
            continue;
        struct vks_cred_due d;
        vks_cred_due_eval(&recs[i], now, 0, v.ctx.rotation_days, &d);
        char due[40] = "-", why[240];
        if (d.status == VKS_CRED_DUE_INVALID) {
            snprintf(why, sizeof why, "invalid: %s", d.why);
        } else if (d.status == VKS_CRED_DUE_OVERDUE) {
            vks_cred_time(d.due, 0, due);
            snprintf(why, sizeof why, "overdue, %d-day policy, rotated %s", d.days,
                     recs[i].rotated[0] ? recs[i].rotated : "-");
        } else {
            continue;
        }
        st = vks_audit_report_add_overdue(r, recs[i].name, due, why, &e);
    }
    vks_cred_records_free(recs, n);
    vks_cli_cred_close(&v);
    if (st != VKS_OK) {
        fprintf(stderr, "vks audit report: --vault: %s\n", e.msg);
        return 2;
    }
    vks_audit_report_set_overdue_checked(r);
    return 0;
}

int vks_cli_audit_report(int argc, char **argv)
{
    struct report_opts o = { .sink = "file", .fmt = VKS_REPORT_TEXT };
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc;
    struct vks_err err;
    vks_err_clear(&err);
    struct vks_audit_report *r = NULL;
    if (vks_audit_report_new(o.from, o.to, &r, &err) != VKS_OK) {
        fprintf(stderr, "vks audit report: %s\n", err.msg);
        return 2;
    }
    struct vks_audit_keys *keys = NULL;
    bool found = false;
    struct vks_audit_verifier *v = NULL;
    if (vks_audit_keys_load(o.key_file, &keys, &found, &err) != VKS_OK ||
        vks_audit_verifier_new(keys, o.sink, &v, &err) != VKS_OK) {
        fprintf(stderr, "vks audit report: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0 && !found)
        fprintf(stderr, "vks audit report: no audit key given (--key-file, VKS_AUDIT_KEY, "
                        "VKS_AUDIT_KEY_FILE): the chain can be checked for structure only\n");
    if (rc == 0)
        rc = verify_into(v, r, argv + optind, argc - optind, strcmp(o.sink, "syslog") == 0);
    if (rc == 0 && o.vault)
        rc = add_overdue(r);
    if (rc == 0 && vks_audit_report_write(r, o.fmt, stdout, &err) != VKS_OK) {
        fprintf(stderr, "vks audit report: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0) {
        rc = vks_audit_report_status(r);
        if (rc == 1)
            fprintf(stderr, "vks audit report: the audit chain is BROKEN (see the top of the "
                            "report)\n");
    }
    vks_audit_verifier_free(v);
    vks_audit_keys_free(keys);
    vks_audit_report_free(r);
    return rc;
}
