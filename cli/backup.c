/*
 * `vks backup create | verify | restore`: sealed backups of the credentials under a prefix
 * (docs/backup.md; man/vks-backup.1 — keep the two in step: tests/integration/63-install-man.sh).
 * Thin over src/vks_backup*.c and src/vks_age.c: parse options, read key files into secret memory,
 * write the sealed file safely (0600, temporary file, fsync, rename, deadline), print.
 *
 * Exit status: 0 ok; 1 a local problem (usage, a bad or foreign bundle, wrong key or passphrase,
 * a file that cannot be written); 2 a remote one (Vault refused, could not be reached, the target
 * is not empty).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vks.h"
#include "vks_age.h"
#include "vks_backup.h"
#include "vks_cred.h"
#include "vks_envelope.h"
#include "vks_file.h"
#include "vks_http.h"
#include "vks_vault.h"

#define KEYS_HELP \
    "  -i, --identity F      age identity file (AGE-SECRET-KEY-1..., as age-keygen writes it)\n" \
    "  --passphrase-file F   the passphrase, first line of F (for a bundle sealed with one)\n"
#define EXIT_HELP \
    "exit status: 0 ok; 1 local problem (usage, a bad, foreign or tampered bundle, a wrong key or\n" \
    "passphrase, a file that cannot be written); 2 Vault refused or could not be reached, or the\n" \
    "restore target is not empty.\n"

const char vks_cli_backup_create_usage[] =
    "usage: vks backup create (--recipient AGE1... | --recipients-file F | --passphrase-file F)\n"
    "                         -o FILE [--prefix P] [--mount M] [--timeout SECONDS] [--json]\n"
    "\n"
    "Writes every secret under <mount>/<prefix> (listed recursively) into one bundle sealed in the\n"
    "age format: each secret's custom_metadata (restrictions, state), max_versions, cas_required\n"
    "and every version that is not deleted or destroyed, as Vault stores it. ENC: values stay\n"
    "envelopes: a restore also needs the envelope key (two separate duties). The file is written\n"
    "with mode 0600 to a temporary name, synced, then renamed: it is complete or absent.\n"
    "\n"
    "  --recipient AGE1...   seal to this age X25519 recipient (age-keygen -y); repeatable\n"
    "  --recipients-file F   seal to every recipient in F (one per line, # comments)\n"
    "  --passphrase-file F   seal with the passphrase on the first line of F (scrypt)\n"
    "  -o, --output FILE     the bundle to write (refused if it exists)\n"
    "  --prefix P            what to back up (default $VKS_CRED_PREFIX, else smtp-auth/)\n"
    "  --mount M             KV v2 mount (default $VKS_CRED_MOUNT, else secret)\n"
    "  --timeout SECONDS     deadline for writing the file (default 3600)\n"
    "  --json                print the summary as JSON\n"
    "\n" EXIT_HELP;
const char vks_cli_backup_verify_usage[] =
    "usage: vks backup verify FILE (-i IDENTITY | --passphrase-file F) [--json]\n"
    "\n"
    "Opens the bundle (the age seal: header MAC and every chunk), checks the document, and lists\n"
    "each secret with its versions and a digest of its current stored password field (SHA-256 of\n"
    "the ENC: envelope: identifies the ciphertext, reveals nothing). With the encryption key\n"
    "(VKS_ENCRYPTION_KEY*) and the audit key (VKS_AUDIT_KEY*) it also prints each password's keyed\n"
    "fingerprint, the one 'vks cred show' prints. Never prints a secret. Needs no Vault.\n"
    "\n" KEYS_HELP "  --json                print the report as JSON\n"
    "\n" EXIT_HELP;
const char vks_cli_backup_restore_usage[] =
    "usage: vks backup restore FILE (-i IDENTITY | --passphrase-file F) --into ADDR [--mount M]\n"
    "                          [--json]\n"
    "\n"
    "Restores the bundle into the Vault at ADDR (token: VAULT_TOKEN; TLS: VAULT_CACERT etc.), at\n"
    "the same paths: custom_metadata first, then every version in order with check-and-set so the\n"
    "version numbers match the source. The whole bundle is decrypted and checked before the first\n"
    "request; a target with anything under the prefix is refused before anything is written.\n"
    "\n" KEYS_HELP
    "  --into ADDR           the target Vault's address (https://host:port)\n"
    "  --mount M             the target KV v2 mount (default: the bundle's; ENC: envelopes only\n"
    "                        decrypt in the mount they were written in)\n"
    "  --json                print the summary as JSON\n"
    "\n" EXIT_HELP;

struct bopts {
    const char *file, *output, *prefix, *mount, *identity, *passfile, *rcptfile, *into;
    const char *rcpt[VKS_AGE_RECIPIENTS_MAX];
    size_t nrcpt;
    long timeout_s;
    bool json;
};

enum { O_RCPT = 256, O_RCPTF, O_PASSF, O_PREFIX, O_MOUNT, O_TIMEOUT, O_JSON, O_INTO };

/* allowed: the options a command takes, as characters: 'o', 'i', and 'A' + (code - O_RCPT) for the
 * long-only ones (A recipient, B recipients-file, C passphrase-file, D prefix, E mount, F timeout,
 * G json, H into). */
