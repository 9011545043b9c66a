/*
 * The Dovecot authentication protocol (server side), pure parts: line parsing, PLAIN and LOGIN
 * payloads, the handshake (agent/inbound.h; protocol notes in docs/internals/agent.md "Inbound").
 * Lines are TAB-separated; the client sends VERSION, CPID, then AUTH and CONT requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "inbound.h"
#include "vks_base64.h"

/* The n-th TAB-separated field [*a, *b) of line; false when absent. */
static bool field(const char *line, size_t len, unsigned k, const char **a, size_t *fl)
{
    size_t i = 0;
    for (unsigned f = 0; f < k; f++) {
        const char *t = memchr(line + i, '\t', len - i);
        if (t == NULL)
            return false;
        i = (size_t)(t - line) + 1;
    }
    const char *t = memchr(line + i, '\t', len - i);
    *a = line + i;
    *fl = t ? (size_t)(t - (line + i)) : len - i;
    return true;
}

static bool number(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static bool is(const char *a, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(a, lit, n) == 0;
}

/* AUTH <id> <mech> [params...] */
static int parse_auth(const char *line, size_t len, struct ag_sasl_line *out, char *why, size_t wn)
{
    const char *a;
    size_t n;
    if (!field(line, len, 2, &a, &n) || n == 0) {
        snprintf(why, wn, "AUTH without a mechanism");
        return -1;
    }
    out->mech = is(a, n, "PLAIN") ? AG_MECH_PLAIN : is(a, n, "LOGIN") ? AG_MECH_LOGIN : AG_MECH_NONE;
    if (out->mech == AG_MECH_NONE) {
        snprintf(why, wn, "mechanism %.*s is not supported (PLAIN and LOGIN only)", n > 20 ? 20 : (int)n, a);
        return -1;
    }
    for (unsigned k = 3; field(line, len, k, &a, &n); k++) {
        if (is(a, n, "secured")) {
            out->secured = true;
        } else if (n >= 4 && memcmp(a, "rip=", 4) == 0) {
            if (n - 4 >= sizeof out->rip) {
                snprintf(why, wn, "rip= is longer than %zu bytes", sizeof out->rip - 1);
                return -1;
            }
            memcpy(out->rip, a + 4, n - 4);
            out->rip[n - 4] = '\0';
        } else if (n >= 5 && memcmp(a, "resp=", 5) == 0) {
            out->has_resp = true;
            out->data = a + 5;
            out->data_len = n - 5;
        } /* service=, lip=, nologin, session=, ... : not needed here */
    }
    return 0;
}

int ag_sasl_parse(const char *line, size_t len, struct ag_sasl_line *out, bool *id_known, char *why, size_t wn)
{
    memset(out, 0, sizeof *out);
    *id_known = false;
    if (memchr(line, '\0', len) != NULL || (len > 0 && line[len - 1] == '\r')) {
        snprintf(why, wn, "a NUL byte or CR in the line");
        return -1;
    }
    const char *a, *b;
    size_t n, m;
    field(line, len, 0, &a, &n);
    if (is(a, n, "VERSION")) {
        unsigned long ma = 0, mi = 0;
        if (!field(line, len, 1, &a, &n) || !field(line, len, 2, &b, &m) || !number(a, n, 1000, &ma) ||
            !number(b, m, 1000, &mi)) {
            snprintf(why, wn, "VERSION needs a major and a minor number");
            return -1;
        }
        out->cmd = AG_SASL_VERSION;
        out->major = (unsigned)ma;
        out->minor = (unsigned)mi;
        return 0;
    }
    if (is(a, n, "CPID")) {
        unsigned long pid;
        if (!field(line, len, 1, &a, &n) || !number(a, n, AG_SASL_ID_MAX, &pid)) {
            snprintf(why, wn, "CPID needs a process id");
            return -1;
        }
        out->cmd = AG_SASL_CPID;
        return 0;
    }
    bool auth = is(a, n, "AUTH"), cont = is(a, n, "CONT");
    if (!auth && !cont) {
        snprintf(why, wn, "unknown command \"%.*s\" (VERSION, CPID, AUTH, CONT)", n > 16 ? 16 : (int)n, a);
        for (size_t i = 0; i < wn && why[i]; i++)
            why[i] = (why[i] < 0x20 || why[i] > 0x7e) ? '?' : why[i];
        return -1;
    }
    if (!field(line, len, 1, &a, &n) || !number(a, n, AG_SASL_ID_MAX, &out->id)) {
        snprintf(why, wn, "%s needs a numeric request id", auth ? "AUTH" : "CONT");
        return -1;
    }
    *id_known = true;
    if (cont) {
        out->cmd = AG_SASL_CONT;
        if (field(line, len, 2, &a, &n)) {
            out->data = a;
            out->data_len = n;
            out->has_resp = true;
        }
        return 0;
    }
    out->cmd = AG_SASL_AUTH;
    return parse_auth(line, len, out, why, wn);
}

int ag_sasl_b64(const char *b64, size_t n, vks_secret *out, char *why, size_t wn)
{
    *out = VKS_SECRET_EMPTY;
    if (n > VKS_B64_ENCODED_LEN(AG_SASL_RESP_MAX)) {
        snprintf(why, wn, "the response is %zu base64 characters; at most %d", n,
                 VKS_B64_ENCODED_LEN(AG_SASL_RESP_MAX));
        return -1;
    }
    if (vks_secret_alloc(VKS_B64_DECODED_MAX(n) + 1, out, NULL) != VKS_OK) {
        snprintf(why, wn, "out of locked memory");
        return -1;
    }
    size_t got = 0;
    enum vks_b64_result r = vks_b64_decode(b64, n, out->data, out->cap, &got, NULL);
    if (r != VKS_B64_OK) {
        vks_secret_free(out);
        snprintf(why, wn, "the response is not base64 (%s)", vks_b64_strerror(r));
        return -1;
    }
    out->len = got;
    return 0;
}

int ag_sasl_plain_split(const vks_secret *buf, size_t *uoff, size_t *ulen, size_t *poff, size_t *plen, char *why,
                        size_t wn)
{
    const unsigned char *p = buf->data;
    size_t n = buf->len;
    const unsigned char *z1 = n ? memchr(p, '\0', n) : NULL;
    const unsigned char *z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - p)) : NULL;
    if (z1 == NULL || z2 == NULL) {
        snprintf(why, wn, "PLAIN response is not authzid NUL authcid NUL password");
        return -1;
    }
    size_t zl = (size_t)(z1 - p);
    *uoff = zl + 1;
    *ulen = (size_t)(z2 - z1) - 1;
    *poff = (size_t)(z2 - p) + 1;
    *plen = n - *poff;
    if (*ulen == 0 || *ulen > 255) {
        snprintf(why, wn, "PLAIN authcid must be 1-255 bytes");
        return -1;
    }
    if (zl > 0 && (zl != *ulen || memcmp(p, p + *uoff, zl) != 0)) {
        snprintf(why, wn, "PLAIN authzid differs from the authcid (proxy logins are not allowed)");
        return -1;
    }
    return 0;
}

size_t ag_sasl_handshake(char *out, size_t n, unsigned long cuid)
{
    unsigned char rnd[16];
    char cookie[33];
    static const char hx[] = "0123456789abcdef";
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) /* a session cookie; Postfix ignores it */
        memset(rnd, 0, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd; i++) {
        cookie[2 * i] = hx[rnd[i] >> 4];
        cookie[2 * i + 1] = hx[rnd[i] & 15];
    }
    cookie[32] = '\0';
    int w = snprintf(out, n,
                     "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t%d\nCUID\t%lu\n"
                     "COOKIE\t%s\nDONE\n", (int)getpid(), cuid, cookie);
    return w > 0 && (size_t)w < n ? (size_t)w : 0;
}
