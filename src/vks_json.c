/*
 * vks_json: allocation-free JSON scanner (see vks_json.h and docs/internals/json.md).
 *
 * A recursive-descent validator whose recursion is bounded by VKS_JSON_MAX_DEPTH. While it walks
 * the document it carries a bit mask of the queries whose path still matches the keys seen so far;
 * a query whose whole path matched records the span of the value it lands on.
 */
#include "vks_json.h"

#include <stdlib.h>
#include <string.h>

#include "vks_secmem.h"

/* One object key seen so far: the object it belongs to (offset of its '{'), a hash of the decoded
 * key, and where the key's string is. len 0 = empty slot. Holds no byte of the document. */
struct keyrec {
    uint32_t obj, hash, off, len;
};
#define KEYS_STACK 128   /* index slots on the stack; more keys move it to the heap */

struct scanner {
    const unsigned char *b;
    size_t n;
    size_t i;
    struct vks_json_query *q;
    size_t nq;
    const char *what;
    struct vks_err *err;
    bool failed;
    vks_status status;           /* of the first failure */
    struct keyrec *keys;         /* open-addressing index of every object key (duplicates) */
    size_t kcap, kn;
    bool keys_heap;
};

static int fail(struct scanner *s, const char *expected)
{
    if (!s->failed) {
        s->failed = true;
        s->status = VKS_E_BAD_RESPONSE;
        if (s->i >= s->n)
            vks_err_set(s->err, VKS_E_BAD_RESPONSE, "malformed JSON in %s: truncated at byte %zu (expected %s)",
                        s->what ? s->what : "document", s->i, expected);
        else
            vks_err_set(s->err, VKS_E_BAD_RESPONSE, "malformed JSON in %s at byte %zu: expected %s",
                        s->what ? s->what : "document", s->i, expected);
    }
    return -1;
}

