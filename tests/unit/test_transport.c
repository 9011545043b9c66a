/*
 * Every transport fault gets its documented code (docs/errors.md, "Transport faults"), and every one
 * of them is answered from the stale copy when one exists, exactly like an HTTP 500 (issue 10, items
 * 10 and 11). One table drives both checks:
 *   - the faults vault-dev cannot make come from a scripted listener on 127.0.0.1:0 (plain http to
 *     loopback) that answers by mode: not HTTP, a 1 MiB header line, 100 KiB of headers, a reset, a
 *     stall, a cut body, a too-big body, redirects to itself or to a second listener;
 *   - the others come from vault-dev over HTTPS (its /v1/sys/dev/faults rules, a foreign CA) and from
 *     addresses nothing listens on or that do not resolve.
 * A redirect to another authority is refused: the second listener never sees a request, so it never
 * sees X-Vault-Token (nor an AppRole secret_id).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "vaultdev_harness.h"
#include "vks_cache.h"
#include "vks_vault.h"

#define T_TOKEN "hvs.transport-token-TEST-6d2a91"
#define T_PASSWORD "smtp-pass-TEST-transport-0c7e"
#define T_SECRET_ID "approle-secret-id-TEST-transport-5b19"

enum mode {
    M_OK,
    M_NON_HTTP,      /* an SSH banner                                           */
    M_BAD_STATUS,    /* "HTTP/1.1 abc" status line                              */
    M_BIG_HEADER,    /* one 1 MiB header line                                   */
    M_MANY_HEADERS,  /* 100 header lines of 1000 bytes                          */
    M_RESET,         /* reads the request, closes with RST                      */
    M_CLOSE,         /* reads the request, closes without a byte                */
    M_STALL,         /* reads the request, never answers                        */
    M_TRUNCATED,     /* Content-Length 4000, 100 bytes, close                   */
    M_OVERSIZED,     /* a 200 KiB body (the client's cap is 64 KiB)             */
    M_REDIRECT_AWAY, /* 307 to the other listener (absolute URL)                */
    M_REDIRECT_LOOP, /* 307 to itself, every time                               */
    M_REDIRECT_SELF, /* 307 to itself once (absolute URL, same authority), then OK */
    M_REDIRECT_NAME, /* 307 to the same port under the name localhost             */
    M_BODY,          /* lookup-self OK; a read or login answered 200 with `body`   */
    M_STATUS_500,    /* the reference: an HTTP 500                              */
};

#define MAX_REC 64

struct listener {
    int fd;
    int port;
    pthread_t th;
    _Atomic int mode;
    int other_port;          /* target of M_REDIRECT_AWAY                         */
    const char *_Atomic body; /* M_BODY answer                                    */
    atomic_bool redirected;  /* M_REDIRECT_SELF already answered 307              */
    pthread_mutex_t mu;
    char rec[MAX_REC][2048]; /* requests received (head only)                     */
    int nrec;
    int parked[32];          /* M_STALL connections, closed at stop                */
    int nparked;
};

static void send_all(int c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer_json(int c, int status, const char *extra, const char *body)
{
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n%s\r\n",
                      status, strlen(body), extra ? extra : "");
    send_all(c, head, (size_t)hl);
    send_all(c, body, strlen(body));
}

#define LOOKUP_OK "{\"data\":{\"accessor\":\"acc-transport\",\"ttl\":0,\"renewable\":false}}"
#define LOGIN_OK "{\"auth\":{\"client_token\":\"" T_TOKEN "\",\"accessor\":\"acc-t\",\"lease_duration\":3600," \
                 "\"renewable\":true}}"
#define KV2_OK "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{\"version\":1}}}"

static void answer_ok(int c, const char *req)
{
    if (strstr(req, "/v1/auth/token/lookup-self"))
        answer_json(c, 200, NULL, LOOKUP_OK);
    else if (strstr(req, "/login "))
        answer_json(c, 200, NULL, LOGIN_OK);
    else
        answer_json(c, 200, NULL, KV2_OK);
}

