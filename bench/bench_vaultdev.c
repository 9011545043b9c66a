/*
 * bench_vaultdev: KV v2 reads per second that build/vault-dev serves over keep-alive HTTPS on
 * loopback, with 1 and 2 client threads (one libcurl easy handle each, connection reused).
 * Goal: at least 20,000 reads/s with 2 clients on 2 cores, so the dev server is never the
 * bottleneck of the client benchmarks. A measurement, not a test: it always exits 0 unless the
 * server cannot be started.
 *
 *   build/bench/bench_vaultdev [seconds-per-run]      (default 3; environment BUILD picks the build)
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char addr[1300], cacert[1300];
static const char *token_hdr = "X-Vault-Token: bench-root-token-not-secret";
static atomic_int stop_flag;

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    *(size_t *)u += s * n;
    return s * n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static CURL *handle(const char *url, struct curl_slist *h, size_t *got)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, got);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

struct worker {
    pthread_t t;
    long ok, bad;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    char url[1400];
    snprintf(url, sizeof url, "%s/v1/secret/data/bench/smtp", addr);
    struct curl_slist *h = curl_slist_append(NULL, token_hdr);
    size_t got = 0;
    CURL *c = handle(url, h, &got);
    while (!atomic_load(&stop_flag)) {
        long code = 0;
        if (curl_easy_perform(c) == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
            code == 200)
            w->ok++;
        else
            w->bad++;
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return NULL;
}

static pid_t server_pid;

/* CPU seconds (user + system, all threads) the server has used so far */
static double server_cpu(void)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double last_server_us;

static double measure(int threads, double seconds, long *bad)
{
    struct worker w[8];
    memset(w, 0, sizeof w);
    atomic_store(&stop_flag, 0);
    for (int i = 0; i < threads; i++)
        pthread_create(&w[i].t, NULL, run, &w[i]);
    struct timespec warm = {0, 300000000L};
    nanosleep(&warm, NULL);
    long base = 0;
    for (int i = 0; i < threads; i++)
        base += w[i].ok; /* racy snapshot; fine for a warm-up cut */
    double t0 = now_s(), c0 = server_cpu();
    struct timespec d = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&d, NULL);
    long end = 0;
    for (int i = 0; i < threads; i++)
        end += w[i].ok;
    double t1 = now_s(), c1 = server_cpu();
    atomic_store(&stop_flag, 1);
    last_server_us = end > base ? (c1 - c0) * 1e6 / (double)(end - base) : 0;
    *bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].t, NULL);
        *bad += w[i].bad;
    }
    return (double)(end - base) / (t1 - t0);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    if (seconds <= 0 || seconds > 30)
        seconds = 3.0;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char bin[1024], dir[] = "/tmp/bench-vaultdev-XXXXXX", tls[1100];
    snprintf(bin, sizeof bin, "%s/vault-dev", build);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(tls, sizeof tls, "%s/tls", dir);
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t pid = fork();
    server_pid = pid;
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(bin, bin, "--addr", "127.0.0.1:0", "--tls-dir", tls, "--root-token",
              "bench-root-token-not-secret", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    FILE *out = fdopen(p[0], "r");
    char line[1200];
    while ((!addr[0] || !cacert[0]) && fgets(line, sizeof line, out)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "VAULT_ADDR=", 11))
            snprintf(addr, sizeof addr, "%s", line + 11);
        else if (!strncmp(line, "VAULT_CACERT=", 13))
            snprintf(cacert, sizeof cacert, "%s", line + 13);
    }
    if (!addr[0] || !cacert[0]) {
        fprintf(stderr, "bench_vaultdev: %s did not start\n", bin);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* seed one secret */
    char url[1400];
    snprintf(url, sizeof url, "%s/v1/secret/data/bench/smtp", addr);
    struct curl_slist *h = curl_slist_append(NULL, token_hdr);
    h = curl_slist_append(h, "Content-Type: application/json");
    size_t got = 0;
    CURL *c = handle(url, h, &got);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"data\":{\"key\":\"ENC:v1:not-a-real-envelope-just-bench-bytes\"}}");
    long code = 0;
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (code != 200)
        fprintf(stderr, "bench_vaultdev: seeding the secret answered %ld\n", code);

    long bad1 = 0, bad2 = 0;
    double r1 = measure(1, seconds, &bad1), us1 = last_server_us;
    double r2 = measure(2, seconds, &bad2), us2 = last_server_us;
    printf("vault-dev KV v2 reads over keep-alive HTTPS, 1 client : %8.0f /s (%ld errors), server CPU %.1f us/read\n",
           r1, bad1, us1);
    printf("vault-dev KV v2 reads over keep-alive HTTPS, 2 clients: %8.0f /s (%ld errors), server CPU %.1f us/read"
           "  goal >= 20000 /s: %s\n", r2, bad2, us2, r2 >= 20000 ? "met" : "NOT met");
    if (us2 > 0)
        printf("vault-dev capacity if the server had both cores to itself: ~%.0f reads/s "
               "(clients share the machine; load average matters)\n", 2e6 / us2);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    fclose(out);
    char rm[1200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench_vaultdev: could not remove %s\n", dir);
    curl_global_cleanup();
    return 0;
}
