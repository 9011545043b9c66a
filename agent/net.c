/*
 * vks-agent network side, loop thread only: unix listeners (mode, group, SO_PEERCRED allow-list),
 * connections with deadlines, request framing for both protocols (proto.c), handing lookups to
 * the pool and writing the replies.
 *
 * Connection states: reading (idle or partial frame: idle/read deadline) -> busy (a job in
 * flight: reading paused, no deadline; the lookup has Vault's own timeout) -> writing (write
 * deadline) -> reading again (socketmap) or closed (exim, errors, drain). A connection closed by
 * the peer while busy is only marked dead; it is freed when its job comes back.
 * Replies are written from arena slots (vks_secret) with write(2) and wiped when sent.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "proto.h"

#define EXIM_REQUEST_MAX 1024
#define REPLY_PLAIN_MAX 600

struct listener {
    enum ag_proto proto;
    char *path;
    struct evconnlistener *ev;
};

struct conn {
    uint64_t id;
    int fd;
    enum ag_proto proto;
    struct ag_peer peer;
    struct event *rev, *wev, *tev;
    char *in;
    size_t inlen, incap;
    bool busy, dead, closing, eof, abort_close;
    vks_secret out;
    size_t out_off;
    struct conn *prev, *next;
};

static struct event_base *g_base;
static struct ag_conf *g_conf;
static struct listener g_lst[AG_LISTENER_COUNT];
static struct conn *g_conns;
static size_t g_nconns;
static uint64_t g_next_id = 1;
static bool g_draining;

static void conn_process(struct conn *c);
static void conn_write(struct conn *c);

struct ag_conf *ag_net_conf(void)
{
    return g_conf;
}

size_t ag_net_connections(void)
{
    return g_nconns;
}

static void arm_timer(struct conn *c, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(c->tev, &tv);
}

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    vks_secret_free(&c->out);
    free(c->in);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->fd < 0)
        return;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->tev);
    c->rev = c->wev = c->tev = NULL;
    if (c->abort_close) {
        struct linger lg = { 1, 0 }; /* RST: Exim sees a read error, not an empty value */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    c->fd = -1;
    g_nconns--;
    ag_metrics_conn(c->proto, -1);
    vks_secret_free(&c->out);
    if (c->busy)
        c->dead = true; /* freed when its job returns */
    else
        conn_free(c);
}

/* Queues a reply of n bytes (copied into an arena slot: it may be a secret). */
static void conn_reply_bytes(struct conn *c, const void *p, size_t n)
{
    struct vks_err ve;
    if (n == 0 || vks_secret_dup(p, n, &c->out, &ve) != VKS_OK) {
        c->abort_close = true;
        conn_close(c);
        return;
    }
    c->out_off = 0;
    conn_write(c);
}

static void conn_reply_word(struct conn *c, const char *word, const char *reason)
{
    char buf[REPLY_PLAIN_MAX];
    size_t n = ag_netstring_reply(buf, sizeof buf, word, reason);
    conn_reply_bytes(c, buf, n);
}

static void on_done_write(struct conn *c)
{
    vks_secret_free(&c->out);
    c->out_off = 0;
    if (c->closing || c->proto == AG_PROTO_EXIM || g_draining) {
        conn_close(c);
        return;
    }
    event_add(c->rev, NULL);
    conn_process(c);
}

static void conn_write(struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->wev, NULL);
            arm_timer(c, g_conf->write_timeout_ms);
            return;
        }
        if (w <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)w;
    }
    event_del(c->wev);
    on_done_write(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_write(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->busy)
        return;
    const char *why = c->out.len > 0 ? "write deadline passed" : c->inlen > 0 ? "read deadline passed (partial request)" : "idle";
    if (c->out.len > 0 || c->inlen > 0) {
        ag_log("info", "%s connection %llu closed: %s", ag_proto_name(c->proto), (unsigned long long)c->id, why);
        ag_metrics_refused(c->proto, c->out.len > 0 ? "write_timeout" : "read_timeout");
    }
    conn_close(c);
}

