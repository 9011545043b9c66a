/*
 * audit_writer THREADS EVENTS: configures vks_audit from the environment (VKS_AUDIT_FILE,
 * VKS_AUDIT_MODE, VKS_AUDIT_ON_FAILURE, VKS_AUDIT_KEY, ...) and emits EVENTS lookup events from
 * each of THREADS threads, each carrying the test value so that its fingerprint is computed.
 * Prints "ok=N unavailable=N other=N" and exits 0 (the caller decides what is right).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit.h"

#define VALUE "relay-password-AUDIT-9c1e4f"

static int events;
static atomic_int ok, unavailable, other;

static void *run(void *arg)
{
    long t = (long)arg;
    char dest[64];
    snprintf(dest, sizeof dest, "mx%ld.example.com", t);
    for (int i = 0; i < events; i++) {
        struct vks_audit_event ev;
        memset(&ev, 0, sizeof ev);
        ev.outcome = i % 3 == 0 ? VKS_AUDIT_MISS : VKS_AUDIT_HIT;
        ev.status = VKS_OK;
        ev.source = VKS_AUDIT_SRC_VAULT;
        ev.vault_addr = "https://127.0.0.1:8200";
        ev.mount = "secret";
        ev.path = "smtp-auth/example.com";
        ev.key = "password";
        ev.kv_version = 2;
        ev.secret_version = 1;
        ev.cached = ev.outcome == VKS_AUDIT_HIT;
        ev.cache_age_ms = i;
        ev.ctx.domain = "example.com";
        ev.ctx.destination = dest;
        ev.value = (const unsigned char *)VALUE;
        ev.value_len = strlen(VALUE);
        struct vks_err err;
        vks_status st = vks_audit_emit(&ev, NULL, &err);
        if (st == VKS_OK)
            atomic_fetch_add(&ok, 1);
        else if (st == VKS_E_AUDIT_UNAVAILABLE)
            atomic_fetch_add(&unavailable, 1);
        else
            atomic_fetch_add(&other, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: audit_writer THREADS EVENTS\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    events = atoi(argv[2]);
    if (threads < 1 || threads > 256 || events < 0)
        return 2;
    struct vks_audit_config cfg;
    struct vks_err err;
    if (vks_audit_config_from_env(&cfg, &err) != VKS_OK ||
        vks_audit_configure(&cfg, &err) != VKS_OK) {
        fprintf(stderr, "audit_writer: %s\n", err.msg);
        return 1;
    }
    pthread_t th[256];
    for (long t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, run, (void *)t);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    vks_audit_shutdown();
    printf("ok=%d unavailable=%d other=%d\n", atomic_load(&ok), atomic_load(&unavailable),
           atomic_load(&other));
    return 0;
}
