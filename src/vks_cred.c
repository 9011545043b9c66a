/*
 * vks_cred, the pure parts: input rules, restriction lists, the summary, the generator and the
 * metadata record (contract: vks_cred.h; stored shape: docs/credentials.md).
 */
#include "vks_cred.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vks_restrict.h"

/* ------------------------------------------------------------------ input rules */

/* Quotes at most 64 bytes of s for a message, anything unprintable as '?'. */
static void quote(char out[72], const char *s, size_t n)
{
    size_t k = n > 64 ? 64 : n;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (n > k)
        memcpy(out + k, "...", 3), k += 3;
    out[k] = '\0';
}

static bool username_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '=' ||
           c == ',' || c == '.' || c == '@' || c == '_' || c == '-';
}

vks_status vks_cred_check_username(const char *s, size_t n, const char *field, struct vks_err *err)
{
    if (s == NULL || n == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s is empty (1-%d characters of letters, digits and "
                           "+ = , . @ _ -)", field, VKS_CRED_USERNAME_MAX);
    if (n > VKS_CRED_USERNAME_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s is %zu characters long; at most %d", field, n,
                           VKS_CRED_USERNAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (username_char(c))
            continue;
        char q[72];
        quote(q, s, n);
        if (c >= 0x21 && c < 0x7f)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\": character %zu ('%c') is not allowed (letters, "
                               "digits and + = , . @ _ - only)", field, q, i + 1, c);
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\": character %zu (byte 0x%02x) is not allowed "
                           "(letters, digits and + = , . @ _ - only)", field, q, i + 1, c);
    }
    return VKS_OK;
}

/* Path segments of [A-Za-z0-9._-], none empty, "." or "..". */
static bool segments_ok(const char *s, size_t n, size_t *bad_at)
{
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            size_t len = i - seg;
            if (len == 0 || (len == 1 && s[seg] == '.') || (len == 2 && s[seg] == '.' && s[seg + 1] == '.')) {
                *bad_at = seg;
                return false;
            }
            seg = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-')) {
            *bad_at = i;
            return false;
        }
    }
    return true;
}

vks_status vks_cred_check_name(const char *name, const char *field, struct vks_err *err)
{
    size_t n = name ? strlen(name) : 0, at = 0;
    if (n == 0 || n > VKS_CRED_NAME_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s must be 1-%d characters (got %zu)", field,
                           VKS_CRED_NAME_MAX, n);
    if (!segments_ok(name, n, &at)) {
        char q[72];
        quote(q, name, n);
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\" is not a credential name: path segments of "
                           "letters, digits, '.', '_' and '-', none empty, '.' or '..' (problem at character %zu)",
                           field, q, at + 1);
    }
    return VKS_OK;
}

vks_status vks_cred_check_prefix(const char *prefix, const char *field, struct vks_err *err)
{
    size_t n = prefix ? strlen(prefix) : 0, at = 0;
    if (n == 0)
        return VKS_OK; /* credentials at the mount's root */
    if (n > 100 || prefix[n - 1] != '/' || !segments_ok(prefix, n - 1, &at)) {
        char q[72];
        quote(q, prefix ? prefix : "", n);
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\" must be path segments of letters, digits, '.', "
                           "'_' and '-' ending in '/' (at most 100 characters), e.g. smtp-auth/", field, q);
    }
    return VKS_OK;
}

vks_status vks_cred_check_owner(const char *s, const char *field, struct vks_err *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > VKS_CRED_OWNER_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s must be 1-%d characters", field, VKS_CRED_OWNER_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: character %zu is not printable ASCII", field, i + 1);
    if (s[0] == ' ' || s[n - 1] == ' ')
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s must not begin or end with a space", field);
    return VKS_OK;
}

vks_status vks_cred_check_tenant(const char *s, const char *field, struct vks_err *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > VKS_CRED_TENANT_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s must be 1-%d characters", field, VKS_CRED_TENANT_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: character %zu is not one of a-z 0-9 . _ -", field,
                               i + 1);
    }
    return VKS_OK;
}

