/* vks-agent wire formats (see proto.h). */
#include <stdio.h>
#include <string.h>

#include "proto.h"

enum ag_parse ag_netstring_parse(const char *buf, size_t len, size_t max, size_t *consumed,
                                 const char **payload, size_t *plen, const char **why)
{
    size_t n = 0, i = 0;
    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        if (i >= 9 || (i > 0 && buf[0] == '0')) {
            *why = "bad netstring length";
            return AG_PARSE_ERROR;
        }
        n = n * 10 + (size_t)(buf[i] - '0');
        if (n > max) {
            *why = "request longer than the limit";
            return AG_PARSE_ERROR;
        }
    }
    if (i == len)
        return AG_PARSE_MORE;
    if (i == 0 || buf[i] != ':') {
        *why = "bad netstring length";
        return AG_PARSE_ERROR;
    }
    if (len < i + 1 + n + 1)
        return AG_PARSE_MORE;
    if (buf[i + 1 + n] != ',') {
        *why = "netstring without its ','";
        return AG_PARSE_ERROR;
    }
    *payload = buf + i + 1;
    *plen = n;
    *consumed = i + 1 + n + 1;
    return AG_PARSE_OK;
}

size_t ag_netstring_reply(char *out, size_t n, const char *word, const char *reason)
{
    char body[512];
    int bl = snprintf(body, sizeof body, "%s %s", word, reason ? reason : "");
    if (bl < 0)
        return 0;
    if ((size_t)bl >= sizeof body)
        bl = (int)sizeof body - 1;
    for (int i = 0; i < bl; i++)
        if ((unsigned char)body[i] < 0x20 || body[i] == 0x7f)
            body[i] = '?';
    int w = snprintf(out, n, "%d:%.*s,", bl, bl, body);
    return w < 0 || (size_t)w >= n ? 0 : (size_t)w;
}

bool ag_socketmap_split(const char *p, size_t n, const char **name, size_t *nl, const char **key,
                        size_t *kl)
{
    const char *sp = memchr(p, ' ', n);
    if (sp == NULL || sp == p)
        return false;
    *name = p;
    *nl = (size_t)(sp - p);
    *key = sp + 1;
    *kl = n - *nl - 1;
    for (size_t i = 0; i < *kl; i++)
        if ((unsigned char)(*key)[i] < 0x20 || (*key)[i] == 0x7f)
            return false;
    return true;
}

bool ag_exim_request(const char *p, size_t n, char item[8], const char **host, size_t *hl,
                     const char **why)
{
    if (n > 0 && p[n - 1] == '\n')
        n--;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    const char *sp = memchr(p, ' ', n);
    if (sp == NULL) {
        *why = "expected \"user|pass|plain HOST\"";
        return false;
    }
    size_t il = (size_t)(sp - p);
    if (!((il == 4 && (memcmp(p, "user", 4) == 0 || memcmp(p, "pass", 4) == 0)) ||
          (il == 5 && memcmp(p, "plain", 5) == 0))) {
        *why = "unknown item (expected user, pass or plain)";
        return false;
    }
    memcpy(item, p, il);
    item[il] = '\0';
    *host = sp + 1;
    *hl = n - il - 1;
    if (*hl == 0) {
        *why = "empty host";
        return false;
    }
    for (size_t i = 0; i < *hl; i++)
        if ((unsigned char)(*host)[i] <= 0x20 || (*host)[i] == 0x7f) {
            *why = "control byte or space in the host";
            return false;
        }
    return true;
}
