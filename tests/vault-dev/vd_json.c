/* vault-dev: buffers, a Go-compatible JSON writer, time, ids and duration parsing. */
#include "vd.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void vd_buf_add(struct vd_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void vd_buf_str(struct vd_buf *b, const char *s) { vd_buf_add(b, s, strlen(s)); }

void vd_buf_fmt(struct vd_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        vd_buf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    vd_buf_add(b, big, (size_t)n);
    free(big);
}

void vd_buf_free(struct vd_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- JSON writer */

/* Length of the valid UTF-8 sequence at p (p[0] >= 0x80), 0 if invalid. */
static size_t utf8_valid(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

void vd_json_string(struct vd_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    vd_buf_add(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;
    for (; *p; p++) {
        unsigned char c = *p;
        const char *esc = NULL;
        char u[7];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
            u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = 0;
            esc = u;
        } else if (c >= 0x80) {
            size_t n = utf8_valid(p);
            if (n == 0) {
                /* invalid UTF-8: Go's encoder writes U+FFFD for each bad byte */
                vd_buf_add(b, run, (size_t)(p - run));
                vd_buf_str(b, "\\ufffd");
                run = p + 1;
            } else if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                /* U+2028 / U+2029, escaped by Go */
                vd_buf_add(b, run, (size_t)(p - run));
                vd_buf_str(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029");
                run = p + 3;
            }
            p += n ? n - 1 : 0;
            continue;
        }
        if (esc) {
            vd_buf_add(b, run, (size_t)(p - run));
            vd_buf_str(b, esc);
            run = p + 1;
        }
    }
    vd_buf_add(b, run, (size_t)(p - run));
    vd_buf_add(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void vd_json_write(struct vd_buf *b, struct json_object *v)
{
    if (!v) {
        vd_buf_str(b, "null");
        return;
    }
    switch (json_object_get_type(v)) {
    case json_type_null:
        vd_buf_str(b, "null");
        break;
    case json_type_boolean:
        vd_buf_str(b, json_object_get_boolean(v) ? "true" : "false");
        break;
    case json_type_int:
        if (json_object_get_int64(v) == INT64_MAX)
            vd_buf_fmt(b, "%llu", (unsigned long long)json_object_get_uint64(v));
        else
            vd_buf_fmt(b, "%lld", (long long)json_object_get_int64(v));
        break;
    case json_type_double:
        /* parsed doubles keep their original text in json-c */
        vd_buf_str(b, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        break;
    case json_type_string:
        vd_json_string(b, json_object_get_string(v));
        break;
    case json_type_array: {
        vd_buf_add(b, "[", 1);
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            if (i)
                vd_buf_add(b, ",", 1);
            vd_json_write(b, json_object_array_get_idx(v, i));
        }
        vd_buf_add(b, "]", 1);
        break;
    }
    case json_type_object: {
        int n = json_object_object_length(v);
        const char **keys = malloc(sizeof(char *) * (size_t)(n ? n : 1));
        if (!keys)
            abort();
        int i = 0;
        json_object_object_foreach(v, k, val)
        {
            (void)val;
            keys[i++] = k;
        }
        qsort(keys, (size_t)n, sizeof(char *), cmp_keys);
        vd_buf_add(b, "{", 1);
        for (i = 0; i < n; i++) {
            if (i)
                vd_buf_add(b, ",", 1);
            vd_json_string(b, keys[i]);
            vd_buf_add(b, ":", 1);
            vd_json_write(b, json_object_object_get(v, keys[i]));
        }
        vd_buf_add(b, "}", 1);
        free(keys);
        break;
    }
    }
}

/* ---------------------------------------------------------------- time */

static _Atomic int64_t clock_offset_s;

void vd_set_clock_offset(int64_t seconds) { atomic_store(&clock_offset_s, seconds); }
int64_t vd_clock_offset(void) { return atomic_load(&clock_offset_s); }

int64_t vd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec + atomic_load(&clock_offset_s)) * 1000000000LL + ts.tv_nsec;
}

void vd_time_string(int64_t ns, char out[40])
{
    if (ns == 0) {
        out[0] = 0;
        return;
    }
    time_t s = (time_t)(ns / 1000000000LL);
    long frac = (long)(ns % 1000000000LL);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        char f[24];
        snprintf(f, sizeof f, ".%09ld", frac);
        size_t fl = strlen(f);
        while (f[fl - 1] == '0')
            f[--fl] = 0;
        memcpy(out + n, f, fl + 1);
        n += fl;
    }
    out[n++] = 'Z';
    out[n] = 0;
}

struct json_object *vd_time_obj(int64_t ns)
{
    char t[40];
    vd_time_string(ns, t);
    return json_object_new_string(t);
}

/* ---------------------------------------------------------------- ids */

static void rnd(void *p, size_t n)
{
    if (RAND_bytes(p, (int)n) != 1)
        abort();
}

/* Request ids need uniqueness, not secrecy: a per-thread splitmix64 seeded from the CSPRNG
 * keeps RAND_bytes (and its locking) off the per-request path. */
static _Thread_local uint64_t prng_state;
static _Thread_local bool prng_seeded;

static uint64_t prng_next(void)
{
    if (!prng_seeded) {
        rnd(&prng_state, sizeof prng_state);
        prng_seeded = true;
    }
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void vd_request_id(char out[37])
{
    unsigned char r[16];
    uint64_t a = prng_next(), b = prng_next();
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
}

void vd_uuid(char out[37])
{
    unsigned char r[16];
    rnd(r, sizeof r);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
}

void vd_random_b62(char *out, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < n;) {
        unsigned char r[32];
        rnd(r, sizeof r);
        for (size_t j = 0; j < sizeof r && i < n; j++)
            if (r[j] < 248)
                out[i++] = al[r[j] % 62];
    }
    out[n] = 0;
}

/* ---------------------------------------------------------------- durations */

static int parse_duration_str(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return -1;
    char *end;
    bool digits = true;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            digits = false;
    if (digits) {
        *out = strtoll(s, NULL, 10);
        return 0;
    }
    double total = 0;
    const char *p = s;
    while (*p) {
        double v = strtod(p, &end);
        if (end == p)
            return -1;
        p = end;
        double mul;
        if (strncmp(p, "ms", 2) == 0) {
            mul = 0.001;
            p += 2;
        } else if (*p == 'h') {
            mul = 3600;
            p++;
        } else if (*p == 'm') {
            mul = 60;
            p++;
        } else if (*p == 's') {
            mul = 1;
            p++;
        } else if (*p == 'd') {
            mul = 86400;
            p++;
        } else
            return -1;
        total += v * mul;
    }
    if (total < 0)
        return -1;
    *out = (int64_t)total;
    return 0;
}

int vd_parse_duration(struct json_object *v, int64_t *seconds)
{
    if (!v || json_object_get_type(v) == json_type_null) {
        *seconds = 0;
        return 0;
    }
    switch (json_object_get_type(v)) {
    case json_type_int:
        *seconds = json_object_get_int64(v);
        return *seconds < 0 ? -1 : 0;
    case json_type_double:
        *seconds = (int64_t)json_object_get_double(v);
        return *seconds < 0 ? -1 : 0;
    case json_type_string:
        return parse_duration_str(json_object_get_string(v), seconds);
    default:
        return -1;
    }
}

void vd_duration_string(int64_t s, char out[32])
{
    if (s == 0) {
        snprintf(out, 32, "0s");
        return;
    }
    int64_t h = s / 3600, m = (s % 3600) / 60, sec = s % 60;
    if (h)
        snprintf(out, 32, "%lldh%lldm%llds", (long long)h, (long long)m, (long long)sec);
    else if (m)
        snprintf(out, 32, "%lldm%llds", (long long)m, (long long)sec);
    else
        snprintf(out, 32, "%llds", (long long)sec);
}

/* ---------------------------------------------------------------- accessors */

struct json_object *vd_get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

const char *vd_str(struct json_object *o, const char *key)
{
    struct json_object *v = vd_get(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

int vd_as_int(struct json_object *v, int64_t *out)
{
    if (!v)
        return -1;
    switch (json_object_get_type(v)) {
    case json_type_int:
        *out = json_object_get_int64(v);
        return 0;
    case json_type_double: {
        double d = json_object_get_double(v);
        if (d != (double)(int64_t)d)
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    case json_type_string: {
        const char *s = json_object_get_string(v);
        char *end;
        if (!*s)
            return -1;
        long long x = strtoll(s, &end, 10);
        if (*end)
            return -1;
        *out = x;
        return 0;
    }
    default:
        return -1;
    }
}

int64_t vd_int(struct json_object *o, const char *key, int64_t dflt)
{
    int64_t x;
    return vd_as_int(vd_get(o, key), &x) == 0 ? x : dflt;
}

int vd_as_bool(struct json_object *v, bool *out)
{
    if (!v)
        return -1;
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        if (!strcmp(s, "true") || !strcmp(s, "1")) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, "false") || !strcmp(s, "0") || !*s) {
            *out = false;
            return 0;
        }
    }
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v) != 0;
        return 0;
    }
    return -1;
}

