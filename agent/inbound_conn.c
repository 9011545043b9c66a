/*
 * vks-agent inbound connections (agent/inbound_int.h): the unix listeners of [inbound.sasl] and
 * [inbound.policy], peer checks (SO_PEERCRED against allow_users/allow_groups), one line at a time
 * with AG_SASL_LINE_MAX / AG_POLICY_LINE_MAX, at most one job in flight per connection (further
 * lines wait in the buffer), and deadlines: a partial line must complete within read_timeout,
 * output must drain within read_timeout, a connection idle for idle_timeout is closed. At
 * max_connections the connection idle the longest is closed to admit a new one (idle clients
 * cannot lock Postfix out); when none is idle the new one is refused. Loop thread only.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "inbound_int.h"

#define OUT_MAX (64 * 1024)

static struct event_base *g_base;
static struct evconnlistener *g_lst[2];
static char *g_path[2];
static struct in_conn *g_conns;
static size_t g_n;
static uint64_t g_next_id = 1;

static const char *kind_name(enum in_kind k)
{
    return k == IN_SASL ? "inbound.sasl" : "inbound.policy";
}

size_t in_conn_count(void)
{
    return g_n;
}

static void conn_free(struct in_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    vks_secret_free(&c->in);
    for (int i = 0; i < IN_REQS; i++)
        memset(&c->req[i], 0, sizeof c->req[i]);
    free(c->out);
    free(c);
}

static void free_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

void in_conn_close(struct in_conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    if (why != NULL)
        ag_log("warning", "%s: connection %llu (pid %d): %s; closed", kind_name(c->kind), (unsigned long long)c->id,
               (int)c->peer.pid, why);
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->tev);
    close(c->fd);
    c->fd = -1;
    g_n--;
    vks_secret_free(&c->in);
    c->inlen = 0;
    c->dead = true; /* freed when its job returns, or on the next loop pass: callers up the stack
                       may still look at c->fd */
    if (c->pending == 0 && event_base_once(g_base, -1, EV_TIMEOUT, free_later, c, NULL) != 0)
        ag_log("error", "inbound: cannot schedule a connection's release (leaked)");
}

/* The next deadline: output drain, partial line, or idle. */
static void arm(struct in_conn *c)
{
    int64_t now = in_now_ms(), at;
    if (c->pending > 0) {
        event_del(c->tev); /* the job has its own deadline (verify_timeout, Vault's timeout) */
        return;
    }
    if (c->outoff < c->outlen)
        at = c->last_ms + in_conf->read_timeout_ms;
    else if (c->inlen > 0)
        at = c->partial_ms + in_conf->read_timeout_ms;
    else
        at = c->last_ms + in_conf->idle_timeout_ms;
    if (c->kind == IN_SASL && !c->versioned && c->accept_ms + in_conf->read_timeout_ms < at)
        at = c->accept_ms + in_conf->read_timeout_ms;
    long ms = at > now ? (long)(at - now) : 0;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(c->tev, &tv);
}

static void flush_out(struct in_conn *c)
{
    while (c->fd >= 0 && c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->wev, NULL);
            return;
        }
        if (w <= 0) {
            in_conn_close(c, "write failed");
            return;
        }
        c->outoff += (size_t)w;
    }
    if (c->fd < 0)
        return;
    c->outoff = c->outlen = 0;
    event_del(c->wev);
    if (c->closing)
        in_conn_close(c, NULL);
}

/* Appends a reply line (no secret). Output the client does not read is bounded (OUT_MAX). */
void in_reply(struct in_conn *c, const char *s)
{
    size_t n = strlen(s);
    if (c->fd < 0)
        return;
    if (c->outlen + n > OUT_MAX) {
        in_conn_close(c, "the client does not read its replies");
        return;
    }
    char *o = realloc(c->out, c->outlen + n);
    if (o == NULL) {
        in_conn_close(c, "out of memory");
        return;
    }
    c->out = o;
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
    flush_out(c);
}

/* ------------------------------------------------------------------ input */

