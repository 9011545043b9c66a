/*
 * libFuzzer target for vks-agent's [inbound.policy] socket (issue 15): Postfix policy delegation
 * requests, line by line (agent/policy.c). Every request ends at its blank line with the kept
 * attributes NUL-terminated inside their buffers and a reason whenever it is marked bad.
 */
#include <stdlib.h>

#include "../../agent/policy.c"

static void check(const struct ag_policy_req *r)
{
    if (strlen(r->request) >= sizeof r->request || strlen(r->sasl_username) >= sizeof r->sasl_username ||
        strlen(r->sender) >= sizeof r->sender || strlen(r->client_address) >= sizeof r->client_address ||
        strlen(r->state) >= sizeof r->state || (r->bad && r->why[0] == '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct ag_policy_req r;
    ag_policy_reset(&r);
    size_t off = 0;
    while (off < size) {
        const char *nl = memchr(buf + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (buf + off)) : size - off;
        if (len <= AG_POLICY_LINE_MAX && ag_policy_feed(&r, buf + off, len) == 1) {
            check(&r);
            ag_policy_reset(&r);
        }
        off += len + 1;
    }
    check(&r);
    return 0;
}
