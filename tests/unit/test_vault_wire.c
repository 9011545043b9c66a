/*
 * The Vault client's requests as they appear on the wire, and its handling of answers vault-dev
 * does not produce: a tiny scripted HTTP server on 127.0.0.1:0 (plain http to loopback) records
 * every request and plays back canned answers.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vks_vault.h"

#define WIRE_TOKEN "hvs.wire-token-TEST-3e9f0a"
#define WIRE_PASSWORD "smtp-pass-TEST-wire-8b4c"

enum { MAX_REQ = 8 };

struct canned {
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
};

struct wire {
    int fd;
    int port;
    pthread_t th;
    struct canned answers[MAX_REQ];
    int nanswers;
    char requests[MAX_REQ][4096];
    int nreq;
};

static void *serve(void *arg)
{
    struct wire *w = arg;
    for (;;) {
        int c = accept(w->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[4096];
        size_t n = 0;
        while (n < sizeof buf - 1) {
            ssize_t r = read(c, buf + n, sizeof buf - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                const char *cl = strcasestr(buf, "Content-Length:");
                size_t want = cl ? (size_t)atoi(cl + 15) : 0;
                if (n >= (size_t)(end + 4 - buf) + want)
                    break;
            }
        }
        buf[n] = '\0';
        int i = w->nreq < MAX_REQ ? w->nreq : MAX_REQ - 1;
        snprintf(w->requests[i], sizeof w->requests[i], "%s", buf);
        struct canned a = i < w->nanswers ? w->answers[i] : (struct canned){ 404, NULL, "{\"errors\":[]}" };
        w->nreq++;
        char head[1024];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n%s\r\n",
                          a.status, strlen(a.body), a.headers ? a.headers : "");
        if (write(c, head, (size_t)hl) < 0 || write(c, a.body, strlen(a.body)) < 0)
            perror("write");
        close(c);
    }
}

static void wire_start(struct wire *w)
{
    w->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(w->fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(w->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(w->fd, 8), 0);
    socklen_t sl = sizeof sa;
    getsockname(w->fd, (struct sockaddr *)&sa, &sl);
    w->port = ntohs(sa.sin_port);
    pthread_create(&w->th, NULL, serve, w);
}

static void wire_stop(struct wire *w)
{
    shutdown(w->fd, SHUT_RDWR);
    close(w->fd);
    pthread_join(w->th, NULL);
}

static struct vks_vault *client(const struct wire *w, long min_wait, long timeout_ms)
{
    char addr[64];
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", w->port);
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = addr;
    c.namespace_ = (char *)"team-a/";
    c.min_retry_wait_ms = min_wait;
    c.max_retry_wait_ms = min_wait * 2;
    c.timeout_ms = timeout_ms;
    cr_assert_eq(vks_secret_dup(WIRE_TOKEN, strlen(WIRE_TOKEN), &c.token, NULL), VKS_OK);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&c.token);
    return v;
}

/* The first request of a static-token client is its lookup-self: answer it with an accessor. */
#define LOOKUP_OK { 200, NULL, "{\"data\":{\"accessor\":\"acc-1234\",\"ttl\":0,\"renewable\":false}}" }
#define KV2(value) "{\"data\":{\"data\":{\"key\":\"" value "\"},\"metadata\":{\"version\":3,\"custom_metadata\":null," \
                   "\"deletion_time\":\"\",\"destroyed\":false}}}"

Test(vault_wire, request_line_and_headers)
{
    struct wire w = { .answers = { LOOKUP_OK, { 200, NULL, KV2(WIRE_PASSWORD) } }, .nanswers = 2 };
    wire_start(&w);
    struct vks_vault *v = client(&w, 10, 5000);
    struct vks_kv_request rq = { .mount = "/secret/", .path = "smtp auth/ex%ample.com", .kv_version = 2, .version = 3 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.value.len, strlen(WIRE_PASSWORD));
    cr_assert(memcmp(r.value.data, WIRE_PASSWORD, r.value.len) == 0);
    cr_assert_str_eq(r.token_accessor, "acc-1234");
    cr_assert_eq(r.secret_version, 3);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    wire_stop(&w);
    cr_assert_eq(w.nreq, 2);
    const char *lk = w.requests[0], *rd = w.requests[1];
    cr_assert(strncmp(lk, "GET /v1/auth/token/lookup-self HTTP/1.1\r\n", 41) == 0, "%.60s", lk);
    cr_assert(strncmp(rd, "GET /v1/secret/data/smtp%20auth/ex%25ample.com?version=3 HTTP/1.1\r\n", 67) == 0,
              "%.80s", rd);
    for (int i = 0; i < 2; i++) {
        cr_assert(strstr(w.requests[i], "\r\nX-Vault-Request: true\r\n"), "X-Vault-Request missing");
        cr_assert(strstr(w.requests[i], "\r\nX-Vault-Token: " WIRE_TOKEN "\r\n"), "X-Vault-Token missing");
        cr_assert(strstr(w.requests[i], "\r\nX-Vault-Namespace: team-a/\r\n"), "X-Vault-Namespace missing");
        cr_assert_null(strcasestr(w.requests[i], "Authorization:"));
    }
}

