/*
 * vks_host.smtp: a small SMTP client that proves a relay credential works: connect, greeting,
 * EHLO, STARTTLS (OpenSSL), EHLO again, AUTH PLAIN, QUIT. No message is ever sent.
 *
 * check_auth{ host=, port=, ehlo_name=, enable_tls=, username=, password=, cafile=,
 *             allow_smtp_auth_plain_without_tls=, allow_smtp_auth_plain_without_valid_certificate=,
 *             timeout_ms= }
 *   -> { ok=bool, stage=, code=, reply=, error=, tls=bool, tls_verified=bool, tls_version=,
 *        verify_error=, auth_attempted=bool, transcript=string }
 *
 * enable_tls follows KumoMTA: Opportunistic (default; STARTTLS when offered, invalid certificate
 * fails), OpportunisticInsecure, Required, RequiredInsecure, Disabled. AUTH PLAIN is refused
 * without TLS unless allow_smtp_auth_plain_without_tls, and over TLS whose certificate was not
 * validated unless allow_smtp_auth_plain_without_valid_certificate (KumoMTA's two checks).
 *
 * The password: the session runs without any Lua call (the transcript is collected in C and pushed
 * at the end), so no Lua error can unwind past live secret bytes. "\0user\0password" and its
 * base64 form are built in a private mapping that is mlock'ed (best effort) and MADV_DONTDUMP,
 * written with one SSL_write/send, then wiped with explicit_bzero and unmapped. The transcript shows
 * "AUTH PLAIN <redacted>". (The password also exists as the Lua string the caller passed in; the
 * policy host drops its reference right after this call.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <fcntl.h>

#include "host.h"

#define LINE_MAX_LEN 4096
#define TRANSCRIPT_MAX (32 * 1024)
#define REPLY_MAX 2048
#define PASSWORD_MAX 4096
#define USERNAME_MAX 1024

enum tls_mode { TLS_OPPORTUNISTIC, TLS_OPPORTUNISTIC_INSECURE, TLS_REQUIRED, TLS_REQUIRED_INSECURE,
                TLS_DISABLED };

struct opts {
    const char *host;
    int port;
    const char *ehlo_name;
    enum tls_mode tls;
    const char *username;
    size_t username_len;
    const char *password;
    size_t password_len;
    const char *cafile;
    bool allow_without_tls;
    bool allow_invalid_cert;
    int timeout_ms;
};

struct result {
    bool ok;
    const char *stage;
    int code;
    char reply[REPLY_MAX];
    char error[512];
    bool tls;
    bool tls_verified;
    bool auth_attempted;
    char tls_version[32];
    char verify_error[160];
};

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char buf[8192];
    size_t len;
    char *transcript;
    size_t tlen;
};

static void tr_add(struct conn *c, const char *prefix, const char *text, size_t n)
{
    if (c->transcript == NULL)
        return;
    size_t need = strlen(prefix) + n + 1;
    if (c->tlen + need + 1 > TRANSCRIPT_MAX)
        return;
    memcpy(c->transcript + c->tlen, prefix, strlen(prefix));
    c->tlen += strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        c->transcript[c->tlen++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    c->transcript[c->tlen++] = '\n';
    c->transcript[c->tlen] = '\0';
}

static bool fail(struct result *r, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(struct result *r, const char *stage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->stage = stage;
    r->ok = false;
    return false;
}

static void ssl_error_text(char *out, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(out, n, "%s", errno ? strerror(errno) : "connection closed");
    else
        ERR_error_string_n(e, out, n);
    ERR_clear_error();
}

static bool conn_connect(struct conn *c, const struct opts *o, struct result *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(o->host, port, &hints, &res);
    if (gai != 0)
        return fail(r, "connect", "cannot resolve %s: %s", o->host, gai_strerror(gai));
    int last = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int pr = poll(&p, 1, o->timeout_ms);
            if (pr == 1) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                rc = soerr == 0 ? 0 : -1;
                errno = soerr;
            } else {
                rc = -1;
                if (pr == 0 || errno == 0)
                    errno = ETIMEDOUT;
            }
        }
        if (rc == 0) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            struct timeval tv = { .tv_sec = o->timeout_ms / 1000,
                                  .tv_usec = (o->timeout_ms % 1000) * 1000 };
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            c->fd = fd;
            freeaddrinfo(res);
            return true;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return fail(r, "connect", "cannot connect to %s port %d: %s", o->host, o->port,
                strerror(last ? last : ECONNREFUSED));
}

static bool conn_write(struct conn *c, const void *data, size_t n, struct result *r)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w;
        if (c->ssl != NULL) {
            int k = SSL_write(c->ssl, p, (int)n);
            if (k <= 0) {
                char e[200];
                ssl_error_text(e, sizeof e);
                return fail(r, r->stage, "TLS write failed: %s", e);
            }
            w = k;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return fail(r, r->stage, "write failed: %s", strerror(errno));
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool send_cmd(struct conn *c, const char *cmd, struct result *r)
{
    char line[LINE_MAX_LEN];
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    if (n < 0 || (size_t)n >= sizeof line)
        return fail(r, r->stage, "command too long");
    tr_add(c, "C: ", cmd, strlen(cmd));
    return conn_write(c, line, (size_t)n, r);
}

static bool fill(struct conn *c, struct result *r)
{
    if (c->len >= sizeof c->buf)
        return fail(r, r->stage, "reply line longer than %zu bytes", sizeof c->buf);
    ssize_t k;
    for (;;) {
        if (c->ssl != NULL) {
            int m = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
            if (m <= 0) {
                char e[200];
                ssl_error_text(e, sizeof e);
                return fail(r, r->stage, "TLS read failed: %s", e);
            }
            k = m;
        } else {
            k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return fail(r, r->stage, "read failed: %s",
                            errno == EAGAIN ? "timed out" : strerror(errno));
            if (k == 0)
                return fail(r, r->stage, "connection closed by the server");
        }
        break;
    }
    c->len += (size_t)k;
    return true;
}

/* Reads one (possibly multi-line) reply. Lines are joined with '\n' into r->reply; caps, when
 * non-NULL, receives the text of every line (EHLO keywords), one per '\n'. */