static void process(struct in_conn *c)
{
    while (c->fd >= 0 && c->pending == 0 && c->inlen > 0) {
        unsigned char *nl = memchr(c->in.data, '\n', c->inlen);
        if (nl == NULL)
            break;
        size_t len = (size_t)(nl - c->in.data);
        if (c->kind == IN_SASL)
            in_sasl_line(c, (const char *)c->in.data, len);
        else if (ag_policy_feed(&c->pol, (const char *)c->in.data, len) == 1)
            in_policy_request(c);
        if (c->fd < 0)
            return;
        memmove(c->in.data, nl + 1, c->inlen - len - 1);
        c->inlen -= len + 1;
        vks_wipe(c->in.data + c->inlen, len + 1);
        c->partial_ms = in_now_ms();
    }
    if (c->fd >= 0 && c->inlen == 0)
        vks_secret_free(&c->in); /* nothing buffered: the slot goes back, wiped */
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct in_conn *c = arg;
    size_t cap = c->kind == IN_SASL ? AG_SASL_LINE_MAX + 1 : AG_POLICY_LINE_MAX + 1;
    if (c->in.data == NULL && vks_secret_alloc(cap, &c->in, NULL) != VKS_OK) {
        in_conn_close(c, "out of locked memory for the input buffer");
        return;
    }
    if (c->inlen == cap) { /* a job is pending and the buffer is full: wait for the job */
        event_del(c->rev);
        return;
    }
    ssize_t r = recv(fd, c->in.data + c->inlen, cap - c->inlen, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        in_conn_close(c, r < 0 ? "read failed" : NULL);
        return;
    }
    if (c->inlen == 0)
        c->partial_ms = in_now_ms();
    c->inlen += (size_t)r;
    c->last_ms = in_now_ms();
    process(c);
    if (c->fd >= 0 && c->pending == 0 && c->inlen == cap) {
        char why[96];
        snprintf(why, sizeof why, "a line longer than %zu bytes", cap - 1);
        if (c->kind == IN_POLICY)
            in_reply(c, "action=DEFER_IF_PERMIT 4.7.1 vks-agent: policy request line too long\n\n");
        c->closing = true;
        ag_log("warning", "%s: connection %llu: %s; closing", kind_name(c->kind), (unsigned long long)c->id, why);
        vks_secret_free(&c->in);
        c->inlen = 0;
        event_del(c->rev);
        flush_out(c);
    }
    if (c->fd >= 0)
        arm(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct in_conn *c = arg;
    c->last_ms = in_now_ms();
    flush_out(c);
    if (c->fd >= 0)
        arm(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct in_conn *c = arg;
    in_conn_close(c, c->outoff < c->outlen ? "the client did not read its replies within read_timeout"
                  : c->inlen > 0        ? "a partial line was not completed within read_timeout"
                  : c->kind == IN_SASL && !c->versioned ? "no VERSION line within read_timeout"
                                        : NULL); /* idle: closed quietly */
}

void in_conn_job_done(struct in_job *j)
{
    struct in_conn *c = j->conn;
    c->pending--;
    if (c->dead) {
        if (c->pending == 0)
            conn_free(c);
    } else {
        c->last_ms = in_now_ms();
        if (j->kind == IN_SASL)
            in_sasl_done(c, j);
        else
            in_policy_done(c, j);
        if (c->fd >= 0) {
            process(c); /* lines that waited for this job */
            if (c->fd >= 0) {
                event_add(c->rev, NULL);
                arm(c);
            }
        }
    }
    vks_secret_free(&j->pw);
    free(j);
}

/* ------------------------------------------------------------------ listeners */

/* At the limit: a connection idle the longest (no job, nothing buffered) makes room; SASL
 * connections that never sent VERSION (Postfix sends it at once) go first. */
static bool make_room(enum in_kind k)
{
    if (g_n < (size_t)in_conf->max_connections)
        return true;
    struct in_conn *old = NULL;
    for (struct in_conn *c = g_conns; c != NULL; c = c->next) {
        if (c->fd < 0 || c->pending > 0 || c->inlen > 0)
            continue;
        bool c_first = c->kind == IN_SASL && !c->versioned;
        bool o_first = old != NULL && old->kind == IN_SASL && !old->versioned;
        if (old == NULL || (c_first && !o_first) || (c_first == o_first && c->last_ms < old->last_ms))
            old = c;
    }
    if (old == NULL) {
        ag_log("warning", "%s: %zu connections, none idle: new connection refused", kind_name(k), g_n);
        return false;
    }
    in_conn_close(old, "inbound.max_connections reached: the connection idle the longest makes room");
    return true;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen, void *arg)
{
    (void)l;
    (void)sa;
    (void)slen;
    enum in_kind k = (enum in_kind)(intptr_t)arg;
    const struct ag_listener_conf *lc = k == IN_SASL ? &in_conf->sasl : &in_conf->policy;
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0) {
        close(fd);
        return;
    }
    struct ag_peer peer = { cr.pid, cr.uid, cr.gid };
    if (!ag_net_peer_allowed(lc, &peer)) {
        ag_log("warning", "%s: peer uid %u gid %u pid %d is not in the allow-list: refused", kind_name(k),
               (unsigned)cr.uid, (unsigned)cr.gid, (int)cr.pid);
        close(fd);
        return;
    }
    struct in_conn *c = make_room(k) ? calloc(1, sizeof *c) : NULL;
    if (c == NULL) {
        close(fd);
        return;
    }
    c->id = g_next_id++;
    c->fd = fd;
    c->kind = k;
    c->peer = peer;
    c->last_ms = c->accept_ms = in_now_ms();
    c->rev = event_new(g_base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(g_base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->tev = evtimer_new(g_base, on_timer, c);
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    g_n++;
    if (c->rev == NULL || c->wev == NULL || c->tev == NULL) {
        in_conn_close(c, "out of memory");
        return;
    }
    event_add(c->rev, NULL);
    if (k == IN_SASL) { /* the server speaks first: its handshake */
        char hs[400];
        size_t n = ag_sasl_handshake(hs, sizeof hs, (unsigned long)c->id);
        hs[n] = '\0';
        in_reply(c, hs);
    }
    if (c->fd >= 0)
        arm(c);
}

int in_conn_open(struct event_base *base, const struct ag_inbound_conf *c, char *err, size_t n)
{
    g_base = base;
    const struct ag_listener_conf *lc[2] = { &c->sasl, &c->policy };
    for (int k = 0; k < 2; k++) {
        if (!lc[k]->enabled)
            continue;
        int fd = ag_net_bind_unix(lc[k], kind_name((enum in_kind)k), err, n);
        if (fd < 0)
            return -1;
        g_lst[k] = evconnlistener_new(base, on_accept, (void *)(intptr_t)k, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                      0, fd);
        g_path[k] = strdup(lc[k]->socket);
        if (g_lst[k] == NULL || g_path[k] == NULL) {
            snprintf(err, n, "%s: cannot watch the listener", kind_name((enum in_kind)k));
            if (g_lst[k] == NULL)
                close(fd);
            return -1;
        }
        ag_log("info", "%s listening on %s", kind_name((enum in_kind)k), lc[k]->socket);
    }
    return 0;
}

void in_conn_stop_listening(void)
{
    for (int k = 0; k < 2; k++) {
        if (g_lst[k] != NULL)
            evconnlistener_free(g_lst[k]);
        if (g_path[k] != NULL)
            unlink(g_path[k]);
        free(g_path[k]);
        g_lst[k] = NULL;
        g_path[k] = NULL;
    }
}

void in_conn_close_all(void)
{
    while (g_conns != NULL) { /* at exit: the loop has stopped, so release at once */
        struct in_conn *c = g_conns;
        if (c->fd >= 0) {
            event_free(c->rev);
            event_free(c->wev);
            event_free(c->tev);
            close(c->fd);
            g_n--;
        }
        conn_free(c);
    }
}