static bool relay_host_ok(const char *h, size_t n, bool v6)
{
    if (n == 0 || n > 253)
        return false;
    char b[256];
    memcpy(b, h, n);
    b[n] = '\0';
    unsigned char addr[16];
    if (v6)
        return inet_pton(AF_INET6, b, addr) == 1;
    if (inet_pton(AF_INET, b, addr) == 1)
        return true;
    for (size_t i = 0, lab = 0; i < n; i++) { /* a DNS name: labels of letters, digits, '-' */
        unsigned char c = (unsigned char)b[i];
        if (c == '.') {
            if (lab == 0 || b[i - 1] == '-')
                return false;
            lab = 0;
        } else if (isalnum(c) || (c == '-' && lab > 0)) {
            if (++lab > 63)
                return false;
        } else {
            return false;
        }
    }
    return b[n - 1] != '.' && b[n - 1] != '-';
}

vks_status vks_cred_parse_relay(const char *s, const char *field, char *host, size_t cap, int *port,
                                struct vks_err *err)
{
    size_t n = s ? strlen(s) : 0;
    char shown[65]; /* the input as a message may show it: at most 64 bytes, non-printable as '?' */
    size_t k = 0;
    for (; k < n && k < 64; k++)
        shown[k] = (unsigned char)s[k] < 0x20 || (unsigned char)s[k] >= 0x7f ? '?' : s[k];
    shown[k] = '\0';
    const char *colon = n ? strrchr(s, ':') : NULL;
    bool v6 = n > 0 && s[0] == '[';
    const char *h = v6 ? s + 1 : s;
    size_t hn = colon ? (size_t)(colon - h) - (v6 ? 1 : 0) : 0;
    if (n > VKS_CRED_RELAY_MAX || colon == NULL || (v6 && (colon == s || colon[-1] != ']')) ||
        !relay_host_ok(h, hn, v6))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\" must be HOST:PORT (a DNS name or IPv4 address) "
                           "or [IPv6]:PORT", field, shown);
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] < '1' || colon[1] > '9' || *end != '\0' || p < 1 || p > 65535)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: the port of \"%s\" must be 1-65535", field, shown);
    if (host != NULL) {
        if (cap <= hn)
            return vks_err_set(err, VKS_E_INVALID_ARG, "vks_cred_parse_relay: host buffer too small");
        memcpy(host, h, hn);
        host[hn] = '\0';
    }
    if (port != NULL)
        *port = (int)p;
    return VKS_OK;
}

vks_status vks_cred_check_password(const unsigned char *p, size_t n, struct vks_err *err)
{
    if (p == NULL || n == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the password on stdin is empty");
    if (n > VKS_CRED_PROVIDED_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the password on stdin is longer than %d bytes",
                           VKS_CRED_PROVIDED_MAX);
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e) /* the byte itself is never shown */
            return vks_err_set(err, VKS_E_INVALID_INPUT, "the password on stdin has a byte that is not printable "
                               "ASCII without spaces (position %zu)", i + 1);
    return VKS_OK;
}

/* ------------------------------------------------------------------ generator */

size_t vks_cred_sample(const unsigned char *rnd, size_t n, unsigned char *out, size_t want)
{
    static const char alphabet[] = VKS_CRED_ALPHABET;
    _Static_assert(sizeof alphabet - 1 == VKS_CRED_ALPHABET_LEN, "alphabet length");
    _Static_assert(VKS_CRED_REJECT_FROM == 256 - 256 % VKS_CRED_ALPHABET_LEN, "rejection bound");
    size_t got = 0;
    for (size_t i = 0; i < n && got < want; i++)
        if (rnd[i] < VKS_CRED_REJECT_FROM)
            out[got++] = (unsigned char)alphabet[rnd[i] % VKS_CRED_ALPHABET_LEN];
    return got;
}

