/*
 * vault_threads: concurrency proof of the Vault client (run by tests/integration/15-vault-threads.sh,
 * and under ThreadSanitizer by `make tsan`, which Criterion cannot run under).
 *
 *  1. 8 threads x 150 reads of two KV v2 secrets on ONE client (token auth, auto KV version):
 *     every value right, at most one connection per thread.
 *  2. 8 threads on ONE AppRole client while the main thread moves both clocks past 2/3 of the
 *     token TTL several times: every read succeeds, exactly one login, renewals happen
 *     (single-flight: never more renewals than clock moves).
 *  3. 8 threads while vault-dev answers 503 to the next 400 requests: retries run in parallel and
 *     every read returns (the value, or unavailable once its retries are spent).
 *
 * Prints "ok - ..." / "not ok - ..." lines and "N passed, N failed". Secrets are listed in
 * tests/test-secrets.d/vault.txt.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vks_vault.h"

#define ROOT_TOKEN "root-token-vault-TEST-5e8a1c"
#define PW_A "smtp-pass-TEST-one-7c21"
#define PW_B "smtp-pass-TEST-two-44d0"
#define SECRET_ID "approle-secret-id-TEST-6d2e90"
#define NTHREADS 8

static char addr[256], cacert[600];
static int passed, failed;

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    fflush(stdout);
    if (ok)
        passed++;
    else
        failed++;
}

static pid_t start_vault_dev(const char *work)
{
    char bin[1024], dir[1024], out[1100];
    const char *root = getenv("ROOT"), *build = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/%s/vault-dev", root ? root : ".", build ? build : "build");
    snprintf(dir, sizeof dir, "%s/vault-threads-tls", work);
    mkdir(dir, 0700);
    snprintf(out, sizeof out, "%s/vault-dev.log", work);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl(bin, bin, "--addr", "127.0.0.1:0", "--tls-dir", dir, "--root-token", ROOT_TOKEN, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 6000 && !(addr[0] && cacert[0]); i++) {
        FILE *f = fopen(out, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (!strncmp(line, "VAULT_ADDR=", 11))
                    snprintf(addr, sizeof addr, "%.200s", line + 11);
                if (!strncmp(line, "VAULT_CACERT=", 13))
                    snprintf(cacert, sizeof cacert, "%.500s", line + 13);
            }
            fclose(f);
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(10000);
    }
    return (addr[0] && cacert[0]) ? pid : -1;
}

struct buf {
    char p[8192];
    size_t n;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n >= sizeof b->p)
        return 0;
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* Admin request with the root token; returns the status, body in *out (may be NULL). */
static long admin(const char *method, const char *path, const char *body, struct buf *out)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "%s/v1/%s", addr, path);
    struct curl_slist *h = curl_slist_append(NULL, "X-Vault-Token: " ROOT_TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    struct buf tmp = { .n = 0 };
    struct buf *b = out ? out : &tmp;
    b->n = 0;
    b->p[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long st = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return st;
}

/* Crude string field extraction from an admin answer ("\"role_id\":\"...\""). */
static void field(const char *json, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", name);
    const char *p = strstr(json, pat);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static struct vks_vault *new_client(bool approle, const char *role_id)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(addr);
    c.cacert = strdup(cacert);
    c.min_retry_wait_ms = 1;
    c.max_retry_wait_ms = 5;
    c.max_retries = 4;
    c.timeout_ms = 60000;
    if (approle) {
        c.auth = VKS_AUTH_APPROLE;
        c.role_id = strdup(role_id);
        vks_secret_dup(SECRET_ID, strlen(SECRET_ID), &c.secret_id, NULL);
    } else {
        vks_secret_dup(ROOT_TOKEN, strlen(ROOT_TOKEN), &c.token, NULL);
    }
    struct vks_vault *v = NULL;
    struct vks_err e;
    if (vks_vault_new(&c, &v, &e) != VKS_OK)
        printf("# vks_vault_new: %s\n", e.msg);
    vks_vault_config_clear(&c);
    return v;
}

struct job {
    struct vks_vault *v;
    int reads;
    int kv;
    const char *key;
    atomic_int *ok;
    atomic_int *bad;
    atomic_bool *stop;
};

static void *reader(void *arg)
{
    struct job *j = arg;
    for (int i = 0; (j->reads > 0 ? i < j->reads : !atomic_load(j->stop)); i++) {
        const char *path = (i & 1) ? "threads/a" : "threads/b";
        const char *want = (i & 1) ? PW_A : PW_B;
        struct vks_kv_request rq = { .mount = "secret", .path = path, .key = j->key, .kv_version = j->kv };
        struct vks_kv_result r;
        struct vks_err e;
        vks_status st = vks_vault_kv_read(j->v, &rq, &r, &e);
        if (st == VKS_OK && r.value.len == strlen(want) && memcmp(r.value.data, want, r.value.len) == 0) {
            atomic_fetch_add(j->ok, 1);
        } else {
            if (atomic_fetch_add(j->bad, 1) < 3)
                printf("# read failed: %s\n", st == VKS_OK ? "wrong value" : e.msg);
        }
        vks_kv_result_free(&r);
    }
    return NULL;
}

static void run_threads(struct job *proto, pthread_t *th, struct job *jobs)
{
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = *proto;
        pthread_create(&th[i], NULL, reader, &jobs[i]);
    }
}

