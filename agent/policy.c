/*
 * The Postfix policy delegation protocol (SMTPD_POLICY_README), server side, pure: one
 * "name=value" attribute a line, a blank line ends the request (agent/inbound.h). Only the
 * attributes the sender check needs are kept; the others are counted and skipped.
 */
#include <stdio.h>
#include <string.h>

#include "inbound.h"

void ag_policy_reset(struct ag_policy_req *r)
{
    memset(r, 0, sizeof *r);
}

static void bad(struct ag_policy_req *r, const char *fmt, const char *arg)
{
    if (r->bad)
        return; /* the first problem is the one reported */
    r->bad = true;
    snprintf(r->why, sizeof r->why, fmt, arg);
}

/* Copies value [v, v+n) into out when it fits, else marks the request bad naming the attribute. */
static void keep(struct ag_policy_req *r, const char *name, const char *v, size_t n, char *out, size_t cap,
                 bool *present)
{
    if (n >= cap) {
        bad(r, "attribute %s is too long", name);
        return;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    if (present)
        *present = true;
}

int ag_policy_feed(struct ag_policy_req *r, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return 1;
    if (++r->nattrs > AG_POLICY_ATTRS_MAX) {
        bad(r, "more than %s attributes", "256");
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20 && line[i] != '\t') {
            bad(r, "an attribute line has a control character%s", "");
            return 0;
        }
    const char *eq = memchr(line, '=', len);
    if (eq == NULL || eq == line) {
        bad(r, "a line is not name=value%s", "");
        return 0;
    }
    size_t nl = (size_t)(eq - line), vl = len - nl - 1;
    const char *v = eq + 1;
#define IS(lit) (nl == sizeof lit - 1 && memcmp(line, lit, nl) == 0)
    if (IS("request"))
        keep(r, "request", v, vl, r->request, sizeof r->request, &r->has_request);
    else if (IS("protocol_state"))
        keep(r, "protocol_state", v, vl, r->state, sizeof r->state, NULL);
    else if (IS("sasl_username"))
        keep(r, "sasl_username", v, vl, r->sasl_username, sizeof r->sasl_username, &r->has_sasl);
    else if (IS("sender"))
        keep(r, "sender", v, vl, r->sender, sizeof r->sender, NULL);
    else if (IS("client_address"))
        keep(r, "client_address", v, vl, r->client_address, sizeof r->client_address, NULL);
#undef IS
    return 0;
}
