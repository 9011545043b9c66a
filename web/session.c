/*
 * vks-serve sessions: a fixed table (SV_SESSIONS_MAX) of operators logged in. The browser holds
 * only a random 256-bit id (cookie HttpOnly; Secure; SameSite=Strict); the table keeps its SHA-256,
 * the CSRF token, the times, and the operator's own vks_vault client (whose token lives in the
 * core's locked arena). Idle and absolute lifetimes end a session; logout revokes the token.
 * Login throttling: failures counted per source address and per username in small tables; at
 * login_max_failures within login_lockout seconds, further attempts wait out the lockout.
 * Loop thread only.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "serve.h"

static struct sv_session S[SV_SESSIONS_MAX];

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

struct sv_session *sv_session_new(struct vks_vault *vault, vks_secret *token, const char *operator_name,
                                  const char *accessor, char cookie[65])
{
    struct sv_session *s = NULL, *oldest = NULL;
    for (int i = 0; i < SV_SESSIONS_MAX && !s; i++) {
        if (!S[i].used)
            s = &S[i];
        else if (!oldest || S[i].last < oldest->last)
            oldest = &S[i];
    }
    if (!s) { /* full: the least recently used session ends (its token is revoked) */
        sv_session_end(oldest, true);
        s = oldest;
    }
    unsigned char id[32], csrf[32];
    if (RAND_bytes(id, sizeof id) != 1 || RAND_bytes(csrf, sizeof csrf) != 1) {
        vks_vault_free(vault);
        vks_secret_free(token);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    hex(id, sizeof id, cookie);
    vks_wipe(id, sizeof id);
    sha256(cookie, 64, s->id_hash);
    hex(csrf, sizeof csrf, s->csrf);
    s->used = true;
    s->vault = vault;
    s->token = *token;
    *token = VKS_SECRET_EMPTY;
    snprintf(s->operator_name, sizeof s->operator_name, "%s", operator_name);
    snprintf(s->accessor, sizeof s->accessor, "%s", accessor);
    return s;
}

/* the value of cookie "vks_session" in a Cookie header (64 hex), or false */
static bool cookie_value(const char *h, char out[65])
{
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        if (!strncmp(p, "vks_session=", 12)) {
            p += 12;
            size_t n = strcspn(p, "; ");
            if (n != 64)
                return false;
            memcpy(out, p, 64);
            out[64] = '\0';
            return strspn(out, "0123456789abcdef") == 64;
        }
        p = strchr(p, ';');
    }
    return false;
}

struct sv_session *sv_session_find(const char *cookie_header, int64_t now)
{
    char v[65];
    if (!cookie_header || !cookie_value(cookie_header, v))
        return NULL;
    unsigned char h[32];
    sha256(v, 64, h);
    vks_wipe(v, sizeof v);
    for (int i = 0; i < SV_SESSIONS_MAX; i++) {
        struct sv_session *s = &S[i];
        if (!s->used || CRYPTO_memcmp(s->id_hash, h, 32) != 0)
            continue;
        if (now - s->last > sv_cfg->session_idle || now - s->created > sv_cfg->session_max) {
            sv_session_end(s, true);
            return NULL;
        }
        s->last = now;
        return s;
    }
    return NULL;
}

void sv_session_end(struct sv_session *s, bool revoke)
{
    if (!s || !s->used)
        return;
    if (revoke) {
        struct vks_err e;
        vks_err_clear(&e);
        (void)vks_vault_token_revoke_self(s->vault, &e); /* best effort: a dead token is already gone */
    }
    vks_vault_free(s->vault);
    vks_secret_free(&s->token);
    vks_wipe(s, sizeof *s);
}

void sv_sessions_expire(int64_t now)
{
    for (int i = 0; i < SV_SESSIONS_MAX; i++)
        if (S[i].used && (now - S[i].last > sv_cfg->session_idle || now - S[i].created > sv_cfg->session_max))
            sv_session_end(&S[i], true);
}

void sv_sessions_close(void)
{
    for (int i = 0; i < SV_SESSIONS_MAX; i++)
        sv_session_end(&S[i], false);
}

/* ------------------------------------------------------------------ login throttling */

#define SV_THROTTLE_MAX 1024
struct fail {
    char key[140];       /* "a:<address>" or "u:<username>" */
    int count;
    int64_t first, locked_until;
};
static struct fail F[SV_THROTTLE_MAX];

static struct fail *slot(const char *kind, const char *v, int64_t now, bool create)
{
    char key[140];
    snprintf(key, sizeof key, "%s:%s", kind, v ? v : "");
    struct fail *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < SV_THROTTLE_MAX; i++) {
        if (F[i].key[0] && !strcmp(F[i].key, key))
            return &F[i];
        bool stale = F[i].key[0] && now > F[i].locked_until && now - F[i].first > sv_cfg->login_lockout;
        if (!F[i].key[0] || stale)
            free_slot = free_slot ? free_slot : &F[i];
        else if (!oldest || F[i].first < oldest->first)
            oldest = &F[i];
    }
    if (!create)
        return NULL;
    struct fail *f = free_slot ? free_slot : oldest;
    memset(f, 0, sizeof *f);
    snprintf(f->key, sizeof f->key, "%s", key);
    f->first = now;
    return f;
}

int sv_login_wait(const char *addr, const char *user, int64_t now)
{
    int64_t w = 0;
    const char *kinds[2] = { "a", "u" }, *vals[2] = { addr, user };
    for (int i = 0; i < 2; i++) {
        if (!vals[i] || !*vals[i])
            continue;
        struct fail *f = slot(kinds[i], vals[i], now, false);
        if (f && f->locked_until > now && f->locked_until - now > w)
            w = f->locked_until - now;
    }
    return (int)w;
}

void sv_login_result(const char *addr, const char *user, bool ok, int64_t now)
{
    const char *kinds[2] = { "a", "u" }, *vals[2] = { addr, user };
    for (int i = 0; i < 2; i++) {
        if (!vals[i] || !*vals[i] || (ok && i == 0)) /* a success clears the username's count only */
            continue;
        struct fail *f = slot(kinds[i], vals[i], now, !ok);
        if (!f)
            continue;
        if (ok) {
            memset(f, 0, sizeof *f);
            continue;
        }
        if (now - f->first > sv_cfg->login_lockout) {
            f->first = now;
            f->count = 0;
        }
        if (++f->count >= sv_cfg->login_max_failures)
            f->locked_until = now + sv_cfg->login_lockout;
    }
}