static void skip_ws(struct scanner *s)
{
    while (s->i < s->n) {
        unsigned char c = s->b[s->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        s->i++;
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of a valid UTF-8 sequence at p (at most avail bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    if (avail < need + 1) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k <= need; k++)
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    return need + 1;
}

/* Validates a string starting at the opening quote; leaves s->i after the closing quote. */
static int scan_string(struct scanner *s)
{
    if (s->i >= s->n || s->b[s->i] != '"')
        return fail(s, "'\"'");
    s->i++;
    while (s->i < s->n) {
        unsigned char c = s->b[s->i];
        if (c == '"') {
            s->i++;
            return 0;
        }
        if (c < 0x20)
            return fail(s, "no control character inside a string");
        if (c == '\\') {
            s->i++;
            if (s->i >= s->n)
                return fail(s, "an escape");
            c = s->b[s->i];
            if (c == 'u') {
                for (int k = 1; k <= 4; k++) {
                    if (s->i + k >= s->n) {
                        s->i = s->n;
                        return fail(s, "4 hex digits");
                    }
                    if (hexval(s->b[s->i + k]) < 0) {
                        s->i += k;
                        return fail(s, "a hex digit");
                    }
                }
                s->i += 5;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                s->i++;
            } else {
                return fail(s, "a valid escape");
            }
            continue;
        }
        if (c < 0x80) {
            s->i++;
            continue;
        }
        size_t l = utf8_len(s->b + s->i, s->n - s->i);
        if (l == 0)
            return fail(s, "valid UTF-8");
        s->i += l;
    }
    return fail(s, "'\"'");
}

static int scan_number(struct scanner *s)
{
    if (s->i < s->n && s->b[s->i] == '-')
        s->i++;
    if (s->i >= s->n)
        return fail(s, "a digit");
    if (s->b[s->i] == '0') {
        s->i++;
    } else if (s->b[s->i] >= '1' && s->b[s->i] <= '9') {
        while (s->i < s->n && s->b[s->i] >= '0' && s->b[s->i] <= '9')
            s->i++;
    } else {
        return fail(s, "a digit");
    }
    if (s->i < s->n && s->b[s->i] == '.') {
        s->i++;
        if (s->i >= s->n || s->b[s->i] < '0' || s->b[s->i] > '9')
            return fail(s, "a digit after '.'");
        while (s->i < s->n && s->b[s->i] >= '0' && s->b[s->i] <= '9')
            s->i++;
    }
    if (s->i < s->n && (s->b[s->i] == 'e' || s->b[s->i] == 'E')) {
        s->i++;
        if (s->i < s->n && (s->b[s->i] == '+' || s->b[s->i] == '-'))
            s->i++;
        if (s->i >= s->n || s->b[s->i] < '0' || s->b[s->i] > '9')
            return fail(s, "an exponent digit");
        while (s->i < s->n && s->b[s->i] >= '0' && s->b[s->i] <= '9')
            s->i++;
    }
    return 0;
}

static int scan_literal(struct scanner *s, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t k = 0; k < l; k++) {
        if (s->i >= s->n || s->b[s->i] != (unsigned char)lit[k])
            return fail(s, lit);
        s->i++;
    }
    return 0;
}

/* Decoding iterator over a validated string's contents (between the quotes). */
struct str_it {
    const unsigned char *p;
    const unsigned char *end;
};

static unsigned hex4(const unsigned char *p)
{
    return (unsigned)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

static int put_utf8(unsigned cp, unsigned char out[4])
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Next decoded chunk (1..4 bytes) into ch; 0 at the end. */
static int str_next(struct str_it *it, unsigned char ch[4])
{
    if (it->p >= it->end)
        return 0;
    unsigned char c = *it->p;
    if (c != '\\') {
        ch[0] = c;
        it->p++;
        return 1;
    }
    c = it->p[1];
    it->p += 2;
    switch (c) {
    case 'b': ch[0] = '\b'; return 1;
    case 'f': ch[0] = '\f'; return 1;
    case 'n': ch[0] = '\n'; return 1;
    case 'r': ch[0] = '\r'; return 1;
    case 't': ch[0] = '\t'; return 1;
    case 'u': break;
    default: ch[0] = c; return 1; /* '"', '\\', '/' */
    }
    unsigned cp = hex4(it->p);
    it->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (it->end - it->p >= 6 && it->p[0] == '\\' && it->p[1] == 'u') {
            unsigned lo = hex4(it->p + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                it->p += 6;
                return put_utf8(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), ch);
            }
        }
        cp = 0xFFFD;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    return put_utf8(cp, ch);
}

static void str_it_init(struct str_it *it, const char *buf, const struct vks_json_span *s)
{
    it->p = (const unsigned char *)buf + s->off + 1;
    it->end = (const unsigned char *)buf + s->off + s->len - 1;
}

static bool key_equals(const unsigned char *b, size_t off, size_t len, const char *lit)
{
    struct vks_json_span sp = { VKS_JSON_STRING, off, len };
    return vks_json_string_equals((const char *)b, &sp, lit);
}

/* Hash of a validated key's decoded bytes, mixed with its object's offset. */
static uint32_t key_hash(const unsigned char *b, size_t off, size_t len, uint32_t obj)
{
    struct vks_json_span sp = { VKS_JSON_STRING, off, len };
    struct str_it it;
    unsigned char ch[4];
    int k;
    uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)obj * 0x9E3779B97F4A7C15ull);
    str_it_init(&it, (const char *)b, &sp);
    while ((k = str_next(&it, ch)) > 0)
        for (int j = 0; j < k; j++) {
            h ^= ch[j];
            h *= 0x100000001b3ull;
        }
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* Two validated key spans decode to the same bytes ("a" and "\u0061" are the same key). */
static bool keys_equal(const unsigned char *b, size_t o1, size_t l1, size_t o2, size_t l2)
{
    struct vks_json_span s1 = { VKS_JSON_STRING, o1, l1 }, s2 = { VKS_JSON_STRING, o2, l2 };
    struct str_it a, c;
    unsigned char ba[4], bc[4];
    int na = 0, nc = 0, ia = 0, ic = 0;
    str_it_init(&a, (const char *)b, &s1);
    str_it_init(&c, (const char *)b, &s2);
    for (;;) {
        if (ia == na) {
            na = str_next(&a, ba);
            ia = 0;
        }
        if (ic == nc) {
            nc = str_next(&c, bc);
            ic = 0;
        }
        if (na == 0 || nc == 0)
            return na == 0 && nc == 0;
        if (ba[ia++] != bc[ic++])
            return false;
    }
}

