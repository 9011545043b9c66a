/*
 * bench_peers: the peers side by side in one run, against one build/vault-dev over HTTPS on
 * loopback that this program starts, as ratios (docs/benchmarks.md, "Peers").
 *
 *  - a KumoMTA-style client: what KumoMTA's vault keysource does for every smtp_auth_plain_password
 *    lookup (no cache; a new Vault client, so a new TCP + TLS connection, per lookup; GET
 *    /v1/{mount}/data/{path}; the JSON reply parsed; data.data[key] taken as a string). Written here
 *    in C with libcurl and json-c (KumoMTA is Rust with reqwest/rustls): it runs in a child process
 *    with libcurl's own allocators, so it carries none of our costs;
 *  - python3-hvac (bench/peer_hvac.py): one reused client, and a new client per lookup;
 *  - ours, cold: vks_resolve with the cache off (every lookup reads Vault over the keep-alive
 *    connection), keysource validation from fields included;
 *  - ours, hit: the same vks_resolve with the cache on (every lookup after the first is a hit);
 *    and the same hits from 2 threads against 1 (the whole resolver: runtime, cache, audit off),
 *    with the share-nothing control of bench_cache beside it.
 * Medians per lookup; ratios = peer / ours. Not a test: prints numbers, never fails the build.
 * Runs in well under a minute (the new-connection clients dominate).
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "vks_cache.h"
#include "vks_config.h"
#include "vks_keysource.h"
#include "vks_resolver.h"

#define TOKEN "bench-token-PEERS-3c9a7e"
#define PASSWORD "bench-pw-PEERS-5b2d81"
#define SECRET_PATH "smtp-auth/peers.example.com"

#define N_NEWCONN 150  /* lookups per new-connection client (each is a full TLS handshake) */
#define N_KEEP 600     /* lookups per keep-alive client                                    */
#define HIT_BATCHES 200
#define HIT_PER 500

/* ------------------------------------------------------------------ the KumoMTA-style client */

struct body {
    char *p;
    size_t n;
};

static size_t collect(char *p, size_t s, size_t n, void *ud)
{
    struct body *b = ud;
    char *q = realloc(b->p, b->n + s * n + 1);
    if (q == NULL)
        return 0;
    memcpy(q + b->n, p, s * n);
    b->n += s * n;
    q[b->n] = '\0';
    b->p = q;
    return s * n;
}