static bool read_reply(struct conn *c, int *code, struct result *r, char *caps, size_t capsn)
{
    size_t rl = 0;
    r->reply[0] = '\0';
    if (caps)
        caps[0] = '\0';
    size_t cl = 0;
    for (int lines = 0; lines < 200; lines++) {
        char *nl;
        while ((nl = memchr(c->buf, '\n', c->len)) == NULL)
            if (!fill(c, r))
                return false;
        size_t n = (size_t)(nl - c->buf);
        size_t ln = n > 0 && c->buf[n - 1] == '\r' ? n - 1 : n;
        char line[LINE_MAX_LEN];
        if (ln >= sizeof line)
            return fail(r, r->stage, "reply line too long");
        memcpy(line, c->buf, ln);
        line[ln] = '\0';
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        tr_add(c, "S: ", line, ln);
        if (ln < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
            line[2] < '0' || line[2] > '9' || (ln > 3 && line[3] != ' ' && line[3] != '-'))
            return fail(r, r->stage, "malformed reply line from the server");
        *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        const char *text = ln > 4 ? line + 4 : "";
        if (rl > 0 && rl + 1 < sizeof r->reply)
            r->reply[rl++] = '\n';
        int w = snprintf(r->reply + rl, sizeof r->reply - rl, "%.3s%s%s", line,
                         *text ? " " : "", text);
        if (w > 0)
            rl = rl + (size_t)w < sizeof r->reply ? rl + (size_t)w : sizeof r->reply - 1;
        if (caps && cl + strlen(text) + 2 < capsn) {
            cl += (size_t)snprintf(caps + cl, capsn - cl, "%s\n", text);
        }
        r->code = *code;
        if (ln == 3 || line[3] == ' ')
            return true;
    }
    return fail(r, r->stage, "reply with too many lines");
}

