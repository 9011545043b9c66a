/*
 * vks_redact: URLs made safe to print (vks_redact.h, docs/internals/redact.md).
 */
#include "vks_redact.h"

#include <stdbool.h>
#include <string.h>

/* snprintf-like writer: counts everything, stores what fits, NUL-terminates in finish */
struct w {
    char *out;
    size_t cap, n;
};

static void put(struct w *w, char c)
{
    if (w->n + 1 < w->cap)
        w->out[w->n] = c;
    w->n++;
}

static void put_str(struct w *w, const char *s)
{
    while (*s != '\0')
        put(w, *s++);
}

/* a byte of the input: control bytes (NUL included) never reach a printed line */
static void put_byte(struct w *w, char c, bool keep_lines)
{
    unsigned char u = (unsigned char)c;
    if (keep_lines && (c == '\n' || c == '\t'))
        put(w, c);
    else
        put(w, u < 0x20 || u == 0x7f ? '?' : c);
}

static size_t finish(struct w *w)
{
    if (w->cap > 0)
        w->out[w->n < w->cap ? w->n : w->cap - 1] = '\0';
    return w->n;
}

/* One URL in [s, e): scheme and "://" (when `scheme`), then user info, host, path, query,
 * fragment, the secret-bearing parts replaced. */
static void url_token(struct w *w, const char *s, const char *e, bool scheme)
{
    const char *auth = s;
    if (scheme) {
        const char *sep = s;
        while (sep + 3 <= e && memcmp(sep, "://", 3) != 0)
            sep++;
        if (sep + 3 <= e) {
            for (; s < sep + 3; s++)
                put_byte(w, *s, false);
            auth = sep + 3;
        }
    }
    const char *ae = auth;
    while (ae < e && *ae != '/' && *ae != '?' && *ae != '#')
        ae++;
    const char *at = NULL;
    for (const char *p = auth; p < ae; p++)
        if (*p == '@')
            at = p; /* the last '@' ends the user info (a password may hold '@') */
    if (at != NULL) {
        put_str(w, "<redacted>");
        auth = at;
    }
    const char *p = auth;
    for (; p < e && *p != '?' && *p != '#'; p++)
        put_byte(w, *p, false);
    if (p < e && *p == '?') {
        put_str(w, "?<redacted>");
        while (p < e && *p != '#')
            p++;
    }
    if (p < e && *p == '#')
        put_str(w, "#<redacted>");
}

size_t vks_redact_url(const char *url, size_t len, char *out, size_t cap)
{
    struct w w = { out, cap, 0 };
    if (url != NULL)
        url_token(&w, url, url + len, true);
    return finish(&w);
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_scheme_char(char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

static bool ends_url(char c)
{
    unsigned char u = (unsigned char)c;
    return u <= 0x20 || u == 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`';
}

size_t vks_redact_text(const char *text, size_t len, char *out, size_t cap)
{
    struct w w = { out, cap, 0 };
    size_t i = 0;
    while (text != NULL && i < len) {
        size_t j = i;
        while (j + 3 <= len && memcmp(text + j, "://", 3) != 0)
            j++;
        if (j + 3 > len) { /* no more URLs */
            for (; i < len; i++)
                put_byte(&w, text[i], true);
            break;
        }
        size_t k = j;
        while (k > i && is_scheme_char(text[k - 1]))
            k--;
        while (k < j && !is_alpha(text[k])) /* a scheme starts with a letter */
            k++;
        for (; i < k; i++)
            put_byte(&w, text[i], true);
        size_t e = j + 3;
        while (e < len && !ends_url(text[e]))
            e++;
        if (k == j) { /* "://" without a scheme: still redact what follows, as an address */
            for (; i < j + 3; i++)
                put_byte(&w, text[i], true);
            url_token(&w, text + i, text + e, false);
        } else {
            url_token(&w, text + k, text + e, true);
        }
        i = e;
    }
    return finish(&w);
}