vks_status vks_cred_generate(vks_secret *out, struct vks_err *err)
{
    *out = VKS_SECRET_EMPTY;
    vks_secret rnd = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_alloc(VKS_CRED_PASSWORD_LEN, out, err);
    if (st == VKS_OK)
        st = vks_secret_alloc(64, &rnd, err);
    size_t got = 0;
    for (int rounds = 0; st == VKS_OK && got < VKS_CRED_PASSWORD_LEN; rounds++) {
        if (rounds == 64) { /* 64 x 64 bytes, each kept with p = 248/256: cannot happen */
            st = vks_err_set(err, VKS_E_INTERNAL, "password generator: random source looks broken");
            break;
        }
        ssize_t r = getrandom(rnd.data, 64, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            st = vks_err_set(err, VKS_E_INTERNAL, "password generator: getrandom: %s", strerror(errno));
            break;
        }
        got += vks_cred_sample(rnd.data, (size_t)r, out->data + got, VKS_CRED_PASSWORD_LEN - got);
    }
    vks_secret_free(&rnd);
    if (st != VKS_OK) {
        vks_secret_free(out);
        return st;
    }
    out->len = VKS_CRED_PASSWORD_LEN;
    return VKS_OK;
}

/* ------------------------------------------------------------------ restriction lists */

void vks_cred_list_set_all(struct vks_cred_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
    l->all = true;
}

void vks_cred_restrictions_free(struct vks_cred_restrictions *r)
{
    vks_cred_list_set_all(&r->domains);
    vks_cred_list_set_all(&r->hosts);
}

/* Zero host bits for a range "addr/prefix" (canonical text). */
static bool host_bits_zero(const struct vks_restrict_entry_info *in)
{
    char a[INET6_ADDRSTRLEN];
    unsigned char b[16] = { 0 };
    const char *slash = strchr(in->canonical, '/');
    size_t an = slash ? (size_t)(slash - in->canonical) : strlen(in->canonical);
    if (an >= sizeof a)
        return false;
    memcpy(a, in->canonical, an);
    a[an] = '\0';
    if (inet_pton(in->family == 4 ? AF_INET : AF_INET6, a, b) != 1)
        return false;
    unsigned bits = in->family == 4 ? 32 : 128;
    for (unsigned i = in->prefix; i < bits; i++)
        if (b[i / 8] & (0x80u >> (i % 8)))
            return false;
    return true;
}

/* Parses one entry into canonical form; strict (operator input) or lenient (read from Vault). */
static vks_status canon(bool hosts, const char *entry, bool strict, const char *field, char *out, size_t cap,
                        struct vks_err *err)
{
    struct vks_restrict_entry_info in;
    size_t n = entry ? strlen(entry) : 0;
    char q[72];
    quote(q, entry ? entry : "", n);
    if (vks_restrict_entry(entry ? entry : "", n, hosts, &in) != VKS_OK ||
        (strict && hosts && (in.type == VKS_RESTRICT_NAME || in.type == VKS_RESTRICT_SUFFIX)))
        return vks_err_set(err, VKS_E_INVALID_INPUT, hosts
                           ? "%s \"%s\" is not an IPv4/IPv6 address or CIDR range (e.g. 192.0.2.10, "
                             "10.1.0.0/16, 2001:db8::/32)"
                           : "%s \"%s\" is not a domain name or *.suffix (labels of letters, digits, '-' and '_', "
                             "1-63 each, at most 253 in all)", field, q);
    if (strict && in.type == VKS_RESTRICT_RANGE && !host_bits_zero(&in))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\" has bits set after the /%u prefix: write the "
                           "network address of the range", field, q, in.prefix);
    snprintf(out, cap, "%s", in.canonical);
    return VKS_OK;
}