static int parse(int argc, char **argv, const char *allowed, bool want_file, const char *usage, struct bopts *o)
{
    static const struct option all[] = {
        { "recipient", required_argument, NULL, O_RCPT }, { "recipients-file", required_argument, NULL, O_RCPTF },
        { "passphrase-file", required_argument, NULL, O_PASSF }, { "output", required_argument, NULL, 'o' },
        { "identity", required_argument, NULL, 'i' }, { "prefix", required_argument, NULL, O_PREFIX },
        { "mount", required_argument, NULL, O_MOUNT }, { "timeout", required_argument, NULL, O_TIMEOUT },
        { "json", no_argument, NULL, O_JSON }, { "into", required_argument, NULL, O_INTO },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->mount = getenv("VKS_CRED_MOUNT");
    o->prefix = getenv("VKS_CRED_PREFIX");
    o->timeout_s = 3600;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:i:", all, NULL)) != -1) {
        if (c != '?' && !strchr(allowed, c < 256 ? c : 'A' + (c - 256))) {
            fprintf(stderr, "vks backup %s: option '%s' does not apply here\n", argv[0], argv[optind - 1]);
            c = '?';
        }
        char *end = NULL;
        switch (c) {
        case O_RCPT:
            if (o->nrcpt == VKS_AGE_RECIPIENTS_MAX) {
                fprintf(stderr, "vks backup %s: at most %d --recipient\n", argv[0], VKS_AGE_RECIPIENTS_MAX);
                return -1;
            }
            o->rcpt[o->nrcpt++] = optarg;
            break;
        case O_RCPTF: o->rcptfile = optarg; break;
        case O_PASSF: o->passfile = optarg; break;
        case 'o': o->output = optarg; break;
        case 'i': o->identity = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_MOUNT: o->mount = optarg; break;
        case O_INTO: o->into = optarg; break;
        case O_JSON: o->json = true; break;
        case O_TIMEOUT:
            errno = 0;
            o->timeout_s = strtol(optarg, &end, 10);
            if (errno || !end || *end || o->timeout_s < 1 || o->timeout_s > 86400) {
                fprintf(stderr, "vks backup %s: --timeout must be 1-86400 seconds\n", argv[0]);
                return -1;
            }
            break;
        default: fputs(usage, stderr); return -1;
        }
    }
    if (argc - optind != (want_file ? 1 : 0)) {
        fprintf(stderr, "vks backup %s: %s\n\n", argv[0], want_file ? "give exactly one FILE" : "unexpected argument");
        fputs(usage, stderr);
        return -1;
    }
    o->file = want_file ? argv[optind] : NULL;
    return 0;
}

