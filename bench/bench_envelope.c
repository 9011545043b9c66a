/*
 * bench_envelope: nanoseconds per decrypt of a 32-byte password (v2 with AAD, legacy with the right
 * key first and with it last of 4), decrypt into a caller-owned slot (no arena alloc), encrypt,
 * and loading a keyring from the environment. A measurement, not a test: prints numbers and the
 * goal they are compared with; it never fails the build. Runs for a few seconds at most.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_envelope.h"
#include "vks_secmem.h"

#define KEY_A "envelope-test-key-A-0123456789ab"
#define KEY_B "envelope-test-key-B-0123456789ab"
#define PASSWORD32 "relay-pass-ENVELOPE-7c1d-0123456" /* 32 bytes */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const struct vks_err *e)
{
    fprintf(stderr, "bench_envelope: %s: %s\n", what, e->msg);
    exit(1);
}

static const struct vks_envelope_place PLACE = { "secret", "smtp-auth/example.com", "password" };

static double bench_decrypt(const struct vks_keyring *kr, const char *env, int iters)
{
    struct vks_err e;
    size_t len = strlen(env);
    double t0 = now_ns();
    for (int i = 0; i < iters; i++) {
        vks_secret out = VKS_SECRET_EMPTY;
        if (vks_envelope_decrypt(kr, (const unsigned char *)env, len, &PLACE, &out, NULL, &e) != VKS_OK)
            die("decrypt", &e);
        vks_secret_free(&out);
    }
    return (now_ns() - t0) / iters;
}

static const char *fenv_get(const char *name, void *ctx)
{
    return strcmp(name, "VKS_ENCRYPTION_KEYS") == 0 ? ctx : NULL;
}

int main(void)
{
    struct vks_err e;
    struct vks_keyring *kr = NULL, *kr4 = NULL;
    const int iters = 200000;

    if (vks_keyring_new(&kr, &e) != VKS_OK ||
        vks_keyring_add(kr, "k1", (const unsigned char *)KEY_A, &e) != VKS_OK)
        die("keyring", &e);
    if (vks_keyring_new(&kr4, &e) != VKS_OK)
        die("keyring", &e);
    const char *ids[] = { "w1", "w2", "w3", "k1" };
    for (int i = 0; i < 4; i++)
        if (vks_keyring_add(kr4, ids[i], (const unsigned char *)(i == 3 ? KEY_A : KEY_B), &e) != VKS_OK)
            die("keyring", &e);

    char *v2 = NULL, *legacy = NULL;
    if (vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)PASSWORD32, 32, &v2, &e) != VKS_OK ||
        vks_envelope_encrypt(kr, NULL, &PLACE, (const unsigned char *)PASSWORD32, 32, &legacy, &e) != VKS_OK)
        die("encrypt", &e);

    bench_decrypt(kr, v2, 2000); /* warm up */
    double d_v2 = bench_decrypt(kr, v2, iters);
    double d_legacy = bench_decrypt(kr, legacy, iters);
    double d_legacy_last = bench_decrypt(kr4, legacy, iters / 4);

    vks_secret slot = VKS_SECRET_EMPTY;
    if (vks_secret_alloc(64, &slot, &e) != VKS_OK)
        die("alloc", &e);
    double t0 = now_ns();
    for (int i = 0; i < iters; i++)
        if (vks_envelope_decrypt_into(kr, (const unsigned char *)v2, strlen(v2), &PLACE, &slot, NULL, &e) != VKS_OK)
            die("decrypt_into", &e);
    double d_into = (now_ns() - t0) / iters;
    vks_secret_free(&slot);

    t0 = now_ns();
    for (int i = 0; i < iters / 4; i++) {
        char *s = NULL;
        if (vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)PASSWORD32, 32, &s, &e) != VKS_OK)
            die("encrypt", &e);
        free(s);
    }
    double d_enc = (now_ns() - t0) / (iters / 4);

    char list[256];
    snprintf(list, sizeof list, "k2:ZW52ZWxvcGUtdGVzdC1rZXktQi0wMTIzNDU2Nzg5YWI=,"
                                "k1:ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIzNDU2Nzg5YWI=");
    t0 = now_ns();
    for (int i = 0; i < 20000; i++) {
        struct vks_keyring *k = NULL;
        if (vks_keyring_load(&k, fenv_get, list, "/nonexistent", &e) != VKS_OK)
            die("load", &e);
        vks_keyring_free(k);
    }
    double d_load = (now_ns() - t0) / 20000;

    printf("envelope decrypt, 32-byte password, v2 (AAD):            %8.0f ns/op\n", d_v2);
    printf("envelope decrypt, 32-byte password, legacy (1 key):      %8.0f ns/op\n", d_legacy);
    printf("envelope decrypt, legacy, right key last of 4:           %8.0f ns/op\n", d_legacy_last);
    printf("envelope decrypt_into (caller's slot), v2:               %8.0f ns/op\n", d_into);
    printf("envelope encrypt, v2, 32 bytes:                          %8.0f ns/op\n", d_enc);
    printf("keyring load, 2 keys from VKS_ENCRYPTION_KEYS:           %8.0f ns/op\n", d_load);
    printf("goal: decrypt well under 10 us (negligible next to a Vault round trip); %s\n",
           d_v2 < 10000 ? "met" : "NOT met");

    free(v2);
    free(legacy);
    vks_keyring_free(kr);
    vks_keyring_free(kr4);
    return 0;
}
