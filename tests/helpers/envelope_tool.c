/*
 * envelope_tool: the envelope API as a process, for integration tests and the demo (until the
 * `vks` CLI grows envelope subcommands). Keys come from the real environment
 * (vks_keyring_load_env). Plaintext is read with read(2) straight into an arena slot and is never
 * printed.
 *
 *   envelope_tool keyring
 *       prints "<id>\t<source>" per key, primary first
 *   envelope_tool encrypt --mount M --path P --key K [--key-id ID | --legacy]
 *       plaintext on stdin (one trailing newline is dropped), prints the envelope
 *       (default key id: the keyring's primary)
 *   envelope_tool check --mount M --path P --key K
 *       envelope on stdin; prints "ok format=N key_id=ID length=N" or the error; exit 1 on failure
 *   envelope_tool threads N ITERATIONS
 *       N threads share the keyring, each decrypting and encrypting ITERATIONS times;
 *       prints "threads: N x ITERATIONS, F failures" (F must be 0)
 *
 * Exit: 0 ok, 1 the operation failed, 2 usage or keyring error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks_envelope.h"
#include "vks_secmem.h"

static struct vks_keyring *kr;
static struct vks_envelope_place place;

static int usage(void)
{
    fprintf(stderr, "usage: envelope_tool keyring | encrypt --mount M --path P --key K "
                    "[--key-id ID|--legacy] | check --mount M --path P --key K | threads N ITER\n");
    return 2;
}

/* Reads all of stdin into a fresh slot (at most VKS_SECRET_MAX + 1 bytes are looked at). */
static int read_stdin(vks_secret *s, size_t cap)
{
    struct vks_err e;
    if (vks_secret_alloc(cap, s, &e) != VKS_OK) {
        fprintf(stderr, "envelope_tool: %s\n", e.msg);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        if (n == s->cap) {
            fprintf(stderr, "envelope_tool: input longer than %zu bytes\n", cap);
            vks_secret_free(s);
            return -1;
        }
        ssize_t r = read(0, s->data + n, s->cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "envelope_tool: read stdin: %s\n", strerror(errno));
            vks_secret_free(s);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > 0 && s->data[n - 1] == '\n')
        n--;
    s->len = n;
    return 0;
}

static int parse_place(int argc, char **argv, int i, const char **key_id, int *legacy)
{
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--legacy") == 0 && legacy) {
            *legacy = 1;
            continue;
        }
        if (!v)
            return -1;
        if (strcmp(a, "--mount") == 0)
            place.mount = v;
        else if (strcmp(a, "--path") == 0)
            place.path = v;
        else if (strcmp(a, "--key") == 0)
            place.key = v;
        else if (strcmp(a, "--key-id") == 0 && key_id)
            *key_id = v;
        else
            return -1;
        i++;
    }
    return 0;
}

static int cmd_encrypt(int argc, char **argv)
{
    const char *key_id = NULL;
    int legacy = 0;
    if (parse_place(argc, argv, 2, &key_id, &legacy) != 0)
        return usage();
    if (!legacy && !key_id)
        key_id = vks_keyring_primary_id(kr);
    vks_secret plain = VKS_SECRET_EMPTY;
    if (read_stdin(&plain, VKS_SECRET_MAX) != 0)
        return 1;
    char *env = NULL;
    struct vks_err e;
    vks_status st = vks_envelope_encrypt(kr, legacy ? NULL : key_id, &place, plain.data, plain.len,
                                         &env, &e);
    vks_secret_free(&plain);
    if (st != VKS_OK) {
        fprintf(stderr, "envelope_tool: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", env);
    free(env);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    if (parse_place(argc, argv, 2, NULL, NULL) != 0)
        return usage();
    static char buf[VKS_ENVELOPE_MAX + 2];
    size_t n = fread(buf, 1, sizeof buf, stdin); /* an envelope holds no plaintext */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    struct vks_err e;
    if (vks_envelope_decrypt(kr, (unsigned char *)buf, n, &place, &out, &info, &e) != VKS_OK) {
        printf("failed %s: %s\n", vks_status_code(e.status), e.msg);
        return 1;
    }
    printf("ok format=%d key_id=%s length=%zu\n", info.format, info.key_id[0] ? info.key_id : "-",
           out.len);
    vks_secret_free(&out);
    return 0;
}

struct job {
    const char *v2, *legacy;
    const unsigned char *expect;
    size_t expect_len;
    long iters;
    long failures;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    for (long i = 0; i < j->iters; i++) {
        const char *env = (i & 1) && j->legacy ? j->legacy : j->v2;
        vks_secret out = VKS_SECRET_EMPTY;
        struct vks_err e;
        if (vks_envelope_decrypt(kr, (const unsigned char *)env, strlen(env), &place, &out, NULL,
                                 &e) != VKS_OK ||
            out.len != j->expect_len || !vks_ct_equal(out.data, j->expect, out.len))
            j->failures++;
        vks_secret_free(&out);
        char *s = NULL;
        if (vks_envelope_encrypt(kr, vks_keyring_primary_id(kr), &place, j->expect, j->expect_len,
                                 &s, &e) != VKS_OK)
            j->failures++;
        free(s);
    }
    return NULL;
}

static int cmd_threads(int argc, char **argv)
{
    if (argc != 4)
        return usage();
    long n = strtol(argv[2], NULL, 10), iters = strtol(argv[3], NULL, 10);
    if (n < 1 || n > 64 || iters < 1)
        return usage();
    if (vks_keyring_count(kr) == 0) {
        fprintf(stderr, "envelope_tool: threads needs a key in the environment\n");
        return 2;
    }
    place = (struct vks_envelope_place){ "secret", "smtp-auth/threads.example", "password" };
    static const unsigned char secret[] = "threads-value-not-a-real-secret";
    char *v2 = NULL, *legacy = NULL;
    struct vks_err e;
    if (vks_envelope_encrypt(kr, vks_keyring_primary_id(kr), &place, secret, sizeof secret - 1, &v2,
                             &e) != VKS_OK ||
        vks_envelope_encrypt(kr, NULL, &place, secret, sizeof secret - 1, &legacy, &e) != VKS_OK) {
        fprintf(stderr, "envelope_tool: %s\n", e.msg);
        return 1;
    }
    pthread_t t[64];
    struct job jobs[64];
    for (long i = 0; i < n; i++) {
        jobs[i] = (struct job){ v2, legacy, secret, sizeof secret - 1, iters, 0 };
        if (pthread_create(&t[i], NULL, worker, &jobs[i]) != 0)
            return 1;
    }
    long failures = 0;
    for (long i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        failures += jobs[i].failures;
    }
    printf("threads: %ld x %ld, %ld failures\n", n, iters, failures);
    free(v2);
    free(legacy);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    struct vks_err e;
    if (vks_keyring_load_env(&kr, &e) != VKS_OK) {
        fprintf(stderr, "envelope_tool: keyring: %s\n", e.msg);
        return 2;
    }
    int rc;
    if (strcmp(argv[1], "keyring") == 0) {
        for (size_t i = 0; i < vks_keyring_count(kr); i++)
            printf("%s\t%s\n", vks_keyring_id(kr, i), vks_keyring_source(kr, i));
        rc = 0;
    } else if (strcmp(argv[1], "encrypt") == 0) {
        rc = cmd_encrypt(argc, argv);
    } else if (strcmp(argv[1], "check") == 0) {
        rc = cmd_check(argc, argv);
    } else if (strcmp(argv[1], "threads") == 0) {
        rc = cmd_threads(argc, argv);
    } else {
        rc = usage();
    }
    vks_keyring_free(kr);
    return rc;
}
