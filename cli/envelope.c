/*
 * `vks envelope ...`: operator commands for ENC: values and the keyring (docs/internals/envelope.md).
 *
 *   vks envelope encrypt --mount M --path P [--key K] [--key-id ID | --legacy]
 *   vks envelope check   --mount M --path P [--key K]      (envelope on stdin)
 *   vks envelope inspect                                    (envelope on stdin, no key needed)
 *   vks envelope rekey   --mount M --path P [--key K] [--key-id ID]   (envelope on stdin)
 *   vks envelope keys                                       (ids and sources, primary first)
 *   vks envelope genkey                                     (a new base64 key on stdout)
 *
 * Keys come from the environment (vks_keyring_load_env). Plaintext is read with read(2) straight
 * into an arena slot (echo off when stdin is a terminal) and is never printed by any command.
 * Exit status: 0 ok, 1 the operation failed, 2 usage or configuration error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "vks.h"
#include "vks_base64.h"
#include "vks_envelope.h"
#include "vks_secmem.h"

const char vks_cli_envelope_encrypt_usage[] =
    "usage: vks envelope encrypt --mount M --path P [--key K] [--key-id ID | --legacy]\n"
    "  Reads the plaintext on stdin (one trailing newline is dropped; echo is off on a terminal)\n"
    "  and prints ENC:v2:<id>:... bound to (M, P, K). K is the keysource's vault_key (default\n"
    "  'key', KumoMTA's default). The key id defaults to the keyring's primary; --legacy writes\n"
    "  the unbound genro-mail-proxy form. The plaintext may be at most 3032 bytes under key id\n"
    "  'default' (2990 under the longest id, 3038 legacy), so that the envelope fits the 4095\n"
    "  bytes every keysource form accepts; longer is refused before anything is written.\n";
const char vks_cli_envelope_check_usage[] =
    "usage: vks envelope check --mount M --path P [--key K]\n"
    "  Reads an envelope on stdin and says whether it decrypts at (M, P, K): format, key id and\n"
    "  plaintext length, never the plaintext. Exit 1 when it does not.\n";
const char vks_cli_envelope_inspect_usage[] =
    "usage: vks envelope inspect\n"
    "  Reads an envelope on stdin and prints its format and key id (no key needed).\n";
const char vks_cli_envelope_rekey_usage[] =
    "usage: vks envelope rekey --mount M --path P [--key K] [--key-id ID]\n"
    "  Reads an envelope on stdin, decrypts it at (M, P, K) and prints it encrypted again as v2\n"
    "  under ID (default: the primary key), bound to the same place. Prints 'unchanged' on\n"
    "  stderr when it already was.\n";
const char vks_cli_envelope_keys_usage[] =
    "usage: vks envelope keys\n"
    "  Lists the keyring loaded from the environment: id and source, primary first.\n";
const char vks_cli_envelope_genkey_usage[] =
    "usage: vks envelope genkey\n"
    "  Prints a new random 32-byte key in base64, for VKS_ENCRYPTION_KEYS (id:key) or\n"
    "  VKS_ENCRYPTION_KEY.\n";

struct opts {
    struct vks_envelope_place place;
    const char *key_id;
    int legacy;
};

static int parse(int argc, char **argv, struct opts *o, bool want_place, bool allow_id,
                 bool allow_legacy, const char *usage)
{
    memset(o, 0, sizeof *o);
    o->place.key = "key";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (allow_legacy && !strcmp(a, "--legacy")) {
            o->legacy = 1;
            continue;
        }
        if (want_place && v && !strcmp(a, "--mount"))
            o->place.mount = v;
        else if (want_place && v && !strcmp(a, "--path"))
            o->place.path = v;
        else if (want_place && v && !strcmp(a, "--key"))
            o->place.key = v;
        else if (allow_id && v && !strcmp(a, "--key-id"))
            o->key_id = v;
        else {
            fprintf(stderr, "vks envelope %s: unexpected argument '%s'\n", argv[0], a);
            fputs(usage, stderr);
            return -1;
        }
        i++;
    }
    if (want_place && (!o->place.mount || !o->place.path)) {
        fprintf(stderr, "vks envelope %s: --mount and --path are required\n", argv[0]);
        fputs(usage, stderr);
        return -1;
    }
    if (o->legacy && o->key_id) {
        fprintf(stderr, "vks envelope %s: --legacy carries no key id\n", argv[0]);
        return -1;
    }
    return 0;
}

static int load(struct vks_keyring **kr)
{
    struct vks_err e;
    if (vks_keyring_load_env(kr, &e) != VKS_OK) {
        fprintf(stderr, "vks: encryption keys: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Reads stdin into a fresh slot of cap bytes; one trailing newline (and CR) dropped (cli/vks.h). */