static vks_status list_push(struct vks_cred_list *l, const char *c, struct vks_err *err)
{
    l->all = false;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], c) == 0)
            return VKS_OK;
    if (l->n >= 4096)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "a restriction list holds at most 4096 entries");
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (nv == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    l->v = nv;
    if ((l->v[l->n] = strdup(c)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    l->n++;
    return VKS_OK;
}

vks_status vks_cred_list_add(struct vks_cred_list *l, bool hosts, const char *entry, const char *field,
                             struct vks_err *err)
{
    char c[272];
    vks_status st = canon(hosts, entry, true, field, c, sizeof c, err);
    return st == VKS_OK ? list_push(l, c, err) : st;
}

vks_status vks_cred_list_remove(struct vks_cred_list *l, bool hosts, const char *entry, const char *field,
                                struct vks_err *err)
{
    char c[272];
    vks_status st = canon(hosts, entry, false, field, c, sizeof c, err);
    if (st != VKS_OK)
        return st;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], c) == 0) {
            free(l->v[i]);
            memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
            l->n--;
            return VKS_OK;
        }
    return vks_err_set(err, VKS_E_INVALID_INPUT, "%s \"%s\" is not in the list", field, c);
}

vks_status vks_cred_list_join(const struct vks_cred_list *l, const char *field, char **out, struct vks_err *err)
{
    *out = NULL;
    if (l->all)
        return VKS_OK;
    if (l->n == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: the list would be empty; a restriction lists at least "
                           "one entry (or lift it with --all-%s)", field, strstr(field, "domain") ? "domains" : "ips");
    size_t len = 0;
    for (size_t i = 0; i < l->n; i++)
        len += strlen(l->v[i]) + 2;
    if (len - 2 > VKS_CRED_VALUE_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: %zu entries make %zu characters; Vault keeps at most %d "
                           "in one custom_metadata value (use CIDR ranges or *.suffix entries)", field, l->n,
                           len - 2, VKS_CRED_VALUE_MAX);
    char *s = malloc(len);
    if (s == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < l->n; i++)
        o += (size_t)sprintf(s + o, "%s%s", i ? ", " : "", l->v[i]);
    *out = s;
    return VKS_OK;
}

void vks_cred_summary(const struct vks_cred_restrictions *r, char *out, size_t cap)
{
    char d[40], h[40];
    if (r->domains.all)
        snprintf(d, sizeof d, "All domains");
    else
        snprintf(d, sizeof d, "%zu domain%s", r->domains.n, r->domains.n == 1 ? "" : "s");
    if (r->hosts.all)
        snprintf(h, sizeof h, "all IPs");
    else
        snprintf(h, sizeof h, "%zu IP%s", r->hosts.n, r->hosts.n == 1 ? "" : "s");
    snprintf(out, cap, "%s, %s", d, h);
}

/* ------------------------------------------------------------------ the metadata record */

void vks_cred_time(int64_t t, int days, char out[40])
{
    time_t tt = (time_t)(t + (int64_t)days * 86400);
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 40, "1970-01-01T00:00:00Z");
}

static const char *const our_keys[] = { "allowed_domains", "allowed_hosts", "vks_cred", "username", "state",
                                        "created", "rotated", "due", "rev", "current_version",
                                        "previous_version", "pending_version", "rotation_id", "owner", "tenant",
                                        "relay", "rotation_started", "previous_rotated", "direction" };

static void get_s(json_object *o, const char *k, char *out, size_t cap)
{
    json_object *v = NULL;
    out[0] = '\0';
    if (o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string))
        snprintf(out, cap, "%s", json_object_get_string(v));
}

static int64_t get_n(json_object *o, const char *k)
{
    char b[32];
    get_s(o, k, b, sizeof b);
    char *end = NULL;
    long long x = b[0] ? strtoll(b, &end, 10) : 0;
    return (b[0] && end && *end == '\0' && x > 0) ? (int64_t)x : 0;
}

