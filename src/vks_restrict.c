/*
 * vks_restrict: allowed_domains / allowed_hosts from KV v2 custom_metadata (see vks_restrict.h,
 * docs/restrictions.md and docs/internals/restrict.md).
 *
 * Every entry of a list is parsed (and the whole list rejected if one entry is malformed) before a
 * decision is made, so a broken tail can never be skipped because an earlier entry matched.
 */
#include "vks_restrict.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "vks_json.h"

#define NAME_MAX_LEN 253
#define ENTRY_SHOW 64      /* bytes of an entry quoted in an error message */
#define MAX_ENTRIES 4096

enum entry_kind { E_NAME, E_SUFFIX, E_ADDR };

struct entry {
    enum entry_kind kind;
    char name[NAME_MAX_LEN + 1]; /* normalised: lower case, no trailing dot; suffix without "*." */
    int family;                  /* AF_INET / AF_INET6 for E_ADDR */
    unsigned char addr[16];
    unsigned prefix;             /* bits that must match for E_ADDR */
};

/* The destination or domain of the context, parsed once. */
struct target {
    bool present;
    bool is_addr;
    int family;
    unsigned char addr[16];
    char name[NAME_MAX_LEN + 2];
};

/* Quotes at most ENTRY_SHOW bytes of s for a message, replacing anything unprintable. */
static void show(char out[ENTRY_SHOW + 4], const char *s, size_t n)
{
    size_t k = n > ENTRY_SHOW ? ENTRY_SHOW : n;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (n > k) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/*
 * Normalises and checks a DNS name (letters, digits, '-', '_', labels 1..63, total <= 253, one
 * trailing dot allowed). Writes the lower-case form without the trailing dot into out.
 * Returns false when malformed. *all_numeric reports whether every label is digits only.
 */
static bool parse_name(const char *s, size_t n, char out[NAME_MAX_LEN + 1], bool *all_numeric)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    size_t label = 0;
    bool numeric = true, label_numeric = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            numeric = numeric && label_numeric;
            label = 0;
            label_numeric = true;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (c > 0x7f)
                return false;
            if (label == 0 && c == '-')
                return false;
            if (++label > 63)
                return false;
            if (!isdigit(c))
                label_numeric = false;
        } else {
            return false;
        }
        out[i] = (char)tolower(c);
    }
    if (label == 0 || s[n - 1] == '-')
        return false;
    numeric = numeric && label_numeric;
    out[n] = '\0';
    if (all_numeric)
        *all_numeric = numeric;
    return true;
}

/* "*.suffix" or a plain name. */
static bool parse_name_entry(const char *s, size_t n, struct entry *e)
{
    bool numeric = false;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        e->kind = E_SUFFIX;
        return parse_name(s + 2, n - 2, e->name, &numeric);
    }
    e->kind = E_NAME;
    if (!parse_name(s, n, e->name, &numeric))
        return false;
    /* "192.168.1" or "10.0.0.300" is a broken address, not a host name */
    return !numeric;
}