/* As every vks command (vks_cli_exit_code), except that a file error or a write deadline is a
 * local problem here: the bundle file is ours. */
static int exit_code(vks_status st)
{
    if (st == VKS_E_FILE_ERROR || st == VKS_E_TIMEOUT)
        return 1;
    return vks_cli_exit_code(st);
}

static int fail(const char *cmd, vks_status st, const struct vks_err *e)
{
    fprintf(stderr, "vks backup %s: %s (%s)\n", cmd, e->msg[0] ? e->msg : vks_status_code(st), vks_status_code(st));
    return exit_code(st);
}

/* A small file (key, passphrase, recipients) into a fresh arena slot. */
static vks_status read_small(const char *path, const char *what, vks_secret *out, struct vks_err *e)
{
    struct vks_file_opts fo = { what, VKS_E_FILE_ERROR, VKS_SECRET_MAX, false, false, false };
    int fd = -1;
    size_t size = 0, n = 0;
    bool more = false;
    vks_status st = vks_file_open(path, &fo, &fd, &size, e);
    if (st == VKS_OK)
        st = vks_secret_alloc(VKS_SECRET_MAX, out, e);
    if (st == VKS_OK)
        st = vks_file_read_fd(fd, out->data, out->cap, &n, &more, path, &fo, e);
    if (fd >= 0)
        close(fd);
    if (st == VKS_OK && more)
        st = vks_err_set(e, VKS_E_FILE_ERROR, "%s \"%s\" is longer than %d bytes", what, path, VKS_SECRET_MAX);
    if (st == VKS_OK)
        out->len = n;
    else
        vks_secret_free(out);
    return st;
}

/* The passphrase: the first line of the file (without its newline), 1-1024 bytes. */
static vks_status read_passphrase(const char *path, vks_secret *out, struct vks_err *e)
{
    vks_status st = read_small(path, "--passphrase-file", out, e);
    if (st != VKS_OK)
        return st;
    unsigned char *nl = memchr(out->data, '\n', out->len);
    size_t n = nl ? (size_t)(nl - out->data) : out->len;
    if (n > 0 && out->data[n - 1] == '\r')
        n--;
    vks_wipe(out->data + n, out->cap - n);
    out->len = n;
    if (n == 0 || n > 1024) {
        vks_secret_free(out);
        return vks_err_set(e, VKS_E_INVALID_INPUT, "--passphrase-file \"%s\": the first line must hold a passphrase "
                           "of 1-1024 bytes", path);
    }
    return VKS_OK;
}

/* The key to open a bundle: an identity file or a passphrase file (exactly one). */
static vks_status load_key(const struct bopts *o, struct vks_age_identities *ids, vks_secret *pass,
                           struct vks_age_key *k, struct vks_err *e)
{
    memset(ids, 0, sizeof *ids);
    *pass = VKS_SECRET_EMPTY;
    memset(k, 0, sizeof *k);
    if (!o->identity == !o->passfile)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "give exactly one of -i IDENTITY and --passphrase-file F");
    vks_status st;
    if (o->identity) {
        vks_secret text = VKS_SECRET_EMPTY;
        st = read_small(o->identity, "identity file", &text, e);
        if (st == VKS_OK)
            st = vks_age_identities_parse(text.data, text.len, "identity file", ids, e);
        vks_secret_free(&text);
        k->ids = ids;
    } else {
        st = read_passphrase(o->passfile, pass, e);
        k->passphrase = pass;
    }
    return st;
}