/* The two lists from custom_metadata, leniently (host names kept); bad -> restrictions_bad. */
static void parse_lists(json_object *cm, struct vks_cred_record *rec)
{
    rec->restrictions.domains.all = rec->restrictions.hosts.all = true;
    const char *json = cm ? json_object_to_json_string_ext(cm, JSON_C_TO_STRING_PLAIN) : "null";
    if (vks_restrict_validate(json, strlen(json), NULL, NULL) != VKS_OK) {
        rec->restrictions_bad = true;
        return;
    }
    for (int k = 0; k < 2; k++) {
        char v[VKS_CRED_VALUE_MAX * 8 + 1];
        get_s(cm, k ? "allowed_hosts" : "allowed_domains", v, sizeof v);
        struct vks_cred_list *l = k ? &rec->restrictions.hosts : &rec->restrictions.domains;
        json_object *raw = NULL;
        if (!cm || !json_object_object_get_ex(cm, k ? "allowed_hosts" : "allowed_domains", &raw))
            continue;
        l->all = false;
        char *save = NULL;
        for (char *t = strtok_r(v, ", \t\r\n", &save); t; t = strtok_r(NULL, ", \t\r\n", &save)) {
            char c[272];
            if (canon(k == 1, t, false, "list", c, sizeof c, NULL) != VKS_OK || list_push(l, c, NULL) != VKS_OK)
                rec->restrictions_bad = true;
        }
    }
}

static vks_status parse_versions(json_object *vers, struct vks_cred_record *rec, struct vks_err *err)
{
    if (!vers || !json_object_is_type(vers, json_type_object))
        return VKS_OK;
    size_t n = (size_t)json_object_object_length(vers);
    if (n == 0)
        return VKS_OK;
    rec->versions = calloc(n, sizeof *rec->versions);
    if (rec->versions == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    json_object_object_foreach(vers, k, v)
    {
        struct vks_cred_version *cv = &rec->versions[rec->nversions++];
        cv->version = strtoll(k, NULL, 10);
        get_s(v, "created_time", cv->created, sizeof cv->created);
        get_s(v, "deletion_time", cv->deleted, sizeof cv->deleted);
        json_object *d = NULL;
        cv->destroyed = json_object_object_get_ex(v, "destroyed", &d) && json_object_get_boolean(d);
    }
    for (size_t i = 1; i < rec->nversions; i++) /* ascending (insertion sort; n <= max_versions) */
        for (size_t j = i; j > 0 && rec->versions[j - 1].version > rec->versions[j].version; j--) {
            struct vks_cred_version t = rec->versions[j];
            rec->versions[j] = rec->versions[j - 1];
            rec->versions[j - 1] = t;
        }
    return VKS_OK;
}

vks_status vks_cred_record_parse(const char *body, size_t len, const char *name, struct vks_cred_record *rec,
                                 struct vks_err *err)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", name ? name : "");
    json_tokener *tk = json_tokener_new();
    json_object *o = tk && body ? json_tokener_parse_ex(tk, body, (int)len) : NULL;
    if (tk)
        json_tokener_free(tk);
    json_object *d = NULL, *cm = NULL, *cv = NULL;
    if (!o || !json_object_object_get_ex(o, "data", &d) || !json_object_is_type(d, json_type_object)) {
        json_object_put(o);
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "metadata of '%s': the answer is not a KV v2 metadata object",
                           rec->name);
    }
    if (json_object_object_get_ex(d, "current_version", &cv))
        rec->vault_version = json_object_get_int64(cv);
    if (json_object_object_get_ex(d, "custom_metadata", &cm) && json_object_is_type(cm, json_type_object))
        rec->custom = json_object_get(cm);
    else
        cm = NULL;
    char mark[8];
    get_s(cm, "vks_cred", mark, sizeof mark);
    rec->managed = mark[0] != '\0';
    get_s(cm, "username", rec->username, sizeof rec->username);
    get_s(cm, "state", rec->state, sizeof rec->state);
    get_s(cm, "created", rec->created, sizeof rec->created);
    get_s(cm, "rotated", rec->rotated, sizeof rec->rotated);
    get_s(cm, "due", rec->due, sizeof rec->due);
    get_s(cm, "owner", rec->owner, sizeof rec->owner);
    get_s(cm, "tenant", rec->tenant, sizeof rec->tenant);
    get_s(cm, "rotation_id", rec->rotation_id, sizeof rec->rotation_id);
    get_s(cm, "relay", rec->relay, sizeof rec->relay);
    get_s(cm, "rotation_started", rec->rotation_started, sizeof rec->rotation_started);
    get_s(cm, "previous_rotated", rec->previous_rotated, sizeof rec->previous_rotated);
    get_s(cm, "direction", rec->direction, sizeof rec->direction);
    rec->rev = get_n(cm, "rev");
    rec->current_version = get_n(cm, "current_version");
    rec->previous_version = get_n(cm, "previous_version");
    rec->pending_version = get_n(cm, "pending_version");
    parse_lists(cm, rec);
    json_object *vers = NULL;
    json_object_object_get_ex(d, "versions", &vers);
    vks_status st = parse_versions(vers, rec, err);
    json_object_put(o);
    if (st != VKS_OK)
        vks_cred_record_free(rec);
    return st;
}