static bool has_cap(const char *caps, const char *kw, const char *param)
{
    const char *p = caps;
    size_t kl = strlen(kw);
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= kl && strncasecmp(p, kw, kl) == 0 && (n == kl || p[kl] == ' ' || p[kl] == '=')) {
            if (param == NULL)
                return true;
            /* look for the parameter among the words that follow */
            const char *q = p + kl;
            const char *end = p + n;
            size_t pl = strlen(param);
            while (q < end) {
                while (q < end && (*q == ' ' || *q == '='))
                    q++;
                const char *w = q;
                while (q < end && *q != ' ')
                    q++;
                if ((size_t)(q - w) == pl && strncasecmp(w, param, pl) == 0)
                    return true;
            }
        }
        p = e ? e + 1 : NULL;
    }
    return false;
}

static bool is_ip_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static bool start_tls(struct conn *c, const struct opts *o, struct result *r)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return fail(r, "tls", "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (o->cafile != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->cafile, NULL) != 1)
            return fail(r, "tls", "cannot load CA file %s", o->cafile);
    } else {
        SSL_CTX_set_default_verify_paths(c->ctx);
    }
    /* verify, but decide afterwards: the insecure modes may continue without a valid chain */
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL)
        return fail(r, "tls", "cannot create a TLS session");
    SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (is_ip_literal(o->host)) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, o->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, o->host);
        SSL_set1_host(c->ssl, o->host);
    }
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        char e[200];
        ssl_error_text(e, sizeof e);
        SSL_free(c->ssl);
        c->ssl = NULL;
        return fail(r, "tls", "TLS handshake with %s failed: %s", o->host, e);
    }
    r->tls = true;
    snprintf(r->tls_version, sizeof r->tls_version, "%s", SSL_get_version(c->ssl));
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    long vr = SSL_get_verify_result(c->ssl);
    r->tls_verified = peer != NULL && vr == X509_V_OK;
    if (!r->tls_verified)
        snprintf(r->verify_error, sizeof r->verify_error, "%s",
                 peer == NULL ? "no peer certificate" : X509_verify_cert_error_string(vr));
    X509_free(peer);
    return true;
}