static void answer(struct listener *l, int c, const char *req)
{
    int m = atomic_load(&l->mode);
    char extra[256];
    switch (m) {
    case M_OK: answer_ok(c, req); break;
    case M_NON_HTTP: send_all(c, "SSH-2.0-OpenSSH_9.2p1\r\n", 23); break;
    case M_BAD_STATUS: send_all(c, "HTTP/1.1 abc\r\n\r\n", 16); break;
    case M_BIG_HEADER: {
        static char big[(1 << 20) + 16];
        memset(big, 'A', sizeof big);
        memcpy(big, "X-Big: ", 7);
        send_all(c, "HTTP/1.1 200 OK\r\n", 17);
        send_all(c, big, sizeof big);
        send_all(c, "\r\nContent-Length: 2\r\n\r\n{}", 25);
        break;
    }
    case M_MANY_HEADERS: {
        char line[1024];
        memset(line, 'B', sizeof line);
        send_all(c, "HTTP/1.1 200 OK\r\n", 17);
        for (int i = 0; i < 100; i++) {
            int k = snprintf(line, 16, "X-H%03d: ", i);
            line[k] = 'B';
            memcpy(line + 998, "\r\n", 2);
            send_all(c, line, 1000);
        }
        send_all(c, "Content-Length: 2\r\n\r\n{}", 23);
        break;
    }
    case M_RESET: {
        struct linger lg = { 1, 0 };
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        break;
    }
    case M_CLOSE: break;
    case M_STALL:
        pthread_mutex_lock(&l->mu);
        if (l->nparked < 32) {
            l->parked[l->nparked++] = c;
            pthread_mutex_unlock(&l->mu);
            return; /* kept open, never answered */
        }
        pthread_mutex_unlock(&l->mu);
        break;
    case M_TRUNCATED:
        send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n", 74);
        send_all(c, "{\"data\":{\"data\":{\"key\":\"", 25);
        break;
    case M_OVERSIZED: {
        static char body[200 * 1024];
        memset(body, ' ', sizeof body);
        memcpy(body, KV2_OK, strlen(KV2_OK));
        body[sizeof body - 1] = '\0';
        answer_json(c, 200, NULL, body);
        break;
    }
    case M_REDIRECT_AWAY:
        snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/v1/secret/data/x\r\n", l->other_port);
        answer_json(c, 307, extra, "");
        break;
    case M_REDIRECT_LOOP:
        snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/v1/secret/data/x\r\n", l->port);
        answer_json(c, 307, extra, "");
        break;
    case M_REDIRECT_SELF:
        if (strncmp(req, "GET /v1/secret/data/x ", 22) == 0 && !atomic_exchange(&l->redirected, true)) {
            snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/v1/secret/data/moved\r\n", l->port);
            answer_json(c, 307, extra, "");
        } else {
            answer_ok(c, req);
        }
        break;
    case M_REDIRECT_NAME:
        snprintf(extra, sizeof extra, "Location: http://localhost:%d/v1/secret/data/x\r\n", l->port);
        answer_json(c, 307, extra, "");
        break;
    case M_BODY:
        if (strstr(req, "/v1/auth/token/lookup-self"))
            answer_ok(c, req);
        else
            answer_json(c, 200, NULL, atomic_load(&l->body));
        break;
    case M_STATUS_500: answer_json(c, 500, NULL, "{\"errors\":[\"injected\"]}"); break;
    }
    close(c);
}

