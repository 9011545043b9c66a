/*
 * vks audit verify FILE... [--head MAC]... [--key-file PATH] [--sink NAME] [--quiet]
 * (documented in man/vks-audit.1; keep the two in step: tests/integration/63-install-man.sh)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks.h"
#include "vks_audit.h"
#include "vks_file.h"

const char vks_cli_audit_verify_usage[] =
    "usage: vks audit verify FILE... [--head MAC]... [--key-file PATH] [--sink NAME] [--quiet]\n"
    "\n"
    "Verifies every chain in the audit log FILE (several files are read in order as one log,\n"
    "e.g. audit.log.1 audit.log after a rotation; '-' reads standard input). Reports per chain\n"
    "the event count and the head (last seq and mac), or the first bad sequence number.\n"
    "\n"
    "  --head MAC       a mac recorded earlier outside this machine (an anchored head): the log\n"
    "                   must still contain that event, so a truncated tail is detected (repeat\n"
    "                   for several chains)\n"
    "  --key-file PATH  the audit key (raw 32 bytes, mode 0600); default VKS_AUDIT_KEY (base64)\n"
    "                   or VKS_AUDIT_KEY_FILE, as for the module\n"
    "  --sink NAME      which sink wrote FILE: file (default), stderr or syslog; with syslog a\n"
    "                   line may keep what the syslog daemon wrote before the event (a header\n"
    "                   'Dec  3 14:13:07 mta1 vks-audit[42]: ' or blanks): the event is read\n"
    "                   from the first ': {' on, or after the leading blanks (keep only the\n"
    "                   vks-audit lines, e.g. with grep)\n"
    "  --quiet          print only the verdict line\n"
    "\n"
    "exit status: 0 every chain verified; 1 a problem was found (tampering, missing lines,\n"
    "unparseable line, anchored head not found, no events); 2 usage, file or key error;\n"
    "3 no problem found but some chain could not be MAC-checked (ephemeral or other key).\n";

/* A syslog daemon's file output puts its header before the message ("TIMESTAMP HOST TAG[PID]: "),
 * and rsyslog's %msg% keeps the blank that followed the tag: the event starts after leading
 * blanks, else at the first ": {". Only the event is MAC-covered, so dropping what precedes it
 * hides nothing: a line without an event still fails as "not an audit event". */
static const char *syslog_payload(const char *line, size_t *len)
{
    size_t b = 0;
    while (b < *len && (line[b] == ' ' || line[b] == '\t'))
        b++;
    if (b < *len && line[b] == '{') {
        *len -= b;
        return line + b;
    }
    for (size_t i = 0; i + 2 < *len; i++)
        if (line[i] == ':' && line[i + 1] == ' ' && line[i + 2] == '{') {
            *len -= i + 2;
            return line + i + 2;
        }
    return line;
}

/* Feeds one file (or '-') to the verifier; errors are printed with prog ("vks audit verify"). Shared
 * with `vks audit report` (cli/audit_report.c): one reader, one parser. */
int vks_cli_audit_feed(struct vks_audit_verifier *v, const char *path, bool syslog_framed,
                       const char *prog)
{
    FILE *f = stdin;
    if (strcmp(path, "-") != 0) {
        /* vks_file: a FIFO, device or directory is refused at once, never read (or waited on) */
        const struct vks_file_opts fo = { .what = "audit log", .code = VKS_E_CONFIG };
        struct vks_err e;
        int fd = -1;
        if (vks_file_open(path, &fo, &fd, NULL, &e) != VKS_OK) {
            fprintf(stderr, "%s: %s\n", prog, e.msg);
            return -1;
        }
        if ((f = fdopen(fd, "r")) == NULL) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        const char *event = syslog_framed ? syslog_payload(line, &len) : line;
        vks_audit_verifier_line(v, path, event, len);
    }
    int bad = ferror(f);
    free(line);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "%s: %s: read error\n", prog, path);
        return -1;
    }
    return 0;
}

int vks_cli_audit_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "head", required_argument, NULL, 'H' },
        { "key-file", required_argument, NULL, 'k' },
        { "sink", required_argument, NULL, 's' },
        { "quiet", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    const char *key_file = NULL, *sink = "file";
    const char *heads[64];
    int nheads = 0;
    bool quiet = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "H:k:s:q", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            if (nheads == 64) {
                fprintf(stderr, "vks audit verify: at most 64 --head options\n");
                return 2;
            }
            heads[nheads++] = optarg;
            break;
        case 'k':
            key_file = optarg;
            break;
        case 's':
            if (strcmp(optarg, "file") && strcmp(optarg, "stderr") && strcmp(optarg, "syslog")) {
                fprintf(stderr, "vks audit verify: --sink must be file, stderr or syslog\n");
                return 2;
            }
            sink = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            fputs(vks_cli_audit_verify_usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(vks_cli_audit_verify_usage, stderr);
        return 2;
    }
    struct vks_err err;
    vks_err_clear(&err);
    struct vks_audit_keys *keys = NULL;
    bool found = false;
    if (vks_audit_keys_load(key_file, &keys, &found, &err) != VKS_OK) {
        fprintf(stderr, "vks audit verify: %s\n", err.msg);
        return 2;
    }
    if (!found && !quiet)
        fprintf(stderr, "vks audit verify: no audit key given (--key-file, VKS_AUDIT_KEY, "
                        "VKS_AUDIT_KEY_FILE): checking structure only, not MACs\n");
    struct vks_audit_verifier *v = NULL;
    if (vks_audit_verifier_new(keys, sink, &v, &err) != VKS_OK) {
        fprintf(stderr, "vks audit verify: %s\n", err.msg);
        vks_audit_keys_free(keys);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < nheads && rc == 0; i++)
        if (vks_audit_verifier_add_head(v, heads[i], &err) != VKS_OK) {
            fprintf(stderr, "vks audit verify: %s\n", err.msg);
            rc = 2;
        }
    for (int i = optind; i < argc && rc == 0; i++)
        if (vks_cli_audit_feed(v, argv[i], strcmp(sink, "syslog") == 0, "vks audit verify") != 0)
            rc = 2;
    if (rc == 0) {
        if (quiet) {
            char *buf = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&buf, &len);
            rc = vks_audit_verifier_finish(v, mem);
            if (mem != NULL) {
                fclose(mem);
                /* the verdict is the last line */
                char *last = buf != NULL && len > 1 ? memrchr(buf, '\n', len - 1) : NULL;
                fputs(last ? last + 1 : (buf ? buf : ""), stdout);
            }
            free(buf);
        } else {
            rc = vks_audit_verifier_finish(v, stdout);
        }
    }
    vks_audit_verifier_free(v);
    vks_audit_keys_free(keys);
    return rc;
}