Test(vault_wire, relative_redirect_is_followed_once)
{
    struct wire w = { .answers = { LOOKUP_OK, { 307, "Location: /v1/secret/data/moved\r\n", "" },
                                   { 200, NULL, KV2(WIRE_PASSWORD) } },
                      .nanswers = 3 };
    wire_start(&w);
    struct vks_vault *v = client(&w, 10, 5000);
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.attempts, 2);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    wire_stop(&w);
    cr_assert(strncmp(w.requests[2], "GET /v1/secret/data/moved HTTP/1.1", 34) == 0, "%.60s", w.requests[2]);
    cr_assert(strstr(w.requests[2], "X-Vault-Token: " WIRE_TOKEN), "the token follows the redirect");
}

Test(vault_wire, second_redirect_and_plain_http_elsewhere_are_refused)
{
    struct wire w = { .answers = { LOOKUP_OK, { 307, "Location: /v1/a\r\n", "" }, { 307, "Location: /v1/b\r\n", "" },
                                   { 307, "Location: http://192.0.2.10:8200/v1/secret/data/x\r\n", "" } },
                      .nanswers = 4 };
    wire_start(&w);
    struct vks_vault *v = client(&w, 10, 5000);
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert(strstr(e.msg, "redirected more than once"), "%s", e.msg);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert(strstr(e.msg, "192.0.2.10") && strstr(e.msg, "refused"), "%s", e.msg);
    vks_vault_free(v);
    wire_stop(&w);
    cr_assert_eq(w.nreq, 4);
}

Test(vault_wire, odd_answers)
{
    char big[6000];
    int n = snprintf(big, sizeof big, "{\"data\":{\"data\":{\"key\":\"");
    memset(big + n, 'A', 4200);
    snprintf(big + n + 4200, sizeof big - (size_t)n - 4200, "\"},\"metadata\":{\"version\":1}}}");
    struct wire w = { .answers = { LOOKUP_OK,
                                   { 200, NULL, big },
                                   { 200, NULL, "{\"lease_duration\":0}" },
                                   { 404, NULL, "<html><body>404 page not found</body></html>" },
                                   { 204, NULL, "" },
                                   { 400, NULL, "{\"errors\":[\"invalid request\"]}" },
                                   { 200, NULL, "{\"data\":{\"data\":{\"key\":\"\"},\"metadata\":{\"version\":2}}}" } },
                      .nanswers = 7 };
    wire_start(&w);
    struct vks_vault *v = client(&w, 10, 5000);
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_BAD_RESPONSE, "%s", e.msg);
    cr_assert(strstr(e.msg, "larger than 4096"), "%s", e.msg);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_BAD_RESPONSE, "%s", e.msg);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    cr_assert(strstr(e.msg, "html") == NULL, "a non-JSON body is not quoted: %s", e.msg);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_BAD_RESPONSE, "%s", e.msg);
    cr_assert(strstr(e.msg, "HTTP 400") && strstr(e.msg, "invalid request"), "%s", e.msg);
    /* an empty string is a valid value */
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.value.len, 0);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    wire_stop(&w);
}

Test(vault_wire, a_backoff_longer_than_the_deadline_reports_the_answer)
{
    struct wire w = { .answers = { LOOKUP_OK, { 503, NULL, "{\"errors\":[\"Vault is sealed\"]}" } }, .nanswers = 2 };
    wire_start(&w);
    struct vks_vault *v = client(&w, 60000, 2000); /* the first retry would wait 60 s, deadline 2 s */
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_SEALED, "%s", e.msg);
    cr_assert_eq(r.attempts, 1);
    vks_vault_free(v);
    wire_stop(&w);
}