int vks_cli_read_secret(vks_secret *s, size_t cap, const char *what)
{
    struct vks_err e;
    if (vks_secret_alloc(cap, s, &e) != VKS_OK) {
        fprintf(stderr, "vks: %s\n", e.msg);
        return -1;
    }
    struct termios old;
    int tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        struct termios quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
        fprintf(stderr, "%s (end with Enter): ", what);
    }
    size_t n = 0;
    int rc = 0;
    for (;;) {
        if (n == s->cap) {
            fprintf(stderr, "vks: %s is longer than %zu bytes\n", what, cap);
            rc = -1;
            break;
        }
        ssize_t r = read(0, s->data + n, s->cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "vks: reading stdin: %s\n", strerror(errno));
            rc = -1;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (tty && s->data[n - 1] == '\n')
            break;
    }
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (rc != 0) {
        vks_secret_free(s);
        return -1;
    }
    if (n > 0 && s->data[n - 1] == '\n')
        n--;
    if (n > 0 && s->data[n - 1] == '\r')
        n--;
    s->len = n;
    return 0;
}

/* An envelope holds no plaintext: an ordinary buffer is fine. */
static int read_envelope(char *buf, size_t cap, size_t *len)
{
    size_t n = fread(buf, 1, cap, stdin);
    if (n == cap) {
        fprintf(stderr, "vks: input longer than any envelope (%d bytes)\n", VKS_ENVELOPE_MAX);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    *len = n;
    return 0;
}

int vks_cli_envelope_encrypt(int argc, char **argv)
{
    struct opts o;
    struct vks_keyring *kr = NULL;
    if (parse(argc, argv, &o, true, true, true, vks_cli_envelope_encrypt_usage) != 0)
        return 2;
    if (load(&kr) != 0)
        return 2;
    const char *id = o.legacy ? NULL : (o.key_id ? o.key_id : vks_keyring_primary_id(kr));
    if (!o.legacy && !id) {
        fprintf(stderr, "vks: no encryption key configured (set VKS_ENCRYPTION_KEYS, "
                        "VKS_ENCRYPTION_KEY or VKS_ENCRYPTION_KEY_FILE)\n");
        vks_keyring_free(kr);
        return 2;
    }
    vks_secret plain = VKS_SECRET_EMPTY;
    if (vks_cli_read_secret(&plain, VKS_SECRET_MAX, "plaintext") != 0) {
        vks_keyring_free(kr);
        return 1;
    }
    char *env = NULL;
    struct vks_err e;
    vks_status st = vks_envelope_encrypt(kr, id, &o.place, plain.data, plain.len, &env, &e);
    vks_secret_free(&plain);
    vks_keyring_free(kr);
    if (st != VKS_OK) {
        fprintf(stderr, "vks: %s\n", e.msg);
        return st == VKS_E_CONFIG ? 2 : 1;
    }
    printf("%s\n", env);
    free(env);
    return 0;
}

int vks_cli_envelope_check(int argc, char **argv)
{
    struct opts o;
    struct vks_keyring *kr = NULL;
    static char buf[VKS_ENVELOPE_MAX + 2];
    size_t n = 0;
    if (parse(argc, argv, &o, true, false, false, vks_cli_envelope_check_usage) != 0)
        return 2;
    if (read_envelope(buf, sizeof buf, &n) != 0)
        return 1;
    if (load(&kr) != 0)
        return 2;
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    struct vks_err e;
    vks_status st = vks_envelope_decrypt(kr, (unsigned char *)buf, n, &o.place, &out, &info, &e);
    vks_keyring_free(kr);
    if (st != VKS_OK) {
        printf("FAILED (%s): %s\n", vks_status_code(st), e.msg);
        return 1;
    }
    printf("ok: format %d, key id %s, %zu bytes of plaintext\n", info.format,
           info.key_id[0] ? info.key_id : "(legacy, none)", out.len);
    vks_secret_free(&out);
    return 0;
}

int vks_cli_envelope_inspect(int argc, char **argv)
{
    struct opts o;
    static char buf[VKS_ENVELOPE_MAX + 2];
    size_t n = 0;
    if (parse(argc, argv, &o, false, false, false, vks_cli_envelope_inspect_usage) != 0)
        return 2;
    if (read_envelope(buf, sizeof buf, &n) != 0)
        return 1;
    struct vks_envelope_info info;
    struct vks_err e;
    vks_status st = vks_envelope_inspect((unsigned char *)buf, n, &info, &e);
    if (st != VKS_OK) {
        printf("%s: %s\n", vks_status_code(st), e.msg);
        return 1;
    }
    if (info.format == 2)
        printf("format 2 (v2, bound to its place), key id %s\n", info.key_id);
    else
        printf("format 1 (legacy genro-mail-proxy, no key id, not bound to its place)\n");
    return 0;
}

int vks_cli_envelope_rekey(int argc, char **argv)
{
    struct opts o;
    struct vks_keyring *kr = NULL;
    static char buf[VKS_ENVELOPE_MAX + 2];
    size_t n = 0;
    if (parse(argc, argv, &o, true, true, false, vks_cli_envelope_rekey_usage) != 0)
        return 2;
    if (read_envelope(buf, sizeof buf, &n) != 0)
        return 1;
    if (load(&kr) != 0)
        return 2;
    char *out = NULL;
    bool changed = false;
    struct vks_err e;
    vks_status st = vks_envelope_rekey(kr, (unsigned char *)buf, n, &o.place, o.key_id, &out,
                                       &changed, &e);
    vks_keyring_free(kr);
    if (st != VKS_OK) {
        fprintf(stderr, "vks: %s\n", e.msg);
        return st == VKS_E_CONFIG ? 2 : 1;
    }
    printf("%s\n", out);
    if (!changed)
        fprintf(stderr, "unchanged: already format 2 under that key id\n");
    free(out);
    return 0;
}

int vks_cli_envelope_keys(int argc, char **argv)
{
    struct opts o;
    struct vks_keyring *kr = NULL;
    if (parse(argc, argv, &o, false, false, false, vks_cli_envelope_keys_usage) != 0)
        return 2;
    if (load(&kr) != 0)
        return 2;
    size_t n = vks_keyring_count(kr);
    if (n == 0)
        printf("no encryption keys configured\n");
    for (size_t i = 0; i < n; i++)
        printf("%-20s %s%s\n", vks_keyring_id(kr, i), vks_keyring_source(kr, i),
               i == 0 ? "  (primary)" : "");
    vks_keyring_free(kr);
    return 0;
}

int vks_cli_envelope_genkey(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, false, false, false, vks_cli_envelope_genkey_usage) != 0)
        return 2;
    vks_secret key = VKS_SECRET_EMPTY;
    struct vks_err e;
    if (vks_secret_alloc(32, &key, &e) != VKS_OK) {
        fprintf(stderr, "vks: %s\n", e.msg);
        return 1;
    }
    if (RAND_bytes(key.data, 32) != 1) {
        vks_secret_free(&key);
        fprintf(stderr, "vks: RAND_bytes failed\n");
        return 1;
    }
    /* the key goes straight to fd 1 with write(2): through printf it would also sit in stdout's
     * heap buffer, which nothing wipes */
    char b64[VKS_B64_ENCODED_LEN(32) + 2];
    vks_b64_encode(key.data, 32, b64);
    vks_secret_free(&key);
    size_t n = strlen(b64), off = 0;
    b64[n++] = '\n';
    int rc = 0;
    fflush(stdout);
    while (off < n) {
        ssize_t w = write(STDOUT_FILENO, b64 + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "vks: cannot write the key: %s\n", w < 0 ? strerror(errno) : "short write");
            rc = 1;
            break;
        }
        off += (size_t)w;
    }
    vks_wipe(b64, sizeof b64);
    return rc;
}
