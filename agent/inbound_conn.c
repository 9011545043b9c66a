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

static void conn_close(struct in_conn *c, const char *why)
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
            conn_close(c, "write failed");
            return;
        }
        c->outoff += (size_t)w;
    }
    if (c->fd < 0)
        return;
    c->outoff = c->outlen = 0;
    event_del(c->wev);
    if (c->closing)
        conn_close(c, NULL);
}

/* Appends a reply line (no secret). Output the client does not read is bounded (OUT_MAX). */
static void reply(struct in_conn *c, const char *s)
{
    size_t n = strlen(s);
    if (c->fd < 0)
        return;
    if (c->outlen + n > OUT_MAX) {
        conn_close(c, "the client does not read its replies");
        return;
    }
    char *o = realloc(c->out, c->outlen + n);
    if (o == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    c->out = o;
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
    flush_out(c);
}

/* ------------------------------------------------------------------ SASL */

static void sasl_fail(struct in_conn *c, unsigned long id, const char *user, const char *reason, bool temp)
{
    char line[600], r[256];
    size_t k = 0;
    for (; reason[k] && k < sizeof r - 1; k++) /* TAB and control characters cannot be in a value */
        r[k] = (unsigned char)reason[k] < 0x20 ? ' ' : reason[k];
    r[k] = '\0';
    snprintf(line, sizeof line, "FAIL\t%lu%s%.255s\treason=%s%s\n", id, user && user[0] ? "\tuser=" : "",
             user ? user : "", r, temp ? "\ttemp" : "");
    reply(c, line);
}

static struct in_req *find_req(struct in_conn *c, unsigned long id)
{
    for (int i = 0; i < IN_REQS; i++)
        if (c->req[i].used && c->req[i].id == id)
            return &c->req[i];
    return NULL;
}

/* Hands the job to a worker: user and password (pw moves into the job). */
static void sasl_submit(struct in_conn *c, const struct in_req *r, const char *user, size_t ul, vks_secret *pw)
{
    struct in_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        vks_secret_free(pw);
        sasl_fail(c, r->id, NULL, "out of memory", true);
        return;
    }
    j->kind = IN_SASL;
    j->conn = c;
    j->id = r->id;
    snprintf(j->user, sizeof j->user, "%.*s", (int)ul, user);
    snprintf(j->rip, sizeof j->rip, "%s", r->rip);
    j->pw = *pw;
    *pw = VKS_SECRET_EMPTY;
    c->pending++;
    in_submit(j);
}

static bool printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return false;
    return n > 0;
}

/* A response for request r (base64 in [d, d+n)): PLAIN's, or LOGIN's user name or password. */
static void sasl_response(struct in_conn *c, struct in_req *r, const char *d, size_t n)
{
    char why[160];
    vks_secret buf;
    struct in_req rq = *r;
    if (ag_sasl_b64(d, n, &buf, why, sizeof why) != 0) {
        memset(r, 0, sizeof *r);
        sasl_fail(c, rq.id, NULL, why, false);
        return;
    }
    if (rq.mech == AG_MECH_LOGIN && rq.stage == 1) {
        if (buf.len > 255 || !printable(buf.data, buf.len)) {
            memset(r, 0, sizeof *r);
            sasl_fail(c, rq.id, NULL, "LOGIN user name must be 1-255 printable characters", false);
        } else {
            snprintf(r->user, sizeof r->user, "%.*s", (int)buf.len, (const char *)buf.data);
            r->stage = 2;
            char line[64];
            snprintf(line, sizeof line, "CONT\t%lu\tUGFzc3dvcmQ6\n", rq.id);
            reply(c, line);
        }
        vks_secret_free(&buf);
        return;
    }
    memset(r, 0, sizeof *r); /* the request is complete either way */
    if (rq.mech == AG_MECH_LOGIN) {
        sasl_submit(c, &rq, rq.user, strlen(rq.user), &buf);
        return;
    }
    size_t uo, ul, po, pl;
    if (ag_sasl_plain_split(&buf, &uo, &ul, &po, &pl, why, sizeof why) != 0 ||
        !printable(buf.data + uo, ul)) {
        vks_secret_free(&buf);
        sasl_fail(c, rq.id, NULL, why[0] ? why : "PLAIN user name is not printable", false);
        return;
    }
    char user[256];
    snprintf(user, sizeof user, "%.*s", (int)ul, (const char *)buf.data + uo);
    memmove(buf.data, buf.data + po, pl); /* the password alone stays in the slot */
    vks_wipe(buf.data + pl, buf.cap - pl);
    buf.len = pl;
    sasl_submit(c, &rq, user, ul, &buf);
}