static void key_insert(struct keyrec *tab, size_t cap, const struct keyrec *r)
{
    for (size_t i = r->hash & (cap - 1);; i = (i + 1) & (cap - 1))
        if (tab[i].len == 0) {
            tab[i] = *r;
            return;
        }
}

static int key_grow(struct scanner *s)
{
    size_t cap = s->kcap * 2;
    struct keyrec *t = calloc(cap, sizeof *t);
    if (!t) {
        if (!s->failed) {
            s->failed = true;
            s->status = vks_err_set(s->err, VKS_E_NOMEM, "out of memory indexing the keys of %s",
                                    s->what ? s->what : "document");
        }
        return -1;
    }
    for (size_t i = 0; i < s->kcap; i++)
        if (s->keys[i].len)
            key_insert(t, cap, &s->keys[i]);
    if (s->keys_heap)
        free(s->keys);
    s->keys = t;
    s->kcap = cap;
    s->keys_heap = true;
    return 0;
}

/* Records key [koff, koff+klen) of the object at obj; a key already in that object is refused:
 * readers differ on which of the two counts (Go keeps the last, or merges into a struct's map). */
static int key_add(struct scanner *s, size_t obj, size_t koff, size_t klen)
{
    if (!s->keys)
        return 0;
    if ((s->kn + 1) * 2 > s->kcap && key_grow(s) < 0)
        return -1;
    struct keyrec r = { (uint32_t)obj, key_hash(s->b, koff, klen, (uint32_t)obj), (uint32_t)koff, (uint32_t)klen };
    for (size_t i = r.hash & (s->kcap - 1);; i = (i + 1) & (s->kcap - 1)) {
        struct keyrec *e = &s->keys[i];
        if (e->len == 0) {
            *e = r;
            s->kn++;
            return 0;
        }
        if (e->obj == r.obj && e->hash == r.hash && keys_equal(s->b, e->off, e->len, koff, klen)) {
            if (!s->failed) {
                s->failed = true;
                s->status = vks_err_set(s->err, VKS_E_BAD_RESPONSE,
                                        "malformed JSON in %s at byte %zu: a key is repeated in one object "
                                        "(refused)", s->what ? s->what : "document", koff);
            }
            return -1;
        }
    }
}

static void record(struct scanner *s, uint32_t mask, size_t level, enum vks_json_type t, size_t off)
{
    for (size_t k = 0; mask && k < s->nq; k++) {
        if ((mask & (1u << k)) && s->q[k].npath == level) {
            s->q[k].found.type = t;
            s->q[k].found.off = off;
            s->q[k].found.len = s->i - off;
        }
    }
}

static int scan_value(struct scanner *s, int depth, uint32_t mask, size_t level, struct vks_json_span *out);

static int scan_object(struct scanner *s, int depth, uint32_t mask, size_t level)
{
    size_t obj = s->i;
    s->i++; /* '{' */
    skip_ws(s);
    if (s->i < s->n && s->b[s->i] == '}') {
        s->i++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        size_t koff = s->i;
        if (scan_string(s) < 0 || key_add(s, obj, koff, s->i - koff) < 0)
            return -1;
        uint32_t child = 0;
        for (size_t k = 0; mask && k < s->nq; k++) {
            if ((mask & (1u << k)) && s->q[k].npath > level &&
                key_equals(s->b, koff, s->i - koff, s->q[k].path[level]))
                child |= 1u << k;
        }
        skip_ws(s);
        if (s->i >= s->n || s->b[s->i] != ':')
            return fail(s, "':'");
        s->i++;
        if (scan_value(s, depth, child, level + 1, NULL) < 0)
            return -1;
        skip_ws(s);
        if (s->i >= s->n)
            return fail(s, "',' or '}'");
        if (s->b[s->i] == ',') {
            s->i++;
            continue;
        }
        if (s->b[s->i] == '}') {
            s->i++;
            return 0;
        }
        return fail(s, "',' or '}'");
    }
}

static int scan_array(struct scanner *s, int depth)
{
    s->i++; /* '[' */
    skip_ws(s);
    if (s->i < s->n && s->b[s->i] == ']') {
        s->i++;
        return 0;
    }
    for (;;) {
        if (scan_value(s, depth, 0, 0, NULL) < 0)
            return -1;
        skip_ws(s);
        if (s->i >= s->n)
            return fail(s, "',' or ']'");
        if (s->b[s->i] == ',') {
            s->i++;
            continue;
        }
        if (s->b[s->i] == ']') {
            s->i++;
            return 0;
        }
        return fail(s, "',' or ']'");
    }
}