static bool parse_addr(const char *s, size_t n, int *family, unsigned char addr[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* ::ffff:a.b.c.d is the IPv4 address a.b.c.d, and ::ffff:a.b.c.d/(96+n) the IPv4 range a.b.c.d/n,
 * wherever they are written (list entries and destinations). A mapped-looking address with a
 * prefix shorter than 96 spans IPv4 and IPv6 at once: false (the entry is malformed). */
static bool unmap_v4(int *family, unsigned char addr[16], unsigned *prefix)
{
    if (*family != AF_INET6 || memcmp(addr, v4mapped, 12) != 0)
        return true;
    if (*prefix < 96)
        return false;
    memmove(addr, addr + 12, 4);
    memset(addr + 4, 0, 12);
    *family = AF_INET;
    *prefix -= 96;
    return true;
}

/* Address, CIDR range, host name or *.suffix. */
static bool parse_host_entry(const char *s, size_t n, struct entry *e)
{
    const char *slash = memchr(s, '/', n);
    if (slash != NULL) {
        size_t an = (size_t)(slash - s), pn = n - an - 1;
        if (!parse_addr(s, an, &e->family, e->addr))
            return false;
        if (pn == 0 || pn > 3)
            return false;
        unsigned p = 0;
        for (size_t i = 0; i < pn; i++) {
            if (!isdigit((unsigned char)slash[1 + i]))
                return false;
            p = p * 10 + (unsigned)(slash[1 + i] - '0');
        }
        if (p > (e->family == AF_INET ? 32u : 128u))
            return false;
        e->kind = E_ADDR;
        e->prefix = p;
        return unmap_v4(&e->family, e->addr, &e->prefix);
    }
    if (parse_addr(s, n, &e->family, e->addr)) {
        e->kind = E_ADDR;
        e->prefix = e->family == AF_INET ? 32 : 128;
        return unmap_v4(&e->family, e->addr, &e->prefix);
    }
    return parse_name_entry(s, n, e);
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static bool name_matches(const struct entry *e, const char *name)
{
    if (e->kind == E_NAME)
        return strcmp(e->name, name) == 0;
    size_t nl = strlen(name), sl = strlen(e->name);
    return nl > sl + 1 && name[nl - sl - 1] == '.' && memcmp(name + nl - sl, e->name, sl) == 0;
}

static bool entry_matches(const struct entry *e, const struct target *t)
{
    if (!t->present)
        return false;
    if (e->kind == E_ADDR) {
        if (!t->is_addr || t->family != e->family)
            return false;
        return prefix_equal(e->addr, t->addr, e->prefix);
    }
    if (t->is_addr)
        return false;
    return name_matches(e, t->name);
}

/* Lower-cases a context value into t->name without a trailing dot; never fails (a value that is
 * not a name simply matches nothing). */
static void target_name(struct target *t, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n > NAME_MAX_LEN + 1)
        n = NAME_MAX_LEN + 1; /* longer than any valid entry: cannot match */
    for (size_t i = 0; i < n; i++)
        t->name[i] = (char)tolower((unsigned char)s[i]);
    t->name[n] = '\0';
    t->present = n > 0;
}

static void target_domain(struct target *t, const char *domain)
{
    memset(t, 0, sizeof *t);
    if (domain != NULL)
        target_name(t, domain, strlen(domain));
}

/* "host", "host:port", "[v6]", "[v6]:port", "v4:port", "v6" */
static void target_destination(struct target *t, const char *dest)
{
    memset(t, 0, sizeof *t);
    if (dest == NULL || dest[0] == '\0')
        return;
    size_t n = strlen(dest);
    const char *h = dest;
    size_t hn = n;
    if (dest[0] == '[') {
        const char *close = memchr(dest, ']', n);
        if (close == NULL)
            return; /* malformed: present but matches nothing */
        h = dest + 1;
        hn = (size_t)(close - h);
        t->present = true;
        if (!parse_addr(h, hn, &t->family, t->addr))
            return;
        t->is_addr = true;
    } else {
        const char *c1 = memchr(dest, ':', n);
        if (c1 != NULL && memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - dest)) == NULL)
            hn = (size_t)(c1 - dest); /* exactly one colon: host:port */
        if (parse_addr(h, hn, &t->family, t->addr)) {
            t->present = true;
            t->is_addr = true;
        } else {
            target_name(t, h, hn);
            t->present = true;
            return;
        }
    }
    unsigned all = 128;
    unmap_v4(&t->family, t->addr, &all); /* ::ffff:a.b.c.d is the IPv4 address a.b.c.d */
}

enum list_kind { L_DOMAINS, L_HOSTS };

static const char *list_field(enum list_kind k)
{
    return k == L_DOMAINS ? "allowed_domains" : "allowed_hosts";
}

static const char *list_grammar(enum list_kind k)
{
    return k == L_DOMAINS ? "a domain name or *.suffix"
                          : "an IPv4/IPv6 address, CIDR range, host name or *.suffix";
}