static void join_threads(pthread_t *th)
{
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
}

int main(void)
{
    const char *work = getenv("VKS_SUITE_WORK");
    if (!work || !*work)
        work = "/tmp";
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pid_t pid = start_vault_dev(work);
    if (pid < 0) {
        printf("not ok - vault-dev did not start\n0 passed, 1 failed\n");
        return 1;
    }
    admin("POST", "secret/data/threads/a", "{\"data\":{\"key\":\"" PW_A "\"}}", NULL);
    admin("POST", "secret/data/threads/b", "{\"data\":{\"key\":\"" PW_B "\"}}", NULL);

    /* 1. token auth, auto version detection, many readers */
    {
        atomic_int ok = 0, bad = 0;
        atomic_bool stop = false;
        struct vks_vault *v = new_client(false, NULL);
        struct job proto = { v, 150, 0, "key", &ok, &bad, &stop };
        pthread_t th[NTHREADS];
        struct job jobs[NTHREADS];
        run_threads(&proto, th, jobs);
        join_threads(th);
        struct vks_vault_stats s;
        vks_vault_get_stats(v, &s);
        check(ok == NTHREADS * 150 && bad == 0, "8 threads x 150 reads on one client: every value right");
        check(s.connects >= 1 && s.connects <= NTHREADS, "at most one connection per thread");
        check(s.mount_lookups >= 1 && s.mount_lookups <= NTHREADS, "KV version detected, not once per read");
        printf("# connects %lu, requests %lu, mount lookups %lu\n", s.connects, s.requests, s.mount_lookups);
        vks_vault_free(v);
    }

    /* 2. AppRole: renewals under load */
    {
        long st = admin("POST", "sys/auth/approle", "{\"type\":\"approle\"}", NULL);
        admin("PUT", "sys/policies/acl/threads-read",
              "{\"policy\":\"path \\\"secret/data/*\\\" { capabilities = [\\\"read\\\"] }\"}", NULL);
        st = admin("POST", "auth/approle/role/threads",
                   "{\"token_ttl\":\"60s\",\"token_max_ttl\":\"24h\",\"token_policies\":[\"threads-read\"]}", NULL);
        struct buf b;
        admin("GET", "auth/approle/role/threads/role-id", NULL, &b);
        char role_id[128];
        field(b.p, "role_id", role_id, sizeof role_id);
        st = admin("POST", "auth/approle/role/threads/custom-secret-id", "{\"secret_id\":\"" SECRET_ID "\"}", NULL);
        if (!role_id[0] || st / 100 != 2) {
            check(0, "AppRole set up in vault-dev");
        } else {
            atomic_int ok = 0, bad = 0;
            atomic_bool stop = false;
            struct vks_vault *v = new_client(true, role_id);
            struct job proto = { v, 0, 2, "key", &ok, &bad, &stop };
            pthread_t th[NTHREADS];
            struct job jobs[NTHREADS];
            run_threads(&proto, th, jobs);
            int moves = 0;
            for (int k = 0; k < 4; k++) {
                struct timespec ts = { 0, 200 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                admin("POST", "sys/dev/clock", "{\"advance_seconds\":45}", NULL);
                vks_vault_advance_clock(v, 45);
                moves++;
            }
            struct timespec ts = { 0, 200 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            atomic_store(&stop, true);
            join_threads(th);
            struct vks_vault_stats s;
            vks_vault_get_stats(v, &s);
            printf("# reads %d, logins %lu, renewals %lu, relogins %lu\n", ok + bad, s.logins, s.renewals,
                   s.relogins);
            check(bad == 0 && ok > 0, "AppRole reads under concurrent renewals all succeed");
            check(s.logins == 1, "exactly one login (single-flight)");
            check(s.renewals >= 1 && s.renewals <= (unsigned long)moves, "renewed, never more than once per clock move");
            vks_vault_free(v);
        }
    }

    /* 3. retries in parallel */
    {
        admin("POST", "sys/dev/faults",
              "{\"action\":\"status\",\"status\":503,\"path_prefix\":\"/v1/secret/data/threads\",\"count\":400}", NULL);
        atomic_int ok = 0, bad = 0;
        atomic_bool stop = false;
        struct vks_vault *v = new_client(false, NULL);
        struct job proto = { v, 60, 2, "key", &ok, &bad, &stop };
        pthread_t th[NTHREADS];
        struct job jobs[NTHREADS];
        run_threads(&proto, th, jobs);
        join_threads(th);
        struct vks_vault_stats s;
        vks_vault_get_stats(v, &s);
        printf("# reads %d, retries %lu\n", ok + bad, s.retries);
        check(s.retries > 0, "503s were retried");
        check(ok + bad == NTHREADS * 60 && ok > 0, "every read returned, and reads succeeded through the 503s");
        vks_vault_free(v);
        admin("DELETE", "sys/dev/faults", NULL, NULL);
    }

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