static int scan_value(struct scanner *s, int depth, uint32_t mask, size_t level, struct vks_json_span *out)
{
    skip_ws(s);
    if (s->i >= s->n)
        return fail(s, "a value");
    size_t off = s->i;
    enum vks_json_type t;
    int rc;
    switch (s->b[s->i]) {
    case '{':
        if (depth >= VKS_JSON_MAX_DEPTH)
            return fail(s, "less nesting");
        t = VKS_JSON_OBJECT;
        rc = scan_object(s, depth + 1, mask, level);
        break;
    case '[':
        if (depth >= VKS_JSON_MAX_DEPTH)
            return fail(s, "less nesting");
        t = VKS_JSON_ARRAY;
        rc = scan_array(s, depth + 1);
        break;
    case '"': t = VKS_JSON_STRING; rc = scan_string(s); break;
    case 't': t = VKS_JSON_TRUE; rc = scan_literal(s, "true"); break;
    case 'f': t = VKS_JSON_FALSE; rc = scan_literal(s, "false"); break;
    case 'n': t = VKS_JSON_NULL; rc = scan_literal(s, "null"); break;
    default:
        if (s->b[s->i] == '-' || (s->b[s->i] >= '0' && s->b[s->i] <= '9')) {
            t = VKS_JSON_NUMBER;
            rc = scan_number(s);
        } else {
            return fail(s, "a value");
        }
    }
    if (rc < 0)
        return -1;
    if (mask)
        record(s, mask, level, t, off);
    if (out) {
        out->type = t;
        out->off = off;
        out->len = s->i - off;
    }
    return 0;
}

vks_status vks_json_scan(const char *buf, size_t len, struct vks_json_query *q, size_t nq,
                         const char *what, struct vks_err *err)
{
    if (nq > VKS_JSON_MAX_QUERY || (nq && !q) || (!buf && len))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_scan: bad arguments");
    uint32_t mask = 0;
    for (size_t k = 0; k < nq; k++) {
        if (q[k].npath > VKS_JSON_MAX_PATH)
            return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_scan: query path too long");
        for (size_t j = 0; j < q[k].npath; j++)
            if (!q[k].path[j])
                return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_scan: NULL path component");
        q[k].found.type = VKS_JSON_NONE;
        q[k].found.off = q[k].found.len = 0;
        mask |= 1u << k;
    }
    if (len > UINT32_MAX)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s is larger than 4 GiB", what ? what : "JSON document");
    struct keyrec stack_keys[KEYS_STACK];
    memset(stack_keys, 0, sizeof stack_keys);
    struct scanner s = { (const unsigned char *)(buf ? buf : ""), len, 0, q, nq, what, err, false, VKS_OK,
                         stack_keys, KEYS_STACK, 0, false };
    if (scan_value(&s, 0, mask, 0, NULL) == 0) {
        skip_ws(&s);
        if (s.i != s.n)
            fail(&s, "end of document");
    }
    if (s.keys_heap)
        free(s.keys);
    if (s.failed) {
        for (size_t k = 0; k < nq; k++)
            q[k].found.type = VKS_JSON_NONE;
        return s.status;
    }
    return VKS_OK;
}