/* Parses one entry; on failure fills err naming the field and position. */
static vks_status one_entry(enum list_kind k, const char *s, size_t n, unsigned pos,
                            const struct target *t, bool *matched, struct vks_err *err)
{
    struct entry e;
    memset(&e, 0, sizeof e);
    bool ok = k == L_DOMAINS ? parse_name_entry(s, n, &e) : parse_host_entry(s, n, &e);
    if (!ok) {
        char q[ENTRY_SHOW + 4];
        show(q, s, n);
        return vks_err_set(err, VKS_E_RESTRICTED,
                           "custom_metadata.%s is malformed: entry %u (\"%s\") is not %s; "
                           "the secret is refused until the list is fixed",
                           list_field(k), pos, q, list_grammar(k));
    }
    if (t != NULL && entry_matches(&e, t))
        *matched = true;
    return VKS_OK;
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Walks a list (string or array of strings): validates every entry, reports a match against t. */
static vks_status walk_list(enum list_kind k, json_object *v, const struct target *t,
                            bool *matched, struct vks_err *err)
{
    const char *field = list_field(k);
    unsigned count = 0;
    *matched = false;
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t n = (size_t)json_object_get_string_len(v);
        size_t i = 0;
        bool need_entry = false; /* a comma was seen: an entry must follow */
        while (i < n) {
            while (i < n && s[i] != ',' && is_sep(s[i]))
                i++;
            if (i < n && s[i] == ',') {
                if (count == 0 || need_entry)
                    return vks_err_set(err, VKS_E_RESTRICTED,
                                       "custom_metadata.%s is malformed: empty entry %u "
                                       "(stray comma); the secret is refused until the list is fixed",
                                       field, count + 1);
                need_entry = true;
                i++;
                continue;
            }
            if (i >= n)
                break;
            size_t start = i;
            while (i < n && !is_sep(s[i]))
                i++;
            if (++count > MAX_ENTRIES)
                return vks_err_set(err, VKS_E_RESTRICTED,
                                   "custom_metadata.%s is malformed: more than %d entries", field,
                                   MAX_ENTRIES);
            vks_status st = one_entry(k, s + start, i - start, count, t, matched, err);
            if (st != VKS_OK)
                return st;
            need_entry = false;
        }
        if (need_entry)
            return vks_err_set(err, VKS_E_RESTRICTED,
                               "custom_metadata.%s is malformed: it ends with a comma; the secret "
                               "is refused until the list is fixed",
                               field);
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        if (n > MAX_ENTRIES)
            return vks_err_set(err, VKS_E_RESTRICTED,
                               "custom_metadata.%s is malformed: more than %d entries", field,
                               MAX_ENTRIES);
        for (size_t i = 0; i < n; i++) {
            json_object *el = json_object_array_get_idx(v, i);
            if (!json_object_is_type(el, json_type_string))
                return vks_err_set(err, VKS_E_RESTRICTED,
                                   "custom_metadata.%s is malformed: entry %zu is not a string; "
                                   "the secret is refused until the list is fixed",
                                   field, i + 1);
            const char *s = json_object_get_string(el);
            size_t sn = (size_t)json_object_get_string_len(el);
            while (sn > 0 && is_sep(s[sn - 1]) && s[sn - 1] != ',')
                sn--;
            while (sn > 0 && is_sep(*s) && *s != ',') {
                s++;
                sn--;
            }
            count++;
            vks_status st = one_entry(k, s, sn, count, t, matched, err);
            if (st != VKS_OK)
                return st;
        }
    } else {
        return vks_err_set(err, VKS_E_RESTRICTED,
                           "custom_metadata.%s is malformed: expected a string of entries "
                           "separated by commas, got JSON %s; the secret is refused until the list "
                           "is fixed",
                           field, json_type_to_name(json_object_get_type(v)));
    }
    if (count == 0)
        return vks_err_set(err, VKS_E_RESTRICTED,
                           "custom_metadata.%s is malformed: the list is empty (remove the key "
                           "to lift the restriction); the secret is refused until it is fixed",
                           field);
    return VKS_OK;
}

/* custom_metadata that cannot be read might hold a restriction: the secret is refused. */
#define UNREADABLE "custom_metadata cannot be read as restrictions: "
#define REFUSED "; the secret is refused until the metadata is fixed"

/* Parses the JSON object; *obj is NULL (and VKS_OK) when there is no metadata at all (NULL, empty
 * or the literal null, which is how Vault says "none"). */