static void submit(struct conn *c, const char *item, const char *key, size_t kl)
{
    struct ag_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        conn_reply_word(c, c->proto == AG_PROTO_SOCKETMAP ? "TEMP" : "", "out of memory");
        return;
    }
    j->conf = ag_conf_ref(g_conf);
    j->proto = c->proto;
    snprintf(j->item, sizeof j->item, "%s", item);
    memcpy(j->key, key, kl);
    j->key[kl] = '\0';
    j->peer = c->peer;
    j->conn = c;
    j->conn_id = c->id;
    c->busy = true;
    event_del(c->tev);
    /* a cache hit is answered here, on the loop (it cannot block); anything else in the pool */
    if (ag_inline_allowed(j->conf) && ag_lookup_inline(j)) {
        ag_metrics_inline(j->proto);
        ag_pool_complete(j);
    } else
        ag_pool_submit(j);
}

static void fail_protocol(struct conn *c, const char *why)
{
    ag_log("warning", "%s connection %llu (uid %u pid %d): %s", ag_proto_name(c->proto),
           (unsigned long long)c->id, (unsigned)c->peer.uid, (int)c->peer.pid, why);
    ag_metrics_refused(c->proto, "bad_request");
    c->closing = true;
    if (c->proto == AG_PROTO_SOCKETMAP)
        conn_reply_word(c, "PERM", why);
    else
        conn_close(c); /* exim: an empty reply */
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->inlen - n);
    c->inlen -= n;
}

static void process_socketmap(struct conn *c)
{
    const char *payload = NULL, *why = NULL;
    size_t plen = 0, used = 0;
    enum ag_parse r = ag_netstring_parse(c->in, c->inlen, g_conf->max_request, &used, &payload, &plen, &why);
    if (r == AG_PARSE_ERROR) {
        fail_protocol(c, why);
        return;
    }
    if (r == AG_PARSE_MORE) {
        if (c->eof) {
            if (c->inlen > 0)
                ag_log("info", "socketmap connection %llu: closed with a partial request", (unsigned long long)c->id);
            conn_close(c);
            return;
        }
        arm_timer(c, c->inlen > 0 ? g_conf->read_timeout_ms : g_conf->idle_timeout_ms);
        return;
    }
    const char *name, *key;
    size_t nl, kl;
    const struct ag_listener_conf *lc = &g_conf->lst[AG_PROTO_SOCKETMAP];
    if (!ag_socketmap_split(payload, plen, &name, &nl, &key, &kl)) {
        consume(c, used);
        fail_protocol(c, "malformed request (expected \"<map> <key>\")");
        return;
    }
    if (nl != strlen(lc->map) || memcmp(name, lc->map, nl) != 0) {
        ag_log("warning", "socketmap: unknown map name \"%.*s\" (this agent answers \"%s\")",
               (int)(nl > 64 ? 64 : nl), name, lc->map);
        consume(c, used);
        ag_metrics_lookup(AG_PROTO_SOCKETMAP, AG_R_PERM);
        conn_reply_word(c, "PERM", "unknown map name");
        return;
    }
    if (kl == 0 || kl > AG_KEY_MAX) {
        consume(c, used);
        ag_metrics_lookup(AG_PROTO_SOCKETMAP, AG_R_NOTFOUND);
        conn_reply_word(c, "NOTFOUND", "");
        return;
    }
    char keybuf[AG_KEY_MAX + 1];
    memcpy(keybuf, key, kl);
    consume(c, used);
    submit(c, "", keybuf, kl);
}

