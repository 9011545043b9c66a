/*
 * Test harness for the Vault client tests: starts build/vault-dev (HTTPS, port 0, a temp TLS dir),
 * talks to its admin and /v1/sys/dev/ endpoints with plain libcurl + json-c (test side only), and
 * stops it. Header-only so that every tests/unit/test_vault*.c can include it.
 *
 * The root token and every secret used here are listed in tests/test-secrets.d/vault.txt.
 */
#ifndef VAULTDEV_HARNESS_H
#define VAULTDEV_HARNESS_H

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VD_ROOT_TOKEN "root-token-vault-TEST-5e8a1c"

struct vd {
    pid_t pid;
    char addr[256];
    char cacert[512];
    char dir[512];
    char out[600];
};

static inline const char *vd_work_dir(void)
{
    const char *w = getenv("VKS_SUITE_WORK");
    return (w && *w) ? w : "/tmp";
}

static inline void vd_binary(char *out, size_t cap)
{
    const char *root = getenv("ROOT"), *build = getenv("BUILD");
    if (root && *root)
        snprintf(out, cap, "%s/%s/vault-dev", root, build && *build ? build : "build");
    else
        snprintf(out, cap, "%s/vault-dev", build && *build ? build : "build");
}

static inline bool vd_available(void)
{
    char bin[1024];
    vd_binary(bin, sizeof bin);
    return access(bin, X_OK) == 0;
}

/* Starts vault-dev. tls_dir NULL = plain http; extra args NULL-terminated list. */
static inline void vd_start_args(struct vd *d, const char *tls_dir, const char *const *extra)
{
    memset(d, 0, sizeof *d);
    char bin[1024];
    vd_binary(bin, sizeof bin);
    snprintf(d->dir, sizeof d->dir, "%s/vd-XXXXXX", vd_work_dir());
    cr_assert_not_null(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
    snprintf(d->out, sizeof d->out, "%s/stdout.log", d->dir);
    char errf[600];
    snprintf(errf, sizeof errf, "%s/stderr.log", d->dir);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--addr";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--root-token";
    argv[n++] = VD_ROOT_TOKEN;
    if (tls_dir) {
        argv[n++] = "--tls-dir";
        argv[n++] = tls_dir;
    }
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(d->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0)
            _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a test killed by its timeout */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    /* Wait (up to 30 s) for VAULT_ADDR= (and VAULT_CACERT= with TLS) on its stdout. */
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(d->out, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (strncmp(line, "VAULT_ADDR=", 11) == 0)
                    snprintf(d->addr, sizeof d->addr, "%.250s", line + 11);
                else if (strncmp(line, "VAULT_CACERT=", 13) == 0)
                    snprintf(d->cacert, sizeof d->cacert, "%.500s", line + 13);
            }
            fclose(f);
        }
        if (d->addr[0] && (!tls_dir || d->cacert[0]))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            cr_assert_fail("vault-dev exited before it was ready (see %s)", errf);
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    cr_assert_fail("vault-dev did not print VAULT_ADDR within 30 s");
}

static inline void vd_start(struct vd *d, const char *tls_dir)
{
    vd_start_args(d, tls_dir, NULL);
}

static inline void vd_stop(struct vd *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        for (int i = 0; i < 500; i++) {
            if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
                d->pid = 0;
                return;
            }
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

struct vd_buf {
    char *p;
    size_t n;
};

static size_t vd_collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct vd_buf *b = ud;
    size_t n = size * nmemb;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    b->p = q;
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/*
 * One admin request to a vault-dev (root token unless token is given, optional namespace).
 * Returns the HTTP status; *json gets the parsed body (or NULL) when json is non-NULL.
 */
static inline long vd_req(const struct vd *d, const char *method, const char *path, const char *body,
                          const char *token, const char *ns, struct json_object **json)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[2048], th[512], nh[512];
    snprintf(url, sizeof url, "%s/v1/%s", d->addr, path);
    struct curl_slist *h = NULL;
    snprintf(th, sizeof th, "X-Vault-Token: %s", token ? token : VD_ROOT_TOKEN);
    h = curl_slist_append(h, th);
    if (ns) {
        snprintf(nh, sizeof nh, "X-Vault-Namespace: %s", ns);
        h = curl_slist_append(h, nh);
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    struct vd_buf b = { NULL, 0 };
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (d->cacert[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, d->cacert);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, vd_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (json)
        *json = (b.p && b.n) ? json_tokener_parse(b.p) : NULL;
    free(b.p);
    cr_assert_eq(rc, CURLE_OK, "admin %s %s failed: %s", method, path, curl_easy_strerror(rc));
    return status;
}

static inline long vd_admin(const struct vd *d, const char *method, const char *path, const char *body)
{
    return vd_req(d, method, path, body, NULL, NULL, NULL);
}

/* Writes a KV v2 secret (data is a JSON object text); asserts success. */
static inline void vd_kv2_put(const struct vd *d, const char *mount, const char *path, const char *data_json)
{
    char p[1024], b[8192];
    snprintf(p, sizeof p, "%s/data/%s", mount, path);
    snprintf(b, sizeof b, "{\"data\":%s}", data_json);
    long st = vd_admin(d, "POST", p, b);
    cr_assert(st == 200 || st == 204, "write %s: HTTP %ld", p, st);
}

/* Adds a fault rule (JSON text) through /v1/sys/dev/faults. */
static inline void vd_fault(const struct vd *d, const char *rule_json)
{
    long st = vd_admin(d, "POST", "sys/dev/faults", rule_json);
    cr_assert(st == 200 || st == 204, "fault rule refused (HTTP %ld): %s", st, rule_json);
}

/* Sum of the request counters whose "METHOD /v1/path" key starts with key_prefix. */
static inline long vd_count(const struct vd *d, const char *key_prefix)
{
    struct json_object *j = NULL;
    long st = vd_req(d, "GET", "sys/dev/counters", NULL, NULL, NULL, &j);
    cr_assert_eq(st, 200, "counters: HTTP %ld", st);
    struct json_object *data, *ctr;
    long sum = 0;
    if (j && json_object_object_get_ex(j, "data", &data) && json_object_object_get_ex(data, "counters", &ctr)) {
        json_object_object_foreach(ctr, k, v)
        {
            if (strncmp(k, key_prefix, strlen(key_prefix)) == 0)
                sum += (long)json_object_get_int64(v);
        }
    }
    json_object_put(j);
    return sum;
}

static inline void vd_reset_counters(const struct vd *d)
{
    long st = vd_admin(d, "DELETE", "sys/dev/counters", NULL);
    cr_assert(st == 204 || st == 200, "reset counters: HTTP %ld", st);
}

/* A string field of a json object path a.b.c ("" when absent). */
static inline const char *vd_jstr(struct json_object *j, const char *a, const char *b, const char *c)
{
    struct json_object *o = j;
    const char *keys[3] = { a, b, c };
    for (int i = 0; i < 3 && keys[i]; i++)
        if (!o || !json_object_object_get_ex(o, keys[i], &o))
            return "";
    return o ? json_object_get_string(o) : "";
}

#endif