void vks_cred_record_free(struct vks_cred_record *rec)
{
    if (rec == NULL)
        return;
    vks_cred_restrictions_free(&rec->restrictions);
    free(rec->versions);
    json_object_put(rec->custom);
    memset(rec, 0, sizeof *rec);
}

static bool put_s(json_object *o, const char *k, const char *v)
{
    if (v == NULL || v[0] == '\0') /* Vault keeps values of 1-512 characters: absent = none */
        return true;
    return json_object_object_add(o, k, json_object_new_string(v)) == 0;
}

static bool put_n(json_object *o, const char *k, int64_t v)
{
    char b[24] = "";
    if (v > 0)
        snprintf(b, sizeof b, "%lld", (long long)v);
    return put_s(o, k, b);
}

vks_status vks_cred_metadata_body(const struct vks_cred_record *rec, char **out, struct vks_err *err)
{
    *out = NULL;
    char *dom = NULL, *hosts = NULL;
    vks_status st = vks_cred_list_join(&rec->restrictions.domains, "--domain", &dom, err);
    if (st == VKS_OK)
        st = vks_cred_list_join(&rec->restrictions.hosts, "--ip", &hosts, err);
    json_object *cm = json_object_new_object(), *body = json_object_new_object();
    if (st == VKS_OK && rec->custom && cm) { /* the operator's own keys survive (string values) */
        json_object_object_foreach((json_object *)rec->custom, k, v)
        {
            bool ours = false;
            for (size_t i = 0; i < sizeof our_keys / sizeof our_keys[0]; i++)
                ours = ours || strcmp(k, our_keys[i]) == 0;
            /* Vault stores only non-empty strings: anything else could not be written back */
            if (!ours && json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                json_object_object_add(cm, k, json_object_get(v));
        }
    }
    bool ok = cm && body && put_s(cm, "vks_cred", VKS_CRED_SCHEMA) && put_s(cm, "allowed_domains", dom) &&
              put_s(cm, "allowed_hosts", hosts) && put_s(cm, "username", rec->username) &&
              put_s(cm, "state", rec->state) && put_s(cm, "created", rec->created) &&
              put_s(cm, "rotated", rec->rotated) && put_s(cm, "due", rec->due) && put_n(cm, "rev", rec->rev) &&
              put_n(cm, "current_version", rec->current_version) &&
              put_n(cm, "previous_version", rec->previous_version) &&
              put_n(cm, "pending_version", rec->pending_version) && put_s(cm, "rotation_id", rec->rotation_id) &&
              put_s(cm, "owner", rec->owner) && put_s(cm, "tenant", rec->tenant) && put_s(cm, "relay", rec->relay) &&
              put_s(cm, "rotation_started", rec->rotation_started) &&
              put_s(cm, "previous_rotated", rec->previous_rotated) && put_s(cm, "direction", rec->direction);
    free(dom);
    free(hosts);
    if (st == VKS_OK && ok) {
        json_object_object_add(body, "max_versions", json_object_new_int(VKS_CRED_MAX_VERSIONS));
        json_object_object_add(body, "cas_required", json_object_new_boolean(1));
        json_object_object_add(body, "custom_metadata", cm);
        cm = NULL;
        *out = strdup(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
        if (*out == NULL)
            st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    } else if (st == VKS_OK) {
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    json_object_put(cm);
    json_object_put(body);
    return st;
}

/* ------------------------------------------------------------------ the due-date policy */

static bool digits(const char *s, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

bool vks_cred_parse_time(const char *s, int64_t *t)
{
    int y, mo, d, h, mi, se;
    size_t n = s ? strlen(s) : 0;
    if (n < 20 || n > 40 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se) || s[n - 1] != 'Z')
        return false;
    if (n > 20) { /* a fraction: '.' and 1..9 digits */
        int f;
        if (s[19] != '.' || n - 21 < 1 || n - 21 > 9 || !digits(s + 20, n - 21, &f))
            return false;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return false;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = se };
    time_t tt = timegm(&tm);
    struct tm back;
    if (tt == (time_t)-1 || gmtime_r(&tt, &back) == NULL || back.tm_mday != d || back.tm_mon != mo - 1)
        return false; /* February 30th and the like */
    *t = (int64_t)tt;
    return true;
}

bool vks_cred_parse_days(const char *s, int *days)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 4 && digits(s, n, days) && *days >= 1 && *days <= VKS_CRED_DAYS_MAX;
}

bool vks_cred_parse_duration(const char *s, int64_t *seconds)
{
    size_t n = s ? strlen(s) : 0;
    int v;
    if (n == 1 && s[0] == '0') {
        *seconds = 0;
        return true;
    }
    if (n < 2 || n > 6 || !digits(s, n - 1, &v))
        return false;
    int64_t unit = s[n - 1] == 'd' ? 86400 : s[n - 1] == 'w' ? 7 * 86400 : s[n - 1] == 'h' ? 3600 : 0;
    if (unit == 0 || (int64_t)v * unit > (int64_t)VKS_CRED_DAYS_MAX * 86400)
        return false;
    *seconds = (int64_t)v * unit;
    return true;
}

/* A custom_metadata string as stored: NULL when absent; "" for a value that is not a string. */
static const char *raw(const struct vks_cred_record *rec, const char *k)
{
    json_object *v = NULL;
    if (rec->custom == NULL || !json_object_object_get_ex((json_object *)rec->custom, k, &v))
        return NULL;
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* At most 40 characters of a stored value for a message, non-printable bytes as '?' (the message
   goes to a terminal). */
static const char *quote40(const char *v, char out[41])
{
    size_t i = 0;
    for (; v[i] && i < 40; i++)
        out[i] = (unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f ? '?' : v[i];
    out[i] = '\0';
    return out;
}

void vks_cred_due_eval(const struct vks_cred_record *rec, int64_t now, int64_t within, int default_days,
                       struct vks_cred_due *out)
{
    char q[41];
    memset(out, 0, sizeof *out);
    out->status = VKS_CRED_DUE_INVALID;
    out->days = default_days;
    const char *rot = raw(rec, "rotated"), *due = raw(rec, "due"), *days = raw(rec, "rotation_days");
    int64_t r = 0, d = 0;
    if (days != NULL && !vks_cred_parse_days(days, &out->days)) {
        snprintf(out->why, sizeof out->why, "rotation_days \"%s\" is not a number of days 1-%d", quote40(days, q),
                 VKS_CRED_DAYS_MAX);
        return;
    }
    out->per_credential = days != NULL;
    if (rot == NULL || !vks_cred_parse_time(rot, &r)) {
        snprintf(out->why, sizeof out->why, rot ? "rotated \"%s\" is not a time YYYY-MM-DDTHH:MM:SSZ"
                                                : "rotated is missing%.0s", quote40(rot ? rot : "", q));
        return;
    }
    if (due != NULL && !vks_cred_parse_time(due, &d)) {
        snprintf(out->why, sizeof out->why, "due \"%s\" is not a time YYYY-MM-DDTHH:MM:SSZ", quote40(due, q));
        return;
    }
    out->due = r + (int64_t)out->days * 86400;
    if (due != NULL && d < out->due) {
        out->due = d;
        out->stored_earlier = true;
    }
    out->status = out->due <= now ? VKS_CRED_DUE_OVERDUE : out->due <= now + within ? VKS_CRED_DUE_SOON
                                                                                      : VKS_CRED_DUE_OK;
}