static void *serve(void *arg)
{
    struct listener *l = arg;
    for (;;) {
        int c = accept(l->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        struct timeval tv = { 5, 0 };
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[8192];
        size_t n = 0;
        while (n < sizeof buf - 1) {
            ssize_t r = read(c, buf + n, sizeof buf - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
            if ((unsigned char)buf[0] == 0x16)
                break; /* a TLS ClientHello: answer it in plain text at once, like an http server */
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                const char *cl = strcasestr(buf, "Content-Length:");
                size_t want = cl ? (size_t)atoi(cl + 15) : 0;
                if (n >= (size_t)(end + 4 - buf) + want)
                    break;
            }
        }
        buf[n] = '\0';
        pthread_mutex_lock(&l->mu);
        if (l->nrec < MAX_REC)
            snprintf(l->rec[l->nrec++], sizeof l->rec[0], "%.2000s", buf);
        pthread_mutex_unlock(&l->mu);
        answer(l, c, buf);
    }
}

static void listener_start(struct listener *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(l->fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(l->fd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(l->fd, (struct sockaddr *)&sa, &sl);
    l->port = ntohs(sa.sin_port);
    pthread_create(&l->th, NULL, serve, l);
}

static void listener_stop(struct listener *l)
{
    shutdown(l->fd, SHUT_RDWR);
    close(l->fd);
    pthread_join(l->th, NULL);
    for (int i = 0; i < l->nparked; i++)
        close(l->parked[i]);
}

static int nrec(struct listener *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->nrec;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* A port nothing listens on: bound, never listened to, kept until the end of the test. */
static int closed_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(*fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(*fd, (struct sockaddr *)&sa, &sl);
    return ntohs(sa.sin_port);
}

static struct vks_vault *client(const char *addr, const char *cacert)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = (char *)addr;
    c.cacert = (char *)cacert;
    c.min_retry_wait_ms = 10;
    c.max_retry_wait_ms = 20;
    c.max_retries = 1;
    c.timeout_ms = 1500;
    c.max_response_bytes = 64 * 1024;
    const char *tok = cacert ? VD_ROOT_TOKEN : T_TOKEN;
    cr_assert_eq(vks_secret_dup(tok, strlen(tok), &c.token, NULL), VKS_OK);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&c.token);
    return v;
}

/* ------------------------------------------------------------------ the cache in front */

struct src {
    struct vks_vault *v;
};

static vks_status fetch(void *s, struct vks_cache_fetch *out, struct vks_err *err)
{
    struct src *src = s;
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    vks_status st = vks_vault_kv_read(src->v, &rq, &r, err);
    if (st != VKS_OK)
        return st;
    out->value = r.value;
    r.value = VKS_SECRET_EMPTY;
    vks_kv_result_free(&r);
    return VKS_OK;
}

static const struct vks_cache_source_ops ops = { .fetch = fetch };

static void cache_init(void)
{
    struct vks_cache_config c;
    vks_cache_config_defaults(&c);
    c.ttl_s = 60;
    c.max_stale_s = 900;
    c.neg_ttl_s = 0;
    c.refresh_fraction = 1;
    struct vks_err e;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_OK, "%s", e.msg);
}

/* ------------------------------------------------------------------ the table */

enum target {
    T_SCRIPTED,    /* the scripted listener, switched to `mode`                            */
    T_TLS_TO_PLAIN,/* https:// to the scripted listener (it answers in plain text)         */
    T_REFUSED,     /* a loopback port nothing listens on                                   */
    T_DNS,         /* a name that does not resolve (.invalid, RFC 6761)                    */
    T_VD_RULE,     /* vault-dev over HTTPS with a /v1/sys/dev/faults rule                  */
    T_VD_OTHER_CA, /* vault-dev over HTTPS, client trusting another CA                     */
};

struct row {
    const char *name;
    enum target target;
    int mode;
    const char *rule;
    vks_status want;
};

static const struct row rows[] = {
    { "connection refused", T_REFUSED, 0, NULL, VKS_E_UNAVAILABLE },
    { "connection reset", T_SCRIPTED, M_RESET, NULL, VKS_E_UNAVAILABLE },
    { "closed without an answer", T_SCRIPTED, M_CLOSE, NULL, VKS_E_UNAVAILABLE },
    { "closed without an answer (vault-dev)", T_VD_RULE, 0,
      "{\"action\":\"close\",\"path_prefix\":\"/v1/secret/\",\"duration_ms\":600000}", VKS_E_UNAVAILABLE },
    { "DNS failure", T_DNS, 0, NULL, VKS_E_UNAVAILABLE },
    { "HTTP 500 (reference)", T_SCRIPTED, M_STATUS_500, NULL, VKS_E_UNAVAILABLE },
    { "HTTP 502 (vault-dev)", T_VD_RULE, 0,
      "{\"action\":\"status\",\"status\":502,\"path_prefix\":\"/v1/secret/\",\"duration_ms\":600000}",
      VKS_E_UNAVAILABLE },
    { "stalled answer", T_SCRIPTED, M_STALL, NULL, VKS_E_TIMEOUT },
    { "TLS handshake with a plain-text server", T_TLS_TO_PLAIN, 0, NULL, VKS_E_TLS },
    { "certificate from another CA", T_VD_OTHER_CA, 0, NULL, VKS_E_TLS },
    { "not HTTP (SSH banner)", T_SCRIPTED, M_NON_HTTP, NULL, VKS_E_BAD_RESPONSE },
    { "not HTTP (bad status line)", T_SCRIPTED, M_BAD_STATUS, NULL, VKS_E_BAD_RESPONSE },
    { "1 MiB header line", T_SCRIPTED, M_BIG_HEADER, NULL, VKS_E_BAD_RESPONSE },
    { "100 KiB of header lines", T_SCRIPTED, M_MANY_HEADERS, NULL, VKS_E_BAD_RESPONSE },
    { "body over max_response_bytes", T_SCRIPTED, M_OVERSIZED, NULL, VKS_E_BAD_RESPONSE },
    { "body over max_response_bytes (vault-dev)", T_VD_RULE, 0,
      "{\"action\":\"oversized\",\"path_prefix\":\"/v1/secret/\",\"duration_ms\":600000,\"size\":300000}",
      VKS_E_BAD_RESPONSE },
    { "body cut short", T_SCRIPTED, M_TRUNCATED, NULL, VKS_E_BAD_RESPONSE },
    { "body cut short (vault-dev)", T_VD_RULE, 0,
      "{\"action\":\"truncate\",\"path_prefix\":\"/v1/secret/\",\"duration_ms\":600000}", VKS_E_BAD_RESPONSE },
    { "HTML instead of JSON (vault-dev)", T_VD_RULE, 0,
      "{\"action\":\"non_json\",\"path_prefix\":\"/v1/secret/\",\"duration_ms\":600000}", VKS_E_BAD_RESPONSE },
    { "redirect to another port", T_SCRIPTED, M_REDIRECT_AWAY, NULL, VKS_E_UNAVAILABLE },
    { "redirect after a redirect", T_SCRIPTED, M_REDIRECT_LOOP, NULL, VKS_E_UNAVAILABLE },
};

static struct vd vd;
static char vd_tls[600], other_ca[600];
static struct listener lst, other;

static void setup(void)
{
    listener_start(&lst);
    listener_start(&other);
    lst.other_port = other.port;
    if (!vd_available())
        return;
    snprintf(vd_tls, sizeof vd_tls, "%s/transport-tls", vd_work_dir());
    mkdir(vd_tls, 0700);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/transport-other-tls", vd_work_dir());
    mkdir(dir, 0700);
    struct vd o;
    vd_start(&o, dir); /* only for its CA */
    snprintf(other_ca, sizeof other_ca, "%s", o.cacert);
    vd_stop(&o);
    vd_start(&vd, vd_tls);
    vd_kv2_put(&vd, "secret", "x", "{\"key\":\"" T_PASSWORD "\"}");
}

static void teardown(void)
{
    vd_stop(&vd);
    listener_stop(&other);
    listener_stop(&lst);
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 120);

/* The client for the good fetch and the one for the faulty fetch of a row (may be the same). */
static void row_clients(const struct row *r, struct vks_vault **good, struct vks_vault **bad, int *fd)
{
    char addr[300];
    *fd = -1;
    if (r->target == T_VD_RULE || r->target == T_VD_OTHER_CA) {
        *good = client(vd.addr, vd.cacert);
        *bad = r->target == T_VD_RULE ? *good : client(vd.addr, other_ca);
        return;
    }
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", lst.port);
    *good = client(addr, NULL);
    switch (r->target) {
    case T_TLS_TO_PLAIN: snprintf(addr, sizeof addr, "https://127.0.0.1:%d", lst.port); break;
    case T_REFUSED: snprintf(addr, sizeof addr, "http://127.0.0.1:%d", closed_port(fd)); break;
    case T_DNS: snprintf(addr, sizeof addr, "https://vks-no-such-host.invalid:8200"); break;
    default: *bad = *good; return;
    }
    *bad = client(addr, NULL);
}

static void start_fault(const struct row *r)
{
    if (r->target == T_SCRIPTED)
        atomic_store(&lst.mode, r->mode);
    else if (r->target == T_VD_RULE)
        vd_fault(&vd, r->rule);
}

static void stop_fault(const struct row *r)
{
    atomic_store(&lst.mode, M_OK);
    if (r->target == T_VD_RULE)
        cr_assert(vd_admin(&vd, "DELETE", "sys/dev/faults", NULL) / 100 == 2);
}

static void run_row(size_t i)
{
    const struct row *r = &rows[i];
    if ((r->target == T_VD_RULE || r->target == T_VD_OTHER_CA) && !vd_available())
        return;
    struct vks_vault *good, *bad;
    int fd;
    row_clients(r, &good, &bad, &fd);
    char id_stale[64], id_cold[64];
    snprintf(id_stale, sizeof id_stale, "row-%zu-stale", i);
    snprintf(id_cold, sizeof id_cold, "row-%zu-cold", i);
    struct src sg = { good }, sb = { bad };
    vks_secret val;
    struct vks_cache_info info;
    struct vks_err e;

    /* a good value first, then let it expire */
    cr_assert_eq(vks_cache_get(id_stale, NULL, &ops, &sg, &val, &info, &e), VKS_OK, "%s: %s", r->name, e.msg);
    vks_secret_free(&val);
    vks_cache_info_release(&info);
    vks_cache_test_advance_clock(61);

    start_fault(r);
    /* no copy: the code itself */
    vks_status st = vks_cache_get(id_cold, NULL, &ops, &sb, &val, &info, &e);
    cr_expect_eq(st, r->want, "%s: got %s (%s), want %s", r->name, vks_status_code(st), e.msg,
                 vks_status_code(r->want));
    cr_expect_eq(info.outcome, VKS_CACHE_ERROR, "%s", r->name);
    if (st == VKS_OK)
        vks_secret_free(&val);
    vks_cache_info_release(&info);
    /* a stale copy: answered from it, the failure named */
    st = vks_cache_get(id_stale, NULL, &ops, &sb, &val, &info, &e);
    cr_expect_eq(st, VKS_OK, "%s: no stale answer: %s (%s)", r->name, vks_status_code(st), e.msg);
    if (st == VKS_OK) {
        cr_expect_eq(info.outcome, VKS_CACHE_STALE, "%s: outcome %s", r->name,
                     vks_cache_outcome_name(info.outcome));
        cr_expect_eq(info.fetch_status, r->want, "%s: stale behind %s", r->name,
                     vks_status_code(info.fetch_status));
        cr_expect(val.len == strlen(T_PASSWORD) && memcmp(val.data, T_PASSWORD, val.len) == 0, "%s", r->name);
        vks_secret_free(&val);
    }
    vks_cache_info_release(&info);
    stop_fault(r);
    if (bad != good)
        vks_vault_free(bad);
    vks_vault_free(good);
    if (fd >= 0)
        close(fd);
}

Test(transport, every_fault_has_its_code_and_is_answered_stale)
{
    cache_init();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(i);
    cr_assert_eq(nrec(&other), 0, "a redirect to another port reached it");
}

/* ------------------------------------------------------------------ item 11: the token stays home */

static struct vks_kv_result read_x(struct vks_vault *v, vks_status want, const char *why)
{
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    vks_status st = vks_vault_kv_read(v, &rq, &r, &e);
    cr_assert_eq(st, want, "%s: %s (%s)", why, vks_status_code(st), e.msg);
    if (st != VKS_OK)
        cr_assert(strstr(e.msg, "refused"), "%s: %s", why, e.msg);
    return r;
}

Test(transport, a_redirect_to_another_authority_is_refused_and_the_token_stays)
{
    char addr[100];
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", lst.port);
    struct vks_vault *v = client(addr, NULL);
    atomic_store(&lst.mode, M_REDIRECT_AWAY);
    read_x(v, VKS_E_UNAVAILABLE, "307 to another port");
    vks_vault_free(v);
    cr_assert_eq(nrec(&other), 0, "the second listener got a request");

    /* localhost is another host name than 127.0.0.1: the authority is compared as written */
    int before = nrec(&lst);
    atomic_store(&lst.mode, M_REDIRECT_NAME);
    v = client(addr, NULL);
    read_x(v, VKS_E_UNAVAILABLE, "307 to the same port under another name");
    vks_vault_free(v);
    cr_assert_eq(nrec(&lst), before + 2, "lookup-self and the read only, the redirect was not followed");

    /* the same authority, written out in full: followed, with the token */
    atomic_store(&lst.redirected, false);
    atomic_store(&lst.mode, M_REDIRECT_SELF);
    v = client(addr, NULL);
    struct vks_kv_result r = read_x(v, VKS_OK, "307 to the same authority");
    cr_assert_eq(r.value.len, strlen(T_PASSWORD));
    vks_kv_result_free(&r);
    vks_vault_free(v);
    pthread_mutex_lock(&lst.mu);
    const char *last = lst.rec[lst.nrec - 1];
    cr_assert(strncmp(last, "GET /v1/secret/data/moved ", 26) == 0, "%.60s", last);
    cr_assert(strstr(last, "X-Vault-Token: " T_TOKEN), "the token follows within the authority");
    pthread_mutex_unlock(&lst.mu);
    atomic_store(&lst.mode, M_OK);
}

Test(transport, an_approle_login_is_not_redirected_elsewhere)
{
    char addr[100];
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", lst.port);
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = addr;
    c.auth = VKS_AUTH_APPROLE;
    c.role_id = (char *)"role-transport";
    c.min_retry_wait_ms = 10;
    c.max_retry_wait_ms = 20;
    c.timeout_ms = 3000;
    cr_assert_eq(vks_secret_dup(T_SECRET_ID, strlen(T_SECRET_ID), &c.secret_id, NULL), VKS_OK);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&c.secret_id);
    atomic_store(&lst.mode, M_REDIRECT_AWAY);
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
    struct vks_kv_result r;
    vks_status st = vks_vault_kv_read(v, &rq, &r, &e);
    cr_assert_eq(st, VKS_E_UNAVAILABLE, "transient, not auth_failed (which would drop cached values): %s (%s)",
                 vks_status_code(st), e.msg);
    cr_assert(strstr(e.msg, "refused"), "%s", e.msg);
    vks_vault_free(v);
    cr_assert_eq(nrec(&other), 0, "the secret_id went to the second listener");
    atomic_store(&lst.mode, M_OK);
}