/* One lookup the way KumoMTA's KeySource::get does it for a vault keysource. 0 = right value. */
static int kumo_lookup(const char *url, const char *ca)
{
    CURL *c = curl_easy_init(); /* a new client: no connection, TLS session or CA store reused */
    if (c == NULL)
        return -1;
    struct curl_slist *h = curl_slist_append(NULL, "X-Vault-Request: true");
    h = curl_slist_append(h, "X-Vault-Token: " TOKEN);
    struct body b = { NULL, 0 };
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long code = 0;
    int rc = -1;
    if (curl_easy_perform(c) == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
        code == 200 && b.p != NULL) {
        json_object *root = json_tokener_parse(b.p), *d1, *d2, *v;
        if (root != NULL && json_object_object_get_ex(root, "data", &d1) &&
            json_object_object_get_ex(d1, "data", &d2) && json_object_object_get_ex(d2, "password", &v) &&
            json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), PASSWORD) == 0)
            rc = 0;
        json_object_put(root);
    }
    free(b.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* The child's whole job: prints "kumo_us MEDIAN FAILURES" on stdout. */
static int kumo_main(const char *addr, const char *ca)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[600];
    snprintf(url, sizeof url, "%s/v1/secret/data/" SECRET_PATH, addr);
    static double t[N_NEWCONN];
    int fails = 0;
    for (int i = 0; i < 10; i++)
        fails += kumo_lookup(url, ca) != 0;
    for (int i = 0; i < N_NEWCONN; i++) {
        double t0 = bench_now_us();
        fails += kumo_lookup(url, ca) != 0;
        t[i] = bench_now_us() - t0;
    }
    printf("kumo_us %.1f %d\n", bench_median(t, N_NEWCONN), fails);
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ children */

/* Runs argv with stdout to a pipe, at most `secs` seconds; collects its output into buf. */
static int run_child(char *const argv[], char *buf, size_t n, int secs)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        setenv("PEER_EXPECT", PASSWORD, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    double deadline = bench_now_us() + secs * 1e6;
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t r = read(p[0], buf + len, n - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            if (len + 1 >= n)
                break;
        } else if (r == 0) {
            break;
        } else if (bench_now_us() > deadline) {
            kill(pid, SIGKILL);
            break;
        } else {
            usleep(20000);
        }
    }
    buf[len] = '\0';
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static double field(const char *out, const char *name)
{
    const char *p = strstr(out, name);
    return p != NULL ? strtod(p + strlen(name), NULL) : 0;
}

/* ------------------------------------------------------------------ ours */

/* One lookup as the module makes it: keysource from fields, vks_resolve. 0 = right value. */
static int ours_lookup(void)
{
    static const struct vks_field f[] = {
        { .name = "vault_mount", .type = VKS_FT_STRING, .str = "secret", .len = 6 },
        { .name = "vault_path", .type = VKS_FT_STRING, .str = SECRET_PATH, .len = sizeof SECRET_PATH - 1 },
        { .name = "vault_key", .type = VKS_FT_STRING, .str = "password", .len = 8 },
    };
    struct vks_err e;
    struct vks_keysource ks;
    vks_secret v = VKS_SECRET_EMPTY;
    vks_status st = vks_keysource_from_fields(f, 3, &ks, &e);
    if (st == VKS_OK) {
        struct vks_resolve_req rq = { .api = "resolve", .ks = &ks };
        st = vks_resolve(&rq, &v, NULL, &e);
    }
    int rc = st == VKS_OK && v.len == sizeof PASSWORD - 1 && memcmp(v.data, PASSWORD, v.len) == 0 ? 0 : -1;
    vks_secret_free(&v);
    vks_keysource_clear(&ks);
    return rc;
}

static int setup_ours(const char *addr, const char *ca, double ttl)
{
    struct vks_err e;
    struct vks_cache_config cc;
    vks_cache_config_defaults(&cc);
    cc.ttl_s = ttl;
    if (vks_cache_configure(&cc, &e) != VKS_OK)
        return -1;
    struct vks_config cfg;
    if (vks_config_from_env(&cfg, &e) != VKS_OK)
        return -1;
    struct vks_field opts[] = {
        { .name = "address", .type = VKS_FT_STRING, .str = addr, .len = strlen(addr) },
        { .name = "ca_cert", .type = VKS_FT_STRING, .str = ca, .len = strlen(ca) },
        { .name = "token", .type = VKS_FT_STRING, .str = TOKEN, .len = strlen(TOKEN) },
    };
    bool changed;
    for (size_t i = 0; i < 3; i++)
        vks_config_set(&cfg, &opts[i], &e);
    vks_status st = vks_config_finish(&cfg, &e);
    if (st == VKS_OK)
        st = vks_resolver_setup(&cfg, &changed, &e);
    vks_config_clear(&cfg);
    return st == VKS_OK ? 0 : -1;
}

struct ours {
    double cold_us, hit_us;
    int fails;
};

static void measure_ours(struct ours *o)
{
    static double t[N_KEEP > HIT_BATCHES ? N_KEEP : HIT_BATCHES];
    vks_cache_flush();
    struct vks_cache_config cc;
    struct vks_err e;
    vks_cache_get_config(&cc);
    cc.ttl_s = 0; /* cold: every lookup reads Vault */
    vks_cache_configure(&cc, &e);
    for (int i = 0; i < 20; i++)
        o->fails += ours_lookup();
    for (int i = 0; i < N_KEEP; i++) {
        double t0 = bench_now_us();
        o->fails += ours_lookup();
        t[i] = bench_now_us() - t0;
    }
    o->cold_us = bench_median(t, N_KEEP);
    cc.ttl_s = 300; /* hit: the first lookup fills the cache */
    vks_cache_configure(&cc, &e);
    for (int i = 0; i < 2000; i++)
        o->fails += ours_lookup();
    for (int b = 0; b < HIT_BATCHES; b++) {
        double t0 = bench_now_us();
        for (int i = 0; i < HIT_PER; i++)
            o->fails += ours_lookup();
        t[b] = (bench_now_us() - t0) / HIT_PER;
    }
    o->hit_us = bench_median(t, HIT_BATCHES);
}

/* vks_resolve hits from 1 and 2 threads, alternated 5 times (0.2 s each; medians): wall-clock
 * ratio and per CPU-second ratio; the control does work that shares nothing (hashing the path). */
static atomic_bool th_go, th_halt, th_control;
static atomic_ullong th_total, th_cpu_ns, th_sink;

static unsigned long long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void *hit_worker(void *arg)
{
    (void)arg;
    bool control = atomic_load(&th_control);
    unsigned long long n = 0, acc = 0;
    while (!atomic_load(&th_go))
        ;
    unsigned long long c0 = thread_cpu_ns();
    while (!atomic_load_explicit(&th_halt, memory_order_relaxed)) {
        for (int i = 0; i < 50; i++) {
            if (control)
                for (const char *p = SECRET_PATH; *p; p++)
                    acc = (acc ^ (unsigned char)*p) * 1099511628211ull;
            else
                acc += (unsigned long long)ours_lookup();
        }
        n += 50;
    }
    atomic_fetch_add(&th_sink, acc);
    atomic_fetch_add(&th_cpu_ns, thread_cpu_ns() - c0);
    atomic_fetch_add(&th_total, n);
    return NULL;
}

static double hit_threads(int nt, double secs, double *per_cpu)
{
    pthread_t th[2];
    atomic_store(&th_go, false);
    atomic_store(&th_halt, false);
    atomic_store(&th_total, 0);
    atomic_store(&th_cpu_ns, 0);
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, hit_worker, NULL);
    double t0 = now_us();
    atomic_store(&th_go, true);
    struct timespec d = { 0, (long)(secs * 1e9) };
    nanosleep(&d, NULL);
    atomic_store(&th_halt, true);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    double n = (double)atomic_load(&th_total);
    *per_cpu = n / ((double)atomic_load(&th_cpu_ns) / 1e3);
    return n / (now_us() - t0);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure_threads(void)
{
    enum { REPS = 5 };
    double wall[REPS], cpu[REPS], ctl[REPS], c1, c2, dummy;
    for (int r = 0; r < REPS; r++) {
        double w1 = hit_threads(1, 0.2, &c1), w2 = hit_threads(2, 0.2, &c2);
        wall[r] = w2 / w1;
        cpu[r] = c2 / c1;
        atomic_store(&th_control, true);
        double m1 = hit_threads(1, 0.1, &dummy), m2 = hit_threads(2, 0.1, &dummy);
        atomic_store(&th_control, false);
        ctl[r] = m2 / m1;
    }
    qsort(wall, REPS, sizeof wall[0], cmp_dbl);
    qsort(cpu, REPS, sizeof cpu[0], cmp_dbl);
    qsort(ctl, REPS, sizeof ctl[0], cmp_dbl);
    printf("ours, cache hits (vks_resolve from C), 2 threads / 1 thread: %.2fx; work that shares nothing: "
           "%.2fx; hits per CPU-second, 2 / 1: %.2fx (1.0 = no contention)\n", wall[REPS / 2],
           ctl[REPS / 2], cpu[REPS / 2]);
}

/* ------------------------------------------------------------------ report */

static void row(const char *name, double us, const struct ours *o)
{
    if (us <= 0) {
        printf("  %-46s %12s\n", name, "skipped");
        return;
    }
    printf("  %-46s %10.1f us  %8.1fx  %10.0fx\n", name, us, us / o->cold_us, us / o->hit_us);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--kumo") == 0)
        return kumo_main(argv[2], argv[3]);
    unsetenv("VKS_AUDIT_FILE");
    setenv("VKS_CACHE_TTL", "0", 1);
    char dir[] = "/tmp/bench-peers-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char addr[256], ca[600];
    pid_t server = bench_vault_dev_start(dir, TOKEN, addr, sizeof addr, ca, sizeof ca);
    if (server < 0) {
        printf("bench_peers: build/vault-dev is not available, skipped\n");
        return 0;
    }
    int rc = 1;
    char out[4096], self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = '\0';

    /* the KumoMTA-style client first, in a child that never loaded our allocators */
    char *kargv[] = { self, "--kumo", addr, ca, NULL };
    double kumo = 0;
    int kfails = -1;
    if (bench_vault_put(addr, ca, TOKEN, SECRET_PATH, "{\"data\":{\"password\":\"" PASSWORD "\"}}") == 0 &&
        run_child(kargv, out, sizeof out, 120) == 0) {
        kumo = field(out, "kumo_us ");
        const char *p = strstr(out, "kumo_us ");
        if (p != NULL)
            sscanf(p, "kumo_us %*f %d", &kfails);
    }

    /* python3-hvac */
    char script[1200], nk[16], nn[16];
    snprintf(script, sizeof script, "%s/bench/peer_hvac.py", getenv("ROOT") ? getenv("ROOT") : ".");
    snprintf(nk, sizeof nk, "%d", N_KEEP);
    snprintf(nn, sizeof nn, "%d", N_NEWCONN);
    char *pargv[] = { "/usr/bin/python3", script, addr, ca, TOKEN, SECRET_PATH, "password", nk, nn, NULL };
    double hv_reused = 0, hv_new = 0;
    char hvnote[300] = "";
    if (run_child(pargv, out, sizeof out, 180) == 0) {
        hv_reused = field(out, "hvac_reused_us ");
        hv_new = field(out, "hvac_new_us ");
        const char *p = strstr(out, "hvac_skip ");
        if (p != NULL)
            snprintf(hvnote, sizeof hvnote, "%.*s", (int)strcspn(p + 10, "\n"), p + 10);
    } else {
        snprintf(hvnote, sizeof hvnote, "/usr/bin/python3 bench/peer_hvac.py did not run");
    }

    /* ours, in this process */
    struct ours o = { 0, 0, 0 };
    if (setup_ours(addr, ca, 0) != 0) {
        printf("bench_peers: setup failed\n");
        goto out;
    }
    measure_ours(&o);

    printf("peers reading one KV v2 secret from vault-dev (HTTPS on loopback), median per lookup;\n"
           "ratio = that client's time / ours:\n");
    printf("  %-46s %13s  %9s  %11s\n", "client", "per lookup", "/ ours cold", "/ ours hit");
    row("KumoMTA-style (new TLS connection, no cache)", kumo, &o);
    row("python3-hvac, new client per lookup", hv_new, &o);
    row("python3-hvac, one reused client", hv_reused, &o);
    row("ours, cold (cache off, keep-alive)", o.cold_us, &o);
    printf("  %-46s %10.2f us  %8.3fx  %10.0fx\n", "ours, cache hit (vks_resolve from C)", o.hit_us,
           o.hit_us / o.cold_us, 1.0);
    if (hvnote[0])
        printf("  note: python3-hvac: %s\n", hvnote);
    printf("  failures: KumoMTA-style %d, ours %d\n", kfails, o.fails);
    measure_threads();
    rc = o.fails == 0 && kfails == 0 ? 0 : 1;
    vks_resolver_shutdown();
out:
    bench_vault_dev_stop(server);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