bool vd_bool(struct json_object *o, const char *key, bool dflt)
{
    bool b;
    return vd_as_bool(vd_get(o, key), &b) == 0 ? b : dflt;
}

struct json_object *vd_str_list(struct json_object *v)
{
    struct json_object *a = json_object_new_array();
    if (!v)
        return a;
    if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            if (e && json_object_is_type(e, json_type_string) && *json_object_get_string(e) &&
                !vd_list_has(a, json_object_get_string(e)))
                json_object_array_add(a, json_object_new_string(json_object_get_string(e)));
        }
    } else if (json_object_is_type(v, json_type_string)) {
        char *s = strdup(json_object_get_string(v)), *save = NULL;
        if (!s)
            abort();
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*t))
                t++;
            size_t l = strlen(t);
            while (l && isspace((unsigned char)t[l - 1]))
                t[--l] = 0;
            if (*t && !vd_list_has(a, t))
                json_object_array_add(a, json_object_new_string(t));
        }
        free(s);
    }
    return a;
}

bool vd_list_has(struct json_object *arr, const char *s)
{
    if (!arr || !json_object_is_type(arr, json_type_array))
        return false;
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (e && json_object_is_type(e, json_type_string) && !strcmp(json_object_get_string(e), s))
            return true;
    }
    return false;
}
