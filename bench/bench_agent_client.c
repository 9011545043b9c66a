/*
 * The lean client of the vks-agent benchmark (bench/agent_bench.py runs it; on its own, without
 * arguments, it only says so). One C program for every side of a comparison, so the client's own
 * cost is the same on both sides and small:
 *
 *   http URL [--unix PATH] [--cacert FILE] [--token TOKEN]   GET with one reused libcurl handle per
 *        [--new-conn 1]                                      thread (keep-alive, TLS session kept);
 *                                                            with --new-conn 1 a NEW handle per
 *                                                            request: new connection, full TLS
 *                                                            handshake, no session resumption
 *                                                            (what KumoMTA does: vaultrs builds a
 *                                                            new VaultClient on every keysource call)
 *   socketmap PATH KEYFMT NKEYS                              netstring requests on one persistent
 *                                                            connection per thread ("sasl k%d.x")
 *   exim PATH REQUEST                                        one connection per request, as Exim
 *
 * Common options: -n REQUESTS (per thread), -c THREADS, -w WARMUP (per thread, not timed).
 * Output, one line: n= p50_us= p99_us= mean_us= rps= errors=. A request counts as an error when
 * the answer is not HTTP 200 / "OK ..." / non-empty. Secrets in answers are never printed.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum mode { M_HTTP, M_SOCKETMAP, M_EXIM };

static enum mode mode;
static const char *url, *unix_path, *cacert, *token, *keyfmt, *request;
static int nkeys = 1, nreq = 1000, nthreads = 1, warmup = 10, new_conn;
static double *lat; /* nthreads * nreq */
static long errors_total;
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    *(size_t *)ud += s * n;
    return s * n;
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    struct timeval tv = { 10, 0 };
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One netstring request and its answer on fd; 0 when the answer is "OK ...". */
static int socketmap_once(int fd, int i)
{
    char key[256], req[300], buf[4096];
    snprintf(key, sizeof key, keyfmt, ((i % nkeys) + nkeys) % nkeys);
    int n = snprintf(req, sizeof req, "%zu:%s,", strlen(key), key);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    size_t got = 0, need = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        char *colon = memchr(buf, ':', got);
        if (colon != NULL && need == 0)
            need = (size_t)(colon - buf) + 1 + strtoul(buf, NULL, 10) + 1;
        if (need > 0 && got >= need)
            break;
        if (got == sizeof buf)
            return -1;
    }
    char *colon = memchr(buf, ':', got);
    return colon != NULL && strncmp(colon + 1, "OK ", 3) == 0 ? 0 : -1;
}

static int exim_once(void)
{
    int fd = unix_connect(unix_path);
    if (fd < 0)
        return -1;
    char buf[4096];
    size_t got = 0;
    int rc = -1;
    if (send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request)) {
        shutdown(fd, SHUT_WR);
        ssize_t r;
        while ((r = recv(fd, buf + got, sizeof buf - got, 0)) > 0 && got + (size_t)r < sizeof buf)
            got += (size_t)r;
        rc = got > 0 ? 0 : -1;
    }
    close(fd);
    return rc;
}

/* One libcurl handle with the Vault request's headers (X-Vault-Token, X-Vault-Request: true). */
static CURL *http_handle(struct curl_slist *h, size_t *bytes)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, bytes);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (new_conn) /* a fresh client each time: no TLS session cache shared between handles */
        curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    if (cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    if (unix_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    return c;
}

static void *run(void *arg)
{
    int t = (int)(long)arg;
    CURL *c = NULL;
    struct curl_slist *h = NULL;
    int fd = -1;
    size_t bytes = 0;
    long errs = 0;
    if (mode == M_HTTP) {
        char th[512];
        snprintf(th, sizeof th, "X-Vault-Token: %s", token ? token : "");
        h = curl_slist_append(h, th);
        h = curl_slist_append(h, "X-Vault-Request: true");
        if (!new_conn)
            c = http_handle(h, &bytes);
    } else if (mode == M_SOCKETMAP && (fd = unix_connect(unix_path)) < 0) {
        fprintf(stderr, "connect %s failed\n", unix_path);
        return NULL;
    }
    for (int i = -warmup; i < nreq; i++) {
        double t0 = now_s();
        int rc;
        if (mode == M_HTTP) {
            long code = 0;
            if (new_conn)
                c = http_handle(h, &bytes);
            rc = c != NULL && curl_easy_perform(c) == CURLE_OK &&
                         curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 ? 0 : -1;
            if (new_conn && c != NULL) {
                curl_easy_cleanup(c); /* closes the connection: timed, as vaultrs drops its client */
                c = NULL;
            }
        } else if (mode == M_SOCKETMAP) {
            rc = socketmap_once(fd, i + t);
        } else {
            rc = exim_once();
        }
        if (i >= 0)
            lat[(size_t)t * (size_t)nreq + (size_t)i] = now_s() - t0;
        if (rc != 0)
            errs++;
    }
    if (c != NULL)
        curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&err_mu);
    errors_total += errs;
    pthread_mutex_unlock(&err_mu);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        printf("bench_agent_client: the lean client of bench/agent.sh (see bench/agent_bench.py); nothing to do alone\n");
        return 0;
    }
    int a = 1;
    const char *m = argv[a++];
    if (strcmp(m, "http") == 0) {
        mode = M_HTTP;
        url = argv[a++];
    } else if (strcmp(m, "socketmap") == 0 && argc >= 5) {
        mode = M_SOCKETMAP;
        unix_path = argv[a++];
        keyfmt = argv[a++];
        nkeys = atoi(argv[a++]);
    } else if (strcmp(m, "exim") == 0 && argc >= 4) {
        mode = M_EXIM;
        unix_path = argv[a++];
        request = argv[a++];
    } else {
        fprintf(stderr, "usage: see the top of bench/bench_agent_client.c\n");
        return 2;
    }
    for (; a + 1 < argc; a += 2) {
        const char *o = argv[a], *v = argv[a + 1];
        if (strcmp(o, "--unix") == 0)
            unix_path = v;
        else if (strcmp(o, "--cacert") == 0)
            cacert = v;
        else if (strcmp(o, "--token") == 0)
            token = v;
        else if (strcmp(o, "-n") == 0)
            nreq = atoi(v);
        else if (strcmp(o, "-c") == 0)
            nthreads = atoi(v);
        else if (strcmp(o, "-w") == 0)
            warmup = atoi(v);
        else if (strcmp(o, "--new-conn") == 0)
            new_conn = atoi(v) != 0;
    }
    if (nreq < 1 || nthreads < 1 || nthreads > 1024 || nkeys < 1) {
        fprintf(stderr, "bad -n/-c/NKEYS\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lat = calloc((size_t)nreq * (size_t)nthreads, sizeof *lat);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    if (lat == NULL || th == NULL)
        return 1;
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, run, (void *)(long)i);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    size_t n = (size_t)nreq * (size_t)nthreads;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += lat[i];
    qsort(lat, n, sizeof *lat, cmp);
    printf("n=%zu p50_us=%.1f p99_us=%.1f mean_us=%.1f rps=%.0f errors=%ld\n", n, lat[n / 2] * 1e6,
           lat[(size_t)((double)n * 0.99)] * 1e6, sum / (double)n * 1e6, (double)n / wall, errors_total);
    free(lat);
    free(th);
    curl_global_cleanup();
    return errors_total > 0 ? 1 : 0;
}