vks_status vks_json_find(const char *buf, size_t len, const char *dotted_path,
                         struct vks_json_span *out, struct vks_err *err)
{
    char tmp[256];
    struct vks_json_query q = { .npath = 0 };
    if (!dotted_path || !out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_find: bad arguments");
    size_t l = strlen(dotted_path);
    if (l >= sizeof tmp)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_find: path too long");
    memcpy(tmp, dotted_path, l + 1);
    if (l > 0) {
        char *p = tmp;
        for (;;) {
            if (q.npath == VKS_JSON_MAX_PATH)
                return vks_err_set(err, VKS_E_INVALID_ARG, "vks_json_find: path too long");
            q.path[q.npath++] = p;
            char *dot = strchr(p, '.');
            if (!dot)
                break;
            *dot = '\0';
            p = dot + 1;
        }
    }
    vks_status st = vks_json_scan(buf, len, &q, 1, NULL, err);
    *out = q.found;
    return st;
}

size_t vks_json_string_decoded_len(const char *buf, const struct vks_json_span *s)
{
    if (!s || s->type != VKS_JSON_STRING || s->len < 2)
        return 0;
    struct str_it it;
    unsigned char ch[4];
    size_t n = 0;
    int k;
    str_it_init(&it, buf, s);
    while ((k = str_next(&it, ch)) > 0)
        n += (size_t)k;
    vks_wipe(ch, sizeof ch);
    return n;
}

vks_status vks_json_string_decode(const char *buf, const struct vks_json_span *s,
                                  unsigned char *out, size_t cap, size_t *out_len,
                                  struct vks_err *err)
{
    if (!s || s->type != VKS_JSON_STRING || s->len < 2 || (!out && cap))
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "JSON value is not a string");
    struct str_it it;
    unsigned char ch[4];
    size_t n = 0;
    int k;
    str_it_init(&it, buf, s);
    while ((k = str_next(&it, ch)) > 0) {
        if (n + (size_t)k > cap) {
            vks_wipe(ch, sizeof ch);
            if (out)
                vks_wipe(out, cap);
            if (out_len)
                *out_len = 0;
            return vks_err_set(err, VKS_E_BAD_RESPONSE, "JSON string longer than %zu bytes", cap);
        }
        memcpy(out + n, ch, (size_t)k);
        n += (size_t)k;
    }
    vks_wipe(ch, sizeof ch);
    if (out_len)
        *out_len = n;
    return VKS_OK;
}

bool vks_json_string_equals(const char *buf, const struct vks_json_span *s, const char *lit)
{
    if (!s || s->type != VKS_JSON_STRING || s->len < 2 || !lit)
        return false;
    struct str_it it;
    unsigned char ch[4];
    const unsigned char *l = (const unsigned char *)lit;
    int k;
    str_it_init(&it, buf, s);
    while ((k = str_next(&it, ch)) > 0) {
        for (int j = 0; j < k; j++) {
            if (*l == '\0' || *l != ch[j])
                return false;
            l++;
        }
    }
    return *l == '\0';
}

bool vks_json_int64(const char *buf, const struct vks_json_span *s, int64_t *out)
{
    if (!s || s->type != VKS_JSON_NUMBER || s->len == 0)
        return false;
    const char *p = buf + s->off, *end = p + s->len;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p == end)
        return false;
    uint64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (!neg && v > (uint64_t)INT64_MAX)
        return false;
    if (neg && v > (uint64_t)INT64_MAX + 1)
        return false;
    if (out)
        *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

bool vks_json_array_next(const char *buf, const struct vks_json_span *arr, size_t *cursor,
                         struct vks_json_span *elem)
{
    if (!arr || arr->type != VKS_JSON_ARRAY || arr->len < 2 || !cursor)
        return false;
    /* no key index: the array was checked whole by the scan that produced it */
    struct scanner s = { (const unsigned char *)buf, arr->off + arr->len - 1, 0, NULL, 0, NULL, NULL, false, VKS_OK,
                         NULL, 0, 0, false };
    s.i = *cursor ? *cursor : arr->off + 1;
    skip_ws(&s);
    if (s.i < s.n && s.b[s.i] == ',') {
        s.i++;
        skip_ws(&s);
    }
    if (s.i >= s.n)
        return false;
    struct vks_json_span e;
    if (scan_value(&s, 1, 0, 0, &e) < 0)
        return false;
    *cursor = s.i;
    if (elem)
        *elem = e;
    return true;
}

size_t vks_json_write_string(const unsigned char *in, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
#define PUT(c) do { if (o >= cap) goto overflow; out[o++] = (char)(c); } while (0)
    PUT('"');
    for (size_t k = 0; k < n; k++) {
        unsigned char c = in[k];
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT(c);
        } else if (c < 0x20) {
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[c >> 4]);
            PUT(hex[c & 15]);
        } else {
            PUT(c);
        }
    }
    PUT('"');
#undef PUT
    return o;
overflow:
    if (out && cap)
        vks_wipe(out, cap);
    return 0;
}