/* The sealed file into heap memory (ciphertext: not secret). */
static vks_status read_bundle(const char *path, unsigned char **buf, size_t *n, struct vks_err *e)
{
    struct vks_file_opts fo = { "bundle", VKS_E_FILE_ERROR, VKS_BACKUP_FILE_MAX, false, false, false };
    int fd = -1;
    size_t size = 0;
    bool more = false;
    *buf = NULL;
    vks_status st = vks_file_open(path, &fo, &fd, &size, e);
    if (st == VKS_OK && (*buf = malloc(size ? size : 1)) == NULL)
        st = vks_err_set(e, VKS_E_NOMEM, "out of memory for a bundle of %zu bytes", size);
    if (st == VKS_OK)
        st = vks_file_read_fd(fd, *buf, size, n, &more, path, &fo, e);
    if (st == VKS_OK && more)
        st = vks_err_set(e, VKS_E_FILE_ERROR, "bundle \"%s\" grew while it was read", path);
    if (fd >= 0)
        close(fd);
    if (st != VKS_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

static void progress(void *arg, const char *phase, size_t done, size_t total)
{
    (void)arg;
    fprintf(stderr, "vks backup %s: %zu/%zu secrets\n", phase, done, total);
}


/* ------------------------------------------------------------------ the output file */

struct outfile {
    const char *path;
    char tmp[4096];
    int fd;
    int64_t deadline_ms;
    size_t bytes;
};

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig)
{
    (void)sig;
    alarmed = 1;
}

/* Arms a one-shot SIGALRM (no SA_RESTART) for the time left, so a write(2) or fsync(2) that blocks
 * (a hung network file system) returns EINTR at the deadline. false when the deadline has passed. */
static bool arm(const struct outfile *f)
{
    int64_t left = f->deadline_ms - vks_http_now_ms();
    if (left <= 0)
        return false;
    struct itimerval it = { { 0, 0 }, { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 } };
    alarmed = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    return true;
}
static void disarm(void)
{
    struct itimerval it = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

static vks_status io_fail(struct outfile *f, const char *op, int e, struct vks_err *err)
{
    if (alarmed || e == EINTR)
        return vks_err_set(err, VKS_E_TIMEOUT, "%s \"%s\": the deadline (--timeout) passed", op, f->path);
    return vks_err_set(err, VKS_E_FILE_ERROR, "%s \"%s\": %s", op, f->path, strerror(e));
}

static vks_status file_sink(void *arg, const unsigned char *p, size_t n, struct vks_err *err)
{
    struct outfile *f = arg;
    while (n > 0) {
        if (!arm(f))
            return io_fail(f, "writing", EINTR, err);
        ssize_t w = write(f->fd, p, n);
        int e = errno;
        disarm();
        if (w < 0)
            return io_fail(f, "writing", e, err);
        p += w;
        n -= (size_t)w;
        f->bytes += (size_t)w;
    }
    return VKS_OK;
}

static vks_status out_open(struct outfile *f, const char *path, long timeout_s, struct vks_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = path;
    f->deadline_ms = vks_http_now_ms() + timeout_s * 1000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: a blocked write returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct stat sb;
    if (lstat(path, &sb) == 0)
        return vks_err_set(err, VKS_E_FILE_ERROR, "-o \"%s\" exists: refusing to overwrite a bundle", path);
    if (snprintf(f->tmp, sizeof f->tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof f->tmp)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "-o: path too long");
    f->fd = mkostemp(f->tmp, O_CLOEXEC); /* mode 0600 */
    if (f->fd < 0) {
        f->tmp[0] = '\0';
        return io_fail(f, "creating a temporary file beside", errno, err);
    }
    fchmod(f->fd, 0600);
    return VKS_OK;
}

/* fsync, rename into place, fsync the directory; or remove the temporary file. */
static vks_status out_close(struct outfile *f, vks_status st, struct vks_err *err)
{
    if (st == VKS_OK) {
        bool ok = arm(f);
        int r = ok ? fsync(f->fd) : -1, e = ok ? errno : EINTR;
        disarm();
        if (r != 0)
            st = io_fail(f, "syncing", e, err);
    }
    if (f->fd >= 0 && close(f->fd) != 0 && st == VKS_OK)
        st = io_fail(f, "closing", errno, err);
    f->fd = -1;
    if (st == VKS_OK && link(f->tmp, f->path) != 0) /* link, not rename: never replaces a file that appeared */
        st = io_fail(f, "moving the bundle into place at", errno, err);
    if (f->tmp[0])
        unlink(f->tmp);
    if (st == VKS_OK) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", f->path);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return st;
}

/* ------------------------------------------------------------------ vault */

static vks_status vault_open(const char *into, struct vks_vault **v, struct vks_err *e)
{
    struct vks_vault_config cfg;
    vks_status st = vks_vault_config_from_env(&cfg, e);
    if (st != VKS_OK)
        return st;
    if (into) {
        free(cfg.address);
        if ((cfg.address = strdup(into)) == NULL) {
            vks_vault_config_clear(&cfg);
            return vks_err_set(e, VKS_E_NOMEM, "out of memory");
        }
    }
    st = vks_vault_new(&cfg, v, e);
    vks_vault_config_clear(&cfg);
    return st;
}

static void jint(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static json_object *counts_json(const struct vks_backup_summary *s)
{
    json_object *o = json_object_new_object();
    jint(o, "secrets", (int64_t)s->secrets);
    jint(o, "managed", (int64_t)s->managed);
    jint(o, "live", (int64_t)s->live);
    jint(o, "deleted", (int64_t)s->deleted);
    jint(o, "destroyed", (int64_t)s->destroyed);
    jint(o, "absent", (int64_t)s->absent);
    return o;
}

static void print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

/* ------------------------------------------------------------------ create */

static vks_status create_recipients(const struct bopts *o, struct vks_age_recipient *r, size_t *nr,
                                    struct vks_err *e)
{
    vks_status st = VKS_OK;
    *nr = 0;
    for (size_t i = 0; st == VKS_OK && i < o->nrcpt; i++)
        st = vks_age_recipient_parse(o->rcpt[i], strlen(o->rcpt[i]), "--recipient", &r[(*nr)++], e);
    if (st == VKS_OK && o->rcptfile) {
        vks_secret text = VKS_SECRET_EMPTY;
        st = read_small(o->rcptfile, "--recipients-file", &text, e);
        if (st == VKS_OK)
            st = vks_age_recipients_parse((const char *)text.data, text.len, "--recipients-file", r,
                                          VKS_AGE_RECIPIENTS_MAX, nr, e);
        vks_secret_free(&text);
    }
    return st;
}

int vks_cli_backup_create(int argc, char **argv)
{
    struct bopts o;
    if (parse(argc, argv, "oABCDEFG", false, vks_cli_backup_create_usage, &o) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_age_recipient r[VKS_AGE_RECIPIENTS_MAX];
    size_t nr = 0;
    vks_secret pass = VKS_SECRET_EMPTY;
    vks_status st = VKS_OK;
    if (!o.output)
        st = vks_err_set(&e, VKS_E_INVALID_INPUT, "-o FILE is required");
    else if ((o.nrcpt || o.rcptfile) == !!o.passfile)
        st = vks_err_set(&e, VKS_E_INVALID_INPUT, "give recipients (--recipient, --recipients-file) or "
                         "--passphrase-file, one of the two");
    if (st == VKS_OK)
        st = o.passfile ? read_passphrase(o.passfile, &pass, &e) : create_recipients(&o, r, &nr, &e);
    struct vks_vault *v = NULL;
    struct vks_cred_ctx ctx;
    if (st == VKS_OK && (st = vault_open(NULL, &v, &e)) == VKS_OK)
        st = vks_cred_ctx_init(&ctx, v, NULL, o.mount, o.prefix, "cli", &e);
    struct outfile f = { .fd = -1 };
    bool opened = false;
    if (st == VKS_OK && (st = out_open(&f, o.output, o.timeout_s, &e)) == VKS_OK)
        opened = true;
    struct vks_backup_summary sum = { 0 };
    if (st == VKS_OK) {
        struct vks_backup_create_opts co = { &ctx, r, nr, o.passfile ? &pass : NULL, 0, file_sink, &f,
                                             progress, NULL };
        st = vks_backup_create(&co, &sum, &e);
    }
    if (opened)
        st = out_close(&f, st, &e);
    vks_secret_free(&pass);
    if (st == VKS_OK && o.json) {
        json_object *j = counts_json(&sum);
        json_object_object_add(j, "file", json_object_new_string(o.output));
        jint(j, "bytes", (int64_t)f.bytes);
        jint(j, "requests", (int64_t)sum.requests);
        json_object_object_add(j, "sealed_to", json_object_new_string(o.passfile ? "passphrase" : "recipients"));
        print_json(j);
    } else if (st == VKS_OK) {
        printf("wrote %s: %zu secrets (%zu managed), %zu versions (%zu deleted, %zu destroyed not kept), %zu bytes, "
               "sealed to %s\n", o.output, sum.secrets, sum.managed, sum.live, sum.deleted, sum.destroyed, f.bytes,
               o.passfile ? "a passphrase" : "age recipients");
    }
    vks_vault_free(v);
    return st == VKS_OK ? 0 : fail("create", st, &e);
}

/* ------------------------------------------------------------------ verify */

static void verify_print(const struct vks_backup_bundle *b, const struct vks_keyring *kr, const char *file,
                         bool json)
{
    json_object *arr = json ? json_object_new_array() : NULL;
    if (!json)
        printf("%s: sealed bundle OK, created %s from %s (mount %s, prefix %s)\n%-40s %-8s %-22s %-34s %s\n",
               file, b->created, b->source_addr, b->mount, b->prefix, "PATH", "CURRENT", "VERSIONS",
               "ENVELOPE SHA-256/128", "FINGERPRINT");
    for (size_t i = 0; i < b->n; i++) {
        const struct vks_backup_secret *s = &b->secrets[i];
        char dg[33], fp[33], vs[64];
        bool plain = false;
        size_t live = 0;
        struct vks_err fe;
        vks_backup_envelope_digest(b, i, dg, &plain);
        if (vks_backup_fingerprint(b, i, kr, fp, &fe) != VKS_OK)
            fp[0] = '\0';
        for (size_t k = 0; k < s->nversions; k++)
            live += s->versions[k].state == VKS_BACKUP_LIVE;
        snprintf(vs, sizeof vs, "%zu kept/%zu listed", live, s->nversions);
        if (json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "path", json_object_new_string(s->path));
            jint(o, "current_version", s->current_version);
            jint(o, "versions_kept", (int64_t)live);
            jint(o, "versions_listed", (int64_t)s->nversions);
            json_object_object_add(o, "managed", json_object_new_boolean(s->managed));
            json_object_object_add(o, "envelope_sha256_128", dg[0] ? json_object_new_string(dg) : NULL);
            json_object_object_add(o, "plaintext_value", json_object_new_boolean(plain));
            json_object_object_add(o, "fingerprint", fp[0] ? json_object_new_string(fp) : NULL);
            json_object_array_add(arr, o);
        } else {
            printf("%-40s %-8lld %-22s %-34s %s\n", s->path, (long long)s->current_version, vs,
                   dg[0] ? dg : plain ? "(plaintext value)" : "-", fp[0] ? fp : "-");
        }
    }
    if (json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "file", json_object_new_string(file));
        json_object_object_add(j, "created", json_object_new_string(b->created));
        json_object_object_add(j, "source_vault_addr", json_object_new_string(b->source_addr));
        json_object_object_add(j, "mount", json_object_new_string(b->mount));
        json_object_object_add(j, "prefix", json_object_new_string(b->prefix));
        json_object_object_add(j, "counts", counts_json(&b->counts));
        json_object_object_add(j, "secrets", arr);
        print_json(j);
    } else {
        printf("%zu secrets (%zu managed), %zu versions kept, %zu deleted and %zu destroyed listed without data, "
               "%zu pruned\n", b->counts.secrets, b->counts.managed, b->counts.live, b->counts.deleted,
               b->counts.destroyed, b->counts.absent);
    }
}

/* Reads, decrypts and checks the bundle named by o->file with o's key. */
static vks_status open_bundle(const struct bopts *o, struct vks_backup_bundle *b, struct vks_err *e)
{
    struct vks_age_identities ids;
    vks_secret pass;
    struct vks_age_key k;
    unsigned char *buf = NULL;
    size_t n = 0;
    memset(b, 0, sizeof *b);
    vks_status st = load_key(o, &ids, &pass, &k, e);
    if (st == VKS_OK)
        st = read_bundle(o->file, &buf, &n, e);
    if (st == VKS_OK)
        st = vks_backup_open(buf, n, &k, b, e);
    free(buf);
    vks_age_identities_free(&ids);
    vks_secret_free(&pass);
    return st;
}

int vks_cli_backup_verify(int argc, char **argv)
{
    struct bopts o;
    if (parse(argc, argv, "iCG", true, vks_cli_backup_verify_usage, &o) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_backup_bundle b;
    vks_status st = open_bundle(&o, &b, &e);
    if (st == VKS_OK) {
        struct vks_keyring *kr = NULL;
        struct vks_err ke;
        if (vks_keyring_load_env(&kr, &ke) != VKS_OK)
            kr = NULL; /* no encryption key: no fingerprint, digests only */
        verify_print(&b, kr, o.file, o.json);
        vks_keyring_free(kr);
    }
    vks_backup_bundle_free(&b);
    return st == VKS_OK ? 0 : fail("verify", st, &e);
}

/* ------------------------------------------------------------------ restore */

int vks_cli_backup_restore(int argc, char **argv)
{
    struct bopts o;
    if (parse(argc, argv, "iCEGH", true, vks_cli_backup_restore_usage, &o) != 0)
        return 1;
    struct vks_err e;
    vks_err_clear(&e);
    if (!o.into) {
        fprintf(stderr, "vks backup restore: --into ADDR is required (the target Vault)\n");
        return 1;
    }
    struct vks_backup_bundle b;
    struct vks_vault *v = NULL;
    struct vks_cred_ctx ctx;
    struct vks_backup_summary sum = { 0 };
    vks_status st = open_bundle(&o, &b, &e); /* all of it decrypted and checked before any request */
    if (st == VKS_OK)
        st = vault_open(o.into, &v, &e);
    if (st == VKS_OK)
        st = vks_cred_ctx_init(&ctx, v, NULL, o.mount ? o.mount : b.mount, b.prefix, "cli", &e);
    if (st == VKS_OK && strcmp(ctx.mount, b.mount) != 0)
        fprintf(stderr, "vks backup restore: warning: restoring into mount '%s', the bundle's is '%s': ENC: "
                "envelopes are bound to their mount and path, so these passwords will not decrypt there "
                "(fine for inspection, not for serving)\n", ctx.mount, b.mount);
    if (st == VKS_OK)
        st = vks_backup_restore(&ctx, &b, progress, NULL, &sum, &e);
    if (st == VKS_OK && o.json) {
        json_object *j = counts_json(&sum);
        json_object_object_add(j, "into", json_object_new_string(vks_vault_address(v)));
        json_object_object_add(j, "mount", json_object_new_string(ctx.mount));
        json_object_object_add(j, "prefix", json_object_new_string(ctx.prefix));
        jint(j, "requests", (int64_t)sum.requests);
        print_json(j);
    } else if (st == VKS_OK) {
        printf("restored %zu secrets (%zu managed) into %s/%s at %s: %zu versions with data, %zu deleted, %zu "
               "destroyed, %zu pruned placeholders; %zu requests\n", sum.secrets, sum.managed, ctx.mount, ctx.prefix,
               vks_vault_address(v), sum.live, sum.deleted, sum.destroyed, sum.absent, sum.requests);
    }
    vks_backup_bundle_free(&b);
    vks_vault_free(v);
    return st == VKS_OK ? 0 : fail("restore", st, &e);
}