static vks_status parse_metadata(const char *json, size_t len, json_object **obj,
                                 struct vks_err *err)
{
    *obj = NULL;
    if (json == NULL || len == 0)
        return VKS_OK;
    if (len > VKS_RESTRICT_MAX_JSON)
        return vks_err_set(err, VKS_E_RESTRICTED, UNREADABLE "it is too long (%zu bytes, limit %d)" REFUSED,
                           len, VKS_RESTRICT_MAX_JSON);
    /* json-c keeps the last of a repeated key silently: refuse one first, as every reader does
     * (bad_response, issue 10 item 3; still a refusal: the cache's admit path never serves it) */
    struct vks_err jerr0;
    if (vks_json_scan(json, len, NULL, 0, "custom_metadata", &jerr0) == VKS_E_BAD_RESPONSE &&
        strstr(jerr0.msg, "repeated"))
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s", jerr0.msg);
    json_tokener *tok = json_tokener_new_ex(8);
    if (tok == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory parsing custom_metadata");
    json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (o == NULL && jerr == json_tokener_continue && end == len) {
        /* a bare literal or number at the very end: a NUL byte tells json-c the text is over */
        o = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_free(tok);
    if (jerr != json_tokener_success) {
        json_object_put(o);
        return vks_err_set(err, VKS_E_RESTRICTED, UNREADABLE "it is not valid JSON (%s)" REFUSED,
                           jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)json[i])) {
            json_object_put(o);
            return vks_err_set(err, VKS_E_RESTRICTED,
                               UNREADABLE "it is not valid JSON (trailing data)" REFUSED);
        }
    }
    if (o == NULL) /* the literal null */
        return VKS_OK;
    if (!json_object_is_type(o, json_type_object)) {
        enum json_type t = json_object_get_type(o);
        json_object_put(o);
        return vks_err_set(err, VKS_E_RESTRICTED, UNREADABLE "it is a JSON %s, not an object" REFUSED,
                           json_type_to_name(t));
    }
    *obj = o;
    return VKS_OK;
}

/* A key that reads as a restriction once case, separators and anything but ASCII letters and
 * digits are ignored: what is left, lower-cased, starts with "allow" or contains "allowed"
 * (Allowed_Domains, allowed-hosts, "allowed domains", allowedHosts, allowlist, hosts_allowed,
 * disallowed_domains). */
static bool looks_like_restriction(const char *key)
{
    static const char word[] = "allowed";
    char head[5], win[sizeof word - 1];
    size_t n = 0;
    bool contains = false;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (*p > 0x7f || !isalnum(*p))
            continue;
        char c = (char)tolower(*p);
        if (n < sizeof head)
            head[n] = c;
        memmove(win, win + 1, sizeof win - 1);
        win[sizeof win - 1] = c;
        n++;
        contains = contains || (n >= sizeof win && memcmp(win, word, sizeof win) == 0);
    }
    return contains || (n >= sizeof head && memcmp(head, "allow", sizeof head) == 0);
}

/* Only the exact keys allowed_domains and allowed_hosts are understood; any other key that looks
 * like a restriction (a typo, another case or separator) would otherwise lift one: refused. */
static vks_status check_unknown_keys(json_object *o, struct vks_err *err)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        if (strcmp(key, "allowed_domains") != 0 && strcmp(key, "allowed_hosts") != 0 &&
            looks_like_restriction(key)) {
            char q[ENTRY_SHOW + 4];
            show(q, key, strlen(key));
            return vks_err_set(err, VKS_E_RESTRICTED,
                               "custom_metadata key \"%s\" looks like a restriction but is not one "
                               "of allowed_domains, allowed_hosts (exact spelling, lower case); the "
                               "secret is refused until the key is fixed",
                               q);
        }
    }
    return VKS_OK;
}