static void sasl_auth(struct in_conn *c, const struct ag_sasl_line *l)
{
    if (find_req(c, l->id) != NULL) {
        sasl_fail(c, l->id, NULL, "request id already in use", false);
        return;
    }
    if (!l->secured) {
        sasl_fail(c, l->id, NULL, "plaintext mechanisms need TLS: use STARTTLS first", false);
        return;
    }
    struct in_req *r = NULL;
    for (int i = 0; i < IN_REQS && r == NULL; i++)
        if (!c->req[i].used)
            r = &c->req[i];
    if (r == NULL) {
        sasl_fail(c, l->id, NULL, "too many open requests on this connection", false);
        return;
    }
    *r = (struct in_req){ .used = true, .id = l->id, .mech = l->mech, .stage = 1 };
    snprintf(r->rip, sizeof r->rip, "%s", l->rip);
    char line[64];
    if (l->has_resp && l->data_len > 0) {
        sasl_response(c, r, l->data, l->data_len);
    } else {
        snprintf(line, sizeof line, "CONT\t%lu\t%s\n", l->id, l->mech == AG_MECH_LOGIN ? "VXNlcm5hbWU6" : "");
        reply(c, line);
    }
}

static void sasl_line(struct in_conn *c, const char *line, size_t len)
{
    struct ag_sasl_line l;
    bool id_known = false;
    char why[160];
    if (ag_sasl_parse(line, len, &l, &id_known, why, sizeof why) != 0) {
        if (id_known) {
            struct in_req *r = find_req(c, l.id);
            if (r)
                memset(r, 0, sizeof *r);
            sasl_fail(c, l.id, NULL, why, false);
        } else {
            conn_close(c, why);
        }
        return;
    }
    if (!c->versioned && l.cmd != AG_SASL_VERSION) {
        conn_close(c, "the first line must be VERSION");
        return;
    }
    struct in_req *r;
    switch (l.cmd) {
    case AG_SASL_VERSION:
        if (l.major != 1)
            conn_close(c, "protocol major version is not 1");
        c->versioned = true;
        break;
    case AG_SASL_CPID:
        break;
    case AG_SASL_AUTH:
        sasl_auth(c, &l);
        break;
    case AG_SASL_CONT:
        if ((r = find_req(c, l.id)) == NULL)
            sasl_fail(c, l.id, NULL, "no such request waiting for a continuation", false);
        else
            sasl_response(c, r, l.data ? l.data : "", l.data_len);
        break;
    }
}

/* ------------------------------------------------------------------ policy */

static void policy_request(struct in_conn *c)
{
    struct ag_policy_req *p = &c->pol;
    char line[400];
    if (p->bad || !p->has_request || strcmp(p->request, "smtpd_access_policy") != 0) {
        snprintf(line, sizeof line, "action=DEFER_IF_PERMIT 4.7.1 vks-agent: malformed policy request: %.200s\n\n",
                 p->bad ? p->why : "request=smtpd_access_policy is missing");
        ag_log("warning", "inbound.policy: %s", line);
        reply(c, line);
    } else if (p->sasl_username[0] == '\0') {
        reply(c, "action=DUNNO\n\n"); /* not authenticated: other restrictions decide */
    } else {
        struct in_job *j = calloc(1, sizeof *j);
        if (j == NULL) {
            reply(c, "action=DEFER_IF_PERMIT 4.3.0 vks-agent: out of memory\n\n");
        } else {
            j->kind = IN_POLICY;
            j->conn = c;
            snprintf(j->user, sizeof j->user, "%s", p->sasl_username);
            snprintf(j->sender, sizeof j->sender, "%s", p->sender);
            snprintf(j->rip, sizeof j->rip, "%s", p->client_address);
            c->pending++;
            in_submit(j);
        }
    }
    ag_policy_reset(p);
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
            sasl_line(c, (const char *)c->in.data, len);
        else if (ag_policy_feed(&c->pol, (const char *)c->in.data, len) == 1)
            policy_request(c);
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
        conn_close(c, "out of locked memory for the input buffer");
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
        conn_close(c, r < 0 ? "read failed" : NULL);
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
            reply(c, "action=DEFER_IF_PERMIT 4.7.1 vks-agent: policy request line too long\n\n");
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
    conn_close(c, c->outoff < c->outlen ? "the client did not read its replies within read_timeout"
                  : c->inlen > 0        ? "a partial line was not completed within read_timeout"
                  : c->kind == IN_SASL && !c->versioned ? "no VERSION line within read_timeout"
                                        : NULL); /* idle: closed quietly */
}