Test(transport, the_standby_redirect_of_vault_dev_is_refused)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    const char *extra[] = { "--standby-of", vd.addr, NULL };
    struct vd sb;
    vd_start_args(&sb, vd_tls, extra);
    struct vks_vault *v = client(sb.addr, sb.cacert);
    vd_reset_counters(&vd);
    read_x(v, VKS_E_UNAVAILABLE, "standby 307 to the active node");
    cr_assert_eq(vd_count(&vd, "GET /v1/secret"), 0, "the active node got the read (and the token)");
    vks_vault_free(v);
    vd_stop(&sb);
}

/* ------------------------------------------------------------------ item 3: repeated JSON keys */

/* A Vault reply with a repeated key anywhere is bad_response, never a merge of the two: the
 * scanner (vks_json) refuses it whatever the path. Each body would otherwise yield a password. */
Test(transport, vault_replies_with_a_repeated_key_are_bad_response)
{
    static const struct {
        const char *what;
        int kv;
        const char *body;
    } cases[] = {
        { "top level", 2, "{\"data\":{\"data\":{\"key\":\"A-" T_PASSWORD "\"},\"metadata\":{\"version\":1}},"
                          "\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{\"version\":2}}}" },
        { "in data", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{\"version\":1},"
                        "\"data\":{\"other\":\"x\"}}}" },
        { "in data.data", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\",\"user\":\"u\",\"user\":\"v\"}}}" },
        { "the secret's own key", 2, "{\"data\":{\"data\":{\"key\":\"A-" T_PASSWORD "\",\"key\":\"" T_PASSWORD
                                     "\"}}}" },
        { "the secret's key, escaped", 2, "{\"data\":{\"data\":{\"key\":\"A-" T_PASSWORD "\",\"\\u006bey\":\""
                                          T_PASSWORD "\"}}}" },
        { "metadata", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{\"version\":1},"
                         "\"metadata\":{\"version\":2}}}" },
        { "in metadata", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{\"version\":1,"
                            "\"version\":2}}}" },
        { "custom_metadata", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{"
                                "\"custom_metadata\":{\"allowed_domains\":\"a.example\"},\"custom_metadata\":null}}}" },
        { "in custom_metadata", 2, "{\"data\":{\"data\":{\"key\":\"" T_PASSWORD "\"},\"metadata\":{"
                                   "\"custom_metadata\":{\"allowed_domains\":\"a.example\",\"allowed_domains\":\"*\"}}}}" },
        { "KV v1 data", 1, "{\"data\":{\"key\":\"" T_PASSWORD "\"},\"data\":{\"key\":\"B\"},\"lease_duration\":60}" },
        { "KV v1 key", 1, "{\"data\":{\"key\":\"" T_PASSWORD "\",\"key\":\"B\"},\"lease_duration\":60}" },
        { "KV v1 lease_duration", 1, "{\"data\":{\"key\":\"" T_PASSWORD "\"},\"lease_duration\":60,"
                                     "\"lease_duration\":1}" },
    };
    char addr[100];
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", lst.port);
    struct vks_vault *v = client(addr, NULL);
    atomic_store(&lst.mode, M_BODY);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        atomic_store(&lst.body, cases[i].body);
        struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = cases[i].kv };
        struct vks_kv_result r;
        struct vks_err e;
        vks_status st = vks_vault_kv_read(v, &rq, &r, &e);
        cr_expect_eq(st, VKS_E_BAD_RESPONSE, "%s: %s (%s)", cases[i].what, vks_status_code(st), e.msg);
        if (st == VKS_OK)
            vks_kv_result_free(&r);
        else
            cr_expect(strstr(e.msg, "repeated"), "%s: %s", cases[i].what, e.msg);
    }
    /* the KV version detection reply too */
    atomic_store(&lst.body, "{\"data\":{\"type\":\"kv\",\"options\":{\"version\":\"2\"},\"options\":{\"version\":\"1\"}}}");
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 0 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_expect_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_BAD_RESPONSE, "%s", e.msg);
    vks_vault_free(v);
    atomic_store(&lst.mode, M_OK);
}

/* The AppRole login reply: a repeated auth or auth.client_token is refused, no token is taken. */
Test(transport, login_replies_with_a_repeated_key_are_refused)
{
    static const char *const bodies[] = {
        "{\"auth\":{\"client_token\":\"hvs.first-TEST-0000000\",\"client_token\":\"" T_TOKEN "\","
        "\"lease_duration\":3600}}",
        "{\"auth\":{\"client_token\":\"" T_TOKEN "\",\"lease_duration\":3600},\"auth\":null}",
        "{\"auth\":{\"client_token\":\"" T_TOKEN "\",\"accessor\":\"a\",\"accessor\":\"b\"}}",
    };
    char addr[100];
    snprintf(addr, sizeof addr, "http://127.0.0.1:%d", lst.port);
    atomic_store(&lst.mode, M_BODY);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        atomic_store(&lst.body, bodies[i]);
        struct vks_vault_config c;
        vks_vault_config_defaults(&c);
        c.address = addr;
        c.auth = VKS_AUTH_APPROLE;
        c.role_id = (char *)"role-transport";
        c.max_retries = 0;
        c.timeout_ms = 3000;
        cr_assert_eq(vks_secret_dup(T_SECRET_ID, strlen(T_SECRET_ID), &c.secret_id, NULL), VKS_OK);
        struct vks_vault *v = NULL;
        struct vks_err e;
        cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
        vks_secret_free(&c.secret_id);
        struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 2 };
        struct vks_kv_result r;
        vks_status st = vks_vault_kv_read(v, &rq, &r, &e);
        cr_expect_eq(st, VKS_E_BAD_RESPONSE, "body %zu: %s", i, vks_status_code(st));
        cr_expect(strstr(e.msg, "repeated"), "body %zu: %s (%s)", i, vks_status_code(st), e.msg);
        if (st == VKS_OK)
            vks_kv_result_free(&r);
        vks_vault_free(v);
    }
    atomic_store(&lst.mode, M_OK);
}