static vks_status evaluate(const char *json, size_t len, const struct vks_restrict_ctx *ctx,
                           bool *restricted, struct vks_err *err)
{
    json_object *o = NULL;
    vks_status st = parse_metadata(json, len, &o, err);
    if (restricted)
        *restricted = false;
    if (st != VKS_OK || o == NULL)
        return st;
    st = check_unknown_keys(o, err);
    json_object *lists[2] = { NULL, NULL };
    bool present[2] = { false, false }; /* a key whose value is JSON null is present (and malformed) */
    if (st == VKS_OK) {
        present[L_DOMAINS] = json_object_object_get_ex(o, "allowed_domains", &lists[L_DOMAINS]);
        present[L_HOSTS] = json_object_object_get_ex(o, "allowed_hosts", &lists[L_HOSTS]);
        if (restricted)
            *restricted = present[0] || present[1];
    }
    /* validate both lists first, so a malformed list is reported whatever the context */
    bool matched[2] = { false, false };
    struct target tg[2];
    target_domain(&tg[L_DOMAINS], ctx ? ctx->domain : NULL);
    target_destination(&tg[L_HOSTS], ctx ? ctx->destination : NULL);
    for (int k = 0; st == VKS_OK && k < 2; k++)
        if (present[k])
            st = walk_list((enum list_kind)k, lists[k], ctx ? &tg[k] : NULL, &matched[k], err);
    for (int k = 0; st == VKS_OK && ctx != NULL && k < 2; k++) {
        if (!present[k] || matched[k])
            continue;
        const char *what = k == L_DOMAINS ? "domain" : "destination";
        const char *val = k == L_DOMAINS ? ctx->domain : ctx->destination;
        if (!tg[k].present) {
            st = vks_err_set(err, VKS_E_RESTRICTED,
                             "the secret is restricted by custom_metadata.%s and the lookup "
                             "context has no %s",
                             list_field((enum list_kind)k), what);
        } else {
            char q[ENTRY_SHOW + 4];
            show(q, val, strlen(val));
            st = vks_err_set(err, VKS_E_RESTRICTED,
                             "%s \"%s\" is not in the secret's custom_metadata.%s", what, q,
                             list_field((enum list_kind)k));
        }
    }
    json_object_put(o);
    return st;
}

vks_status vks_restrict_check(const char *custom_metadata_json, size_t len,
                              const struct vks_restrict_ctx *ctx, struct vks_err *err)
{
    if (ctx == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_restrict_check: ctx is NULL");
    vks_status st = evaluate(custom_metadata_json, len, ctx, NULL, err);
    if (st == VKS_OK)
        vks_err_clear(err);
    return st;
}

vks_status vks_restrict_validate(const char *custom_metadata_json, size_t len, bool *restricted,
                                 struct vks_err *err)
{
    vks_status st = evaluate(custom_metadata_json, len, NULL, restricted, err);
    if (st == VKS_OK)
        vks_err_clear(err);
    return st;
}

vks_status vks_restrict_entry(const char *s, size_t n, bool hosts, struct vks_restrict_entry_info *out)
{
    if (s == NULL || out == NULL)
        return VKS_E_INVALID_ARG;
    struct entry e;
    memset(&e, 0, sizeof e);
    memset(out, 0, sizeof *out);
    bool ok = hosts ? parse_host_entry(s, n, &e) : parse_name_entry(s, n, &e);
    if (!ok)
        return VKS_E_INVALID_INPUT;
    if (e.kind == E_ADDR) {
        bool full = e.prefix == (e.family == AF_INET ? 32u : 128u);
        out->type = full ? VKS_RESTRICT_ADDRESS : VKS_RESTRICT_RANGE;
        out->family = e.family == AF_INET ? 4 : 6;
        out->prefix = e.prefix;
        /* the canonical text: the address as inet_ntop writes it, "/prefix" for a range; a
           mapped IPv6 form becomes its IPv4 address, as the resolver compares it */
        char a[INET6_ADDRSTRLEN];
        inet_ntop(e.family, e.addr, a, sizeof a);
        if (full)
            snprintf(out->canonical, sizeof out->canonical, "%s", a);
        else
            snprintf(out->canonical, sizeof out->canonical, "%s/%u", a, e.prefix);
        return VKS_OK;
    }
    out->type = e.kind == E_SUFFIX ? VKS_RESTRICT_SUFFIX : VKS_RESTRICT_NAME;
    snprintf(out->canonical, sizeof out->canonical, "%s%s", e.kind == E_SUFFIX ? "*." : "", e.name);
    return VKS_OK;
}