/* AUTH PLAIN with the credential only in a locked, non-dumpable private mapping. */
static bool auth_plain(struct conn *c, const struct opts *o, struct result *r)
{
    size_t raw = 1 + o->username_len + 1 + o->password_len;
    size_t b64 = 4 * ((raw + 2) / 3);
    size_t need = raw + 11 + b64 + 3;
    long pg = sysconf(_SC_PAGESIZE);
    size_t maplen = (need + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
    unsigned char *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return fail(r, "auth", "cannot map memory for the credential");
    (void)madvise(m, maplen, MADV_DONTDUMP);
    (void)mlock(m, maplen);
    unsigned char *plain = m;
    char *line = (char *)m + raw;
    plain[0] = 0;
    memcpy(plain + 1, o->username, o->username_len);
    plain[1 + o->username_len] = 0;
    memcpy(plain + 2 + o->username_len, o->password, o->password_len);
    memcpy(line, "AUTH PLAIN ", 11);
    int enc = EVP_EncodeBlock((unsigned char *)line + 11, plain, (int)raw);
    memcpy(line + 11 + enc, "\r\n", 2);
    explicit_bzero(plain, raw);
    r->auth_attempted = true;
    tr_add(c, "C: ", "AUTH PLAIN <redacted>", 21);
    bool ok = conn_write(c, line, 11 + (size_t)enc + 2, r);
    explicit_bzero(m, maplen);
    munlock(m, maplen);
    munmap(m, maplen);
    if (!ok)
        return false;
    int code = 0;
    if (!read_reply(c, &code, r, NULL, 0))
        return false;
    if (code != 235)
        return fail(r, "auth", "AUTH PLAIN as %.*s was rejected by %s port %d: %s",
                    (int)(o->username_len > 200 ? 200 : o->username_len), o->username, o->host,
                    o->port, r->reply);
    return true;
}

static bool session(struct conn *c, const struct opts *o, struct result *r)
{
    int code = 0;
    char caps[4096];
    char cmd[600];
    r->stage = "connect";
    if (!conn_connect(c, o, r))
        return false;
    r->stage = "greeting";
    if (!read_reply(c, &code, r, NULL, 0))
        return false;
    if (code != 220)
        return fail(r, "greeting", "the server did not greet with 220: %s", r->reply);
    r->stage = "ehlo";
    snprintf(cmd, sizeof cmd, "EHLO %s", o->ehlo_name);
    if (!send_cmd(c, cmd, r) || !read_reply(c, &code, r, caps, sizeof caps))
        return false;
    if (code != 250)
        return fail(r, "ehlo", "EHLO was refused: %s", r->reply);

    bool offered = has_cap(caps, "STARTTLS", NULL);
    bool required = o->tls == TLS_REQUIRED || o->tls == TLS_REQUIRED_INSECURE;
    bool insecure = o->tls == TLS_OPPORTUNISTIC_INSECURE || o->tls == TLS_REQUIRED_INSECURE;
    if (o->tls != TLS_DISABLED && offered) {
        r->stage = "starttls";
        if (!send_cmd(c, "STARTTLS", r) || !read_reply(c, &code, r, NULL, 0))
            return false;
        if (code != 220)
            return fail(r, "starttls", "STARTTLS was refused: %s", r->reply);
        if (c->len != 0)
            return fail(r, "starttls", "the server sent data after its STARTTLS reply "
                                       "(command injection); refusing to continue");
        if (!start_tls(c, o, r))
            return false;
        if (!r->tls_verified && !insecure)
            return fail(r, "tls", "the certificate of %s is not valid (%s); enable_tls=%s "
                                  "requires a valid certificate",
                        o->host, r->verify_error,
                        o->tls == TLS_REQUIRED ? "Required" : "Opportunistic");
        r->stage = "ehlo";
        if (!send_cmd(c, cmd, r) || !read_reply(c, &code, r, caps, sizeof caps))
            return false;
        if (code != 250)
            return fail(r, "ehlo", "EHLO after STARTTLS was refused: %s", r->reply);
    } else if (required) {
        return fail(r, "starttls", "enable_tls requires TLS but %s did not offer STARTTLS",
                    o->host);
    }

    if (o->username == NULL)
        return fail(r, "policy", "no smtp_auth_plain_username: AUTH was not attempted");
    if (!r->tls && !o->allow_without_tls)
        return fail(r, "policy", "TLS is not enabled and AUTH PLAIN requires it; not sending the "
                                 "credential to %s port %d (set allow_smtp_auth_plain_without_tls "
                                 "to allow)",
                    o->host, o->port);
    if (r->tls && !r->tls_verified && !o->allow_invalid_cert)
        return fail(r, "policy", "the TLS certificate of %s was not validated (%s) and AUTH PLAIN "
                                 "requires a valid certificate; not sending the credential (set "
                                 "allow_smtp_auth_plain_without_valid_certificate to allow)",
                    o->host, r->verify_error);
    r->stage = "auth";
    if (!auth_plain(c, o, r))
        return false;
    r->ok = true;
    char okreply[REPLY_MAX];
    snprintf(okreply, sizeof okreply, "%s", r->reply);
    int okcode = code = r->code;
    r->stage = "quit";
    if (send_cmd(c, "QUIT", r))
        (void)read_reply(c, &code, r, NULL, 0);
    /* report the AUTH reply, not QUIT's */
    snprintf(r->reply, sizeof r->reply, "%s", okreply);
    r->code = okcode;
    r->ok = true;
    r->error[0] = '\0';
    r->stage = "auth";
    return true;
}

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->ctx != NULL)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    explicit_bzero(c->buf, sizeof c->buf);
}

static const char *field_str(lua_State *L, int idx, const char *name, size_t *len)
{
    lua_getfield(L, idx, name);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "smtp.check_auth: %s must be a string", name);
        char what[64];
        snprintf(what, sizeof what, "smtp.check_auth: %s", name);
        s = vksh_cstring(L, -1, what, len); /* the host name, cafile, ... are used as C strings */
    }
    lua_pop(L, 1); /* the string stays alive: the options table at idx references it */
    return s;
}