static void process_exim(struct conn *c)
{
    char *nl = memchr(c->in, '\n', c->inlen);
    if (nl == NULL && !c->eof) {
        if (c->inlen >= EXIM_REQUEST_MAX) {
            fail_protocol(c, "request longer than the limit");
            return;
        }
        arm_timer(c, c->inlen > 0 ? g_conf->read_timeout_ms : g_conf->idle_timeout_ms);
        return;
    }
    size_t n = nl ? (size_t)(nl - c->in) + 1 : c->inlen;
    char item[8];
    const char *host, *why;
    size_t hl;
    if (n == 0 || !ag_exim_request(c->in, n, item, &host, &hl, &why)) {
        fail_protocol(c, n == 0 ? "empty request" : why);
        return;
    }
    if (hl > AG_KEY_MAX) {
        fail_protocol(c, "host too long");
        return;
    }
    char hostbuf[AG_KEY_MAX + 1];
    memcpy(hostbuf, host, hl);
    c->inlen = 0;
    event_del(c->rev); /* one request per connection */
    submit(c, item, hostbuf, hl);
}

static void conn_process(struct conn *c)
{
    if (c->fd < 0 || c->busy || c->out.len > 0)
        return;
    if (g_draining && c->inlen == 0) {
        conn_close(c);
        return;
    }
    if (c->proto == AG_PROTO_SOCKETMAP)
        process_socketmap(c);
    else
        process_exim(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    size_t cap = c->proto == AG_PROTO_SOCKETMAP ? g_conf->max_request + 16 : EXIM_REQUEST_MAX + 1;
    if (c->incap < cap) {
        char *p = realloc(c->in, cap);
        if (p == NULL) {
            conn_close(c);
            return;
        }
        c->in = p;
        c->incap = cap;
    }
    if (c->inlen == c->incap) { /* full while busy or writing: wait for the reply */
        event_del(c->rev);
        return;
    }
    ssize_t r = recv(fd, c->in + c->inlen, c->incap - c->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r < 0) {
        conn_close(c);
        return;
    }
    if (r == 0) {
        c->eof = true;
        event_del(c->rev);
        if (c->busy || c->out.len > 0) {
            if (c->proto == AG_PROTO_SOCKETMAP)
                c->closing = true;
            return;
        }
    }
    c->inlen += (size_t)r;
    conn_process(c);
}

/* A finished lookup, back on the loop thread. */
void ag_net_job_done(struct ag_job *j)
{
    struct conn *c = j->conn;
    ag_metrics_lookup(j->proto, j->result);
    if (j->result == AG_R_TEMP || j->result == AG_R_PERM)
        ag_log("warning", "%s key \"%s\" (uid %u pid %d): %s: %s", ag_proto_name(j->proto), j->key,
               (unsigned)j->peer.uid, (int)j->peer.pid, ag_result_name(j->result), j->why);
    c->busy = false;
    if (c->dead) {
        conn_free(c);
    } else if (j->result == AG_R_OK && j->reply.len > 0) {
        c->out = j->reply; /* the slot moves to the connection */
        j->reply = VKS_SECRET_EMPTY;
        c->out_off = 0;
        conn_write(c);
    } else if (c->proto == AG_PROTO_SOCKETMAP) {
        conn_reply_word(c, ag_result_name(j->result == AG_R_OK ? AG_R_TEMP : j->result),
                        j->result == AG_R_NOTFOUND ? "" : "credential unavailable, see the agent log");
    } else {
        conn_close(c); /* Exim: an empty reply; the documented expansion turns it into a failure */
    }
    vks_secret_free(&j->reply);
    ag_job_clear(j);
    ag_conf_unref(j->conf);
    free(j);
}

bool ag_net_peer_allowed(const struct ag_listener_conf *lc, const struct ag_peer *p)
{
    for (size_t i = 0; i < lc->n_uids; i++)
        if (lc->allow_uids[i] == p->uid)
            return true;
    for (size_t i = 0; i < lc->n_gids; i++)
        if (lc->allow_gids[i] == p->gid)
            return true;
    return false;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen, void *arg)
{
    (void)l;
    (void)sa;
    (void)slen;
    struct listener *ls = arg;
    const struct ag_listener_conf *lc = &g_conf->lst[ls->proto];
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (g_draining || g_nconns >= g_conf->max_connections) {
        ag_metrics_refused(ls->proto, "too_many_connections");
        close(fd);
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0) {
        close(fd);
        return;
    }
    struct ag_peer peer = { cr.pid, cr.uid, cr.gid };
    if (!ag_net_peer_allowed(lc, &peer)) {
        ag_log("warning", "%s: peer uid %u gid %u pid %d is not in the allow-list: refused",
               ag_proto_name(ls->proto), (unsigned)cr.uid, (unsigned)cr.gid, (int)cr.pid);
        ag_metrics_refused(ls->proto, "peer_not_allowed");
        if (ls->proto == AG_PROTO_SOCKETMAP) {
            char buf[96];
            size_t n = ag_netstring_reply(buf, sizeof buf, "PERM", "peer not allowed");
            if (send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* best effort: the connection is refused either way */
            }
        }
        close(fd); /* exim: an empty reply */
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->id = g_next_id++;
    c->fd = fd;
    c->proto = ls->proto;
    c->peer = peer;
    c->rev = event_new(g_base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->wev = event_new(g_base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    c->tev = evtimer_new(g_base, on_timer, c);
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    g_nconns++;
    ag_metrics_conn(c->proto, +1);
    if (c->rev == NULL || c->wev == NULL || c->tev == NULL) {
        conn_close(c);
        return;
    }
    event_add(c->rev, NULL);
    arm_timer(c, g_conf->idle_timeout_ms);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    struct listener *ls = arg;
    ag_log("warning", "%s: accept failed: %s", ag_proto_name(ls->proto), strerror(errno));
}

/* Binds a new listening socket at a temporary name next to the path, sets mode and group, and
 * renames it over the path (atomic for connecting clients). */
int ag_net_bind_unix(const struct ag_listener_conf *lc, const char *name, char *err, size_t n)
{
    struct stat st;
    if (lstat(lc->socket, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        snprintf(err, n, "%s.socket: %s exists and is not a socket", name, lc->socket);
        return -1;
    }
    char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *slash = strrchr(lc->socket, '/');
    int w = snprintf(tmp, sizeof tmp, "%.*s/.vks-agent.%d.tmp", (int)(slash - lc->socket), lc->socket, (int)getpid());
    if (w < 0 || (size_t)w >= sizeof tmp) {
        snprintf(err, n, "%s.socket: path too long", name);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, n, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, tmp, (size_t)w + 1);
    unlink(tmp);
    mode_t old = umask(0177);
    int b = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (b != 0 || chmod(tmp, lc->mode) != 0 || (lc->has_group && chown(tmp, (uid_t)-1, lc->group) != 0) ||
        listen(fd, SOMAXCONN) != 0 || rename(tmp, lc->socket) != 0) {
        snprintf(err, n, "%s.socket: cannot listen on %s: %s", name, lc->socket, strerror(errno));
        unlink(tmp);
        close(fd);
        return -1;
    }
    return fd;
}

static int bind_listener(const struct ag_listener_conf *lc, struct listener *out, char *err, size_t n)
{
    int fd = ag_net_bind_unix(lc, ag_proto_name(lc->proto), err, n);
    if (fd < 0)
        return -1;
    out->proto = lc->proto;
    out->path = strdup(lc->socket);
    out->ev = evconnlistener_new(g_base, on_accept, out, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0 /* already listening (SOMAXCONN) */, fd);
    if (out->ev == NULL || out->path == NULL) {
        snprintf(err, n, "%s.socket: cannot watch the listener", ag_proto_name(lc->proto));
        if (out->ev == NULL)
            close(fd);
        return -1;
    }
    evconnlistener_set_error_cb(out->ev, on_accept_error);
    return 0;
}

static void listener_close(struct listener *l, bool unlink_path)
{
    if (l->ev != NULL)
        evconnlistener_free(l->ev);
    if (unlink_path && l->path != NULL)
        unlink(l->path);
    free(l->path);
    memset(l, 0, sizeof *l);
}

/* Refuses to start over a socket another live process is accepting on. */
static int check_not_in_use(const char *path, char *err, size_t n)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int r = fd >= 0 ? connect(fd, (struct sockaddr *)&sa, sizeof sa) : -1;
    if (fd >= 0)
        close(fd);
    if (r == 0) {
        snprintf(err, n, "%s: another process is listening on this socket", path);
        return -1;
    }
    return 0;
}

int ag_net_open(struct event_base *base, struct ag_conf *conf, char *err, size_t n)
{
    g_base = base;
    g_conf = ag_conf_ref(conf);
    for (int p = 0; p < AG_LISTENER_COUNT; p++) {
        const struct ag_listener_conf *lc = &conf->lst[p];
        if (!lc->enabled)
            continue;
        if (check_not_in_use(lc->socket, err, n) != 0 || bind_listener(lc, &g_lst[p], err, n) != 0) {
            for (int q = 0; q < p; q++)
                listener_close(&g_lst[q], true);
            return -1;
        }
    }
    return 0;
}

int ag_net_reconfigure(struct ag_conf *conf, char *err, size_t n)
{
    struct listener fresh[AG_LISTENER_COUNT];
    memset(fresh, 0, sizeof fresh);
    bool rebind[AG_LISTENER_COUNT];
    for (int p = 0; p < AG_LISTENER_COUNT; p++) {
        rebind[p] = ag_listener_conf_socket_differs(&g_conf->lst[p], &conf->lst[p]);
        if (!rebind[p] || !conf->lst[p].enabled)
            continue;
        bool same_path = g_conf->lst[p].enabled && strcmp(g_conf->lst[p].socket, conf->lst[p].socket) == 0;
        if ((!same_path && check_not_in_use(conf->lst[p].socket, err, n) != 0) ||
            bind_listener(&conf->lst[p], &fresh[p], err, n) != 0) {
            for (int q = 0; q < p; q++)
                if (fresh[q].ev != NULL) /* put the old sockets back where they were not renamed over */
                    listener_close(&fresh[q], !(g_conf->lst[q].enabled &&
                                                strcmp(g_conf->lst[q].socket, conf->lst[q].socket) == 0));
            listener_close(&fresh[p], false);
            return -1;
        }
    }
    for (int p = 0; p < AG_LISTENER_COUNT; p++) {
        if (!rebind[p])
            continue;
        bool same_path = g_lst[p].path != NULL && fresh[p].path != NULL && strcmp(g_lst[p].path, fresh[p].path) == 0;
        listener_close(&g_lst[p], !same_path);
        g_lst[p] = fresh[p];
        if (g_lst[p].ev != NULL)
            evconnlistener_set_cb(g_lst[p].ev, on_accept, &g_lst[p]);
    }
    ag_conf_unref(g_conf);
    g_conf = ag_conf_ref(conf);
    return 0;
}

void ag_net_stop_listening(void)
{
    g_draining = true;
    for (int p = 0; p < AG_LISTENER_COUNT; p++)
        listener_close(&g_lst[p], true);
    /* idle connections go now; busy ones after their reply */
    struct conn *c = g_conns;
    while (c != NULL) {
        struct conn *next = c->next;
        if (c->fd >= 0 && !c->busy && c->out.len == 0)
            conn_close(c);
        else
            c->closing = true;
        c = next;
    }
}

void ag_net_close_all(void)
{
    struct conn *c = g_conns;
    while (c != NULL) {
        struct conn *next = c->next;
        if (c->fd >= 0)
            conn_close(c);
        c = next;
    }
    for (int p = 0; p < AG_LISTENER_COUNT; p++)
        listener_close(&g_lst[p], true);
    ag_conf_unref(g_conf);
    g_conf = NULL;
}