/* ------------------------------------------------------------------ finished jobs */

static const char *client_reason(enum vks_inbound_outcome o)
{
    switch (o) { /* what the SMTP client may learn: no difference between unknown user and password */
    case VKS_IN_SOURCE_REFUSED: return "login not allowed from this address";
    case VKS_IN_LOCKED: return "too many failed logins, try again later";
    case VKS_IN_TEMP: return "temporary authentication failure";
    default: return "authentication failed";
    }
}

static void sasl_done(struct in_conn *c, struct in_job *j)
{
    char line[600];
    ag_log(j->ans.outcome == VKS_IN_OK ? "info" : "notice", "inbound.sasl: login %.255s from %s: %s%s%s%s",
           j->user, j->rip[0] ? j->rip : "?", vks_inbound_outcome_name(j->ans.outcome), j->ans.cached ? " (cached)" : "",
           j->ans.reason[0] ? ": " : "", j->ans.reason);
    if (j->ans.outcome == VKS_IN_OK) {
        snprintf(line, sizeof line, "OK\t%lu\tuser=%s\n", j->id, j->ans.username);
        reply(c, line);
    } else {
        sasl_fail(c, j->id, j->user, client_reason(j->ans.outcome), j->ans.outcome == VKS_IN_TEMP);
    }
}

static void policy_done(struct in_conn *c, struct in_job *j)
{
    char line[900];
    const char *at = strrchr(j->sender, '@');
    switch (j->ans.outcome) {
    case VKS_IN_OK:
        snprintf(line, sizeof line, "action=DUNNO\n\n");
        break;
    case VKS_IN_SENDER_REFUSED:
        snprintf(line, sizeof line, "action=REJECT 5.7.1 sender domain %.253s is not allowed for login %.255s\n\n",
                 at && at[1] ? at + 1 : "(none)", j->user);
        break;
    case VKS_IN_TEMP:
        snprintf(line, sizeof line, "action=DEFER_IF_PERMIT 4.7.1 credential store unavailable, try again later\n\n");
        break;
    default:
        snprintf(line, sizeof line, "action=REJECT 5.7.1 the credential of login %.255s is not valid\n\n", j->user);
        break;
    }
    if (j->ans.outcome != VKS_IN_OK)
        ag_log("notice", "inbound.policy: login %.255s sender <%.300s>: %s: %s", j->user, j->sender,
               vks_inbound_outcome_name(j->ans.outcome), j->ans.reason);
    for (char *p = line; *p; p++) /* the action is one line: nothing from the request may break it */
        if ((unsigned char)*p < 0x20 && p[0] != '\n')
            *p = ' ';
    reply(c, line);
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
            sasl_done(c, j);
        else
            policy_done(c, j);
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
    conn_close(old, "inbound.max_connections reached: the connection idle the longest makes room");
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
        conn_close(c, "out of memory");
        return;
    }
    event_add(c->rev, NULL);
    if (k == IN_SASL) { /* the server speaks first: its handshake */
        char hs[400];
        size_t n = ag_sasl_handshake(hs, sizeof hs, (unsigned long)c->id);
        hs[n] = '\0';
        reply(c, hs);
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