static bool field_bool(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

static int l_check_auth(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct opts o;
    memset(&o, 0, sizeof o);
    size_t dummy;
    o.host = field_str(L, 1, "host", &dummy);
    if (o.host == NULL)
        return luaL_error(L, "smtp.check_auth: host is required");
    lua_getfield(L, 1, "port");
    o.port = (int)luaL_optinteger(L, -1, 25);
    lua_pop(L, 1);
    if (o.port < 1 || o.port > 65535)
        return luaL_error(L, "smtp.check_auth: port out of range");
    o.ehlo_name = field_str(L, 1, "ehlo_name", &dummy);
    if (o.ehlo_name == NULL)
        o.ehlo_name = "localhost";
    const char *tls = field_str(L, 1, "enable_tls", &dummy);
    static const char *const modes[] = { "Opportunistic", "OpportunisticInsecure", "Required",
                                         "RequiredInsecure", "Disabled" };
    o.tls = TLS_OPPORTUNISTIC;
    if (tls != NULL) {
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(tls, modes[i]) == 0)
                found = i;
        if (found < 0)
            return luaL_error(L, "smtp.check_auth: unknown enable_tls value");
        o.tls = (enum tls_mode)found;
    }
    o.username = field_str(L, 1, "username", &o.username_len);
    o.password = field_str(L, 1, "password", &o.password_len);
    if (o.password == NULL) {
        o.password = "";
        o.password_len = 0;
    }
    if (o.username_len > USERNAME_MAX || o.password_len > PASSWORD_MAX)
        return luaL_error(L, "smtp.check_auth: username or password too long");
    /* (username and password cannot hold a NUL: field_str refused it; AUTH PLAIN separates them
     * with NUL bytes) */
    o.cafile = field_str(L, 1, "cafile", &dummy);
    o.allow_without_tls = field_bool(L, 1, "allow_smtp_auth_plain_without_tls");
    o.allow_invalid_cert = field_bool(L, 1, "allow_smtp_auth_plain_without_valid_certificate");
    lua_getfield(L, 1, "timeout_ms");
    o.timeout_ms = (int)luaL_optinteger(L, -1, 30000);
    lua_pop(L, 1);
    if (o.timeout_ms < 1)
        o.timeout_ms = 1;

    /* from here to conn_close: no Lua call */
    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    c.transcript = malloc(TRANSCRIPT_MAX);
    if (c.transcript)
        c.transcript[0] = '\0';
    struct result *r = calloc(1, sizeof *r);
    if (r == NULL) {
        free(c.transcript);
        return luaL_error(L, "out of memory");
    }
    ERR_clear_error();
    session(&c, &o, r);
    conn_close(&c);

    lua_createtable(L, 0, 12);
    lua_pushboolean(L, r->ok);
    lua_setfield(L, -2, "ok");
    lua_pushstring(L, r->stage ? r->stage : "connect");
    lua_setfield(L, -2, "stage");
    lua_pushinteger(L, r->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, r->reply);
    lua_setfield(L, -2, "reply");
    if (r->error[0]) {
        lua_pushstring(L, r->error);
        lua_setfield(L, -2, "error");
    }
    lua_pushboolean(L, r->tls);
    lua_setfield(L, -2, "tls");
    lua_pushboolean(L, r->tls_verified);
    lua_setfield(L, -2, "tls_verified");
    lua_pushboolean(L, r->auth_attempted);
    lua_setfield(L, -2, "auth_attempted");
    if (r->tls_version[0]) {
        lua_pushstring(L, r->tls_version);
        lua_setfield(L, -2, "tls_version");
    }
    if (r->verify_error[0]) {
        lua_pushstring(L, r->verify_error);
        lua_setfield(L, -2, "verify_error");
    }
    lua_pushstring(L, c.transcript ? c.transcript : "");
    lua_setfield(L, -2, "transcript");
    free(c.transcript);
    free(r);
    return 1;
}

static const luaL_Reg funcs[] = {
    { "check_auth", l_check_auth },
    { NULL, NULL },
};

int vksh_open_smtp(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
