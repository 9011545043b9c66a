/*
 * vks-agent inbound protocols on a connection (agent/inbound_int.h): the Dovecot SASL requests
 * (PLAIN and LOGIN, with or without an initial response, CONT continuations, at most IN_REQS open
 * per connection), the policy request, and the replies to finished jobs. What the SMTP client may
 * read is chosen here (client_reason: no difference between an unknown user and a wrong
 * password). Loop thread only; the connection machinery is agent/inbound_conn.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound_int.h"

/* ------------------------------------------------------------------ SASL */

static void sasl_fail(struct in_conn *c, unsigned long id, const char *user, const char *reason, bool temp)
{
    char line[600], r[256];
    size_t k = 0;
    for (; reason[k] && k < sizeof r - 1; k++) /* TAB and control characters cannot be in a value */
        r[k] = (unsigned char)reason[k] < 0x20 ? ' ' : reason[k];
    r[k] = '\0';
    snprintf(line, sizeof line, "FAIL\t%lu%s%.255s\treason=%s%s\n", id, user && user[0] ? "\tuser=" : "",
             user ? user : "", r, temp ? "\ttemp" : "");
    in_reply(c, line);
}

static struct in_req *find_req(struct in_conn *c, unsigned long id)
{
    for (int i = 0; i < IN_REQS; i++)
        if (c->req[i].used && c->req[i].id == id)
            return &c->req[i];
    return NULL;
}

/* Hands the job to a worker: user and password (pw moves into the job). */
static void sasl_submit(struct in_conn *c, const struct in_req *r, const char *user, size_t ul, vks_secret *pw)
{
    struct in_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        vks_secret_free(pw);
        sasl_fail(c, r->id, NULL, "out of memory", true);
        return;
    }
    j->kind = IN_SASL;
    j->conn = c;
    j->id = r->id;
    snprintf(j->user, sizeof j->user, "%.*s", (int)ul, user);
    snprintf(j->rip, sizeof j->rip, "%s", r->rip);
    j->pw = *pw;
    *pw = VKS_SECRET_EMPTY;
    c->pending++;
    in_submit(j);
}

static bool printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return false;
    return n > 0;
}

/* A response for request r (base64 in [d, d+n)): PLAIN's, or LOGIN's user name or password. */
static void sasl_response(struct in_conn *c, struct in_req *r, const char *d, size_t n)
{
    char why[160] = "";
    vks_secret buf;
    struct in_req rq = *r;
    if (ag_sasl_b64(d, n, &buf, why, sizeof why) != 0) {
        memset(r, 0, sizeof *r);
        sasl_fail(c, rq.id, NULL, why, false);
        return;
    }
    if (rq.mech == AG_MECH_LOGIN && rq.stage == 1) {
        if (buf.len > 255 || !printable(buf.data, buf.len)) {
            memset(r, 0, sizeof *r);
            sasl_fail(c, rq.id, NULL, "LOGIN user name must be 1-255 printable characters", false);
        } else {
            snprintf(r->user, sizeof r->user, "%.*s", (int)buf.len, (const char *)buf.data);
            r->stage = 2;
            char line[64];
            snprintf(line, sizeof line, "CONT\t%lu\tUGFzc3dvcmQ6\n", rq.id);
            in_reply(c, line);
        }
        vks_secret_free(&buf);
        return;
    }
    memset(r, 0, sizeof *r); /* the request is complete either way */
    if (rq.mech == AG_MECH_LOGIN) {
        sasl_submit(c, &rq, rq.user, strlen(rq.user), &buf);
        return;
    }
    size_t uo, ul, po, pl;
    if (ag_sasl_plain_split(&buf, &uo, &ul, &po, &pl, why, sizeof why) != 0 ||
        !printable(buf.data + uo, ul)) {
        vks_secret_free(&buf);
        sasl_fail(c, rq.id, NULL, why[0] ? why : "PLAIN user name is not printable", false);
        return;
    }
    char user[256];
    snprintf(user, sizeof user, "%.*s", (int)ul, (const char *)buf.data + uo);
    memmove(buf.data, buf.data + po, pl); /* the password alone stays in the slot */
    vks_wipe(buf.data + pl, buf.cap - pl);
    buf.len = pl;
    sasl_submit(c, &rq, user, ul, &buf);
}

static void sasl_auth(struct in_conn *c, const struct ag_sasl_line *l)
{
    if (find_req(c, l->id) != NULL) {
        sasl_fail(c, l->id, NULL, "request id already in use", false);
        return;
    }
    if (!l->secured) {
        sasl_fail(c, l->id, NULL, "plaintext mechanisms need TLS: use STARTTLS first", false);
        return;
    }
    struct in_req *r = NULL;
    for (int i = 0; i < IN_REQS && r == NULL; i++)
        if (!c->req[i].used)
            r = &c->req[i];
    if (r == NULL) {
        sasl_fail(c, l->id, NULL, "too many open requests on this connection", false);
        return;
    }
    *r = (struct in_req){ .used = true, .id = l->id, .mech = l->mech, .stage = 1 };
    snprintf(r->rip, sizeof r->rip, "%s", l->rip);
    char line[64];
    if (l->has_resp && l->data_len > 0) {
        sasl_response(c, r, l->data, l->data_len);
    } else {
        snprintf(line, sizeof line, "CONT\t%lu\t%s\n", l->id, l->mech == AG_MECH_LOGIN ? "VXNlcm5hbWU6" : "");
        in_reply(c, line);
    }
}

void in_sasl_line(struct in_conn *c, const char *line, size_t len)
{
    struct ag_sasl_line l;
    bool id_known = false;
    char why[160];
    if (ag_sasl_parse(line, len, &l, &id_known, why, sizeof why) != 0) {
        if (id_known) {
            struct in_req *r = find_req(c, l.id);
            if (r)
                memset(r, 0, sizeof *r);
            sasl_fail(c, l.id, NULL, why, false);
        } else {
            in_conn_close(c, why);
        }
        return;
    }
    if (!c->versioned && l.cmd != AG_SASL_VERSION) {
        in_conn_close(c, "the first line must be VERSION");
        return;
    }
    struct in_req *r;
    switch (l.cmd) {
    case AG_SASL_VERSION:
        if (l.major != 1)
            in_conn_close(c, "protocol major version is not 1");
        c->versioned = true;
        break;
    case AG_SASL_CPID:
        break;
    case AG_SASL_AUTH:
        sasl_auth(c, &l);
        break;
    case AG_SASL_CONT:
        if ((r = find_req(c, l.id)) == NULL)
            sasl_fail(c, l.id, NULL, "no such request waiting for a continuation", false);
        else
            sasl_response(c, r, l.data ? l.data : "", l.data_len);
        break;
    }
}

/* ------------------------------------------------------------------ policy */

void in_policy_request(struct in_conn *c)
{
    struct ag_policy_req *p = &c->pol;
    char line[400];
    if (p->bad || !p->has_request || strcmp(p->request, "smtpd_access_policy") != 0) {
        snprintf(line, sizeof line, "action=DEFER_IF_PERMIT 4.7.1 vks-agent: malformed policy request: %.200s\n\n",
                 p->bad ? p->why : "request=smtpd_access_policy is missing");
        ag_log("warning", "inbound.policy: %s", line);
        in_reply(c, line);
    } else if (p->sasl_username[0] == '\0') {
        in_reply(c, "action=DUNNO\n\n"); /* not authenticated: other restrictions decide */
    } else {
        struct in_job *j = calloc(1, sizeof *j);
        if (j == NULL) {
            in_reply(c, "action=DEFER_IF_PERMIT 4.3.0 vks-agent: out of memory\n\n");
        } else {
            j->kind = IN_POLICY;
            j->conn = c;
            snprintf(j->user, sizeof j->user, "%s", p->sasl_username);
            snprintf(j->sender, sizeof j->sender, "%s", p->sender);
            snprintf(j->rip, sizeof j->rip, "%s", p->client_address);
            c->pending++;
            in_submit(j);
        }
    }
    ag_policy_reset(p);
}

/* ------------------------------------------------------------------ finished jobs */

static const char *client_reason(enum vks_inbound_outcome o)
{
    switch (o) { /* what the SMTP client may learn: no difference between unknown user and password */
    case VKS_IN_SOURCE_REFUSED: return "login not allowed from this address";
    case VKS_IN_LOCKED: return "too many failed logins, try again later";
    case VKS_IN_TEMP: return "temporary authentication failure";
    default: return "authentication failed";
    }
}

void in_sasl_done(struct in_conn *c, struct in_job *j)
{
    char line[600];
    ag_log(j->ans.outcome == VKS_IN_OK ? "info" : "notice", "inbound.sasl: login %.255s from %s: %s%s%s%s",
           j->user, j->rip[0] ? j->rip : "?", vks_inbound_outcome_name(j->ans.outcome), j->ans.cached ? " (cached)" : "",
           j->ans.reason[0] ? ": " : "", j->ans.reason);
    if (j->ans.outcome == VKS_IN_OK) {
        snprintf(line, sizeof line, "OK\t%lu\tuser=%s\n", j->id, j->ans.username);
        in_reply(c, line);
    } else {
        sasl_fail(c, j->id, j->user, client_reason(j->ans.outcome), j->ans.outcome == VKS_IN_TEMP);
    }
}

void in_policy_done(struct in_conn *c, struct in_job *j)
{
    char line[900];
    const char *at = strrchr(j->sender, '@');
    switch (j->ans.outcome) {
    case VKS_IN_OK:
        snprintf(line, sizeof line, "action=DUNNO\n\n");
        break;
    case VKS_IN_SENDER_REFUSED:
        snprintf(line, sizeof line, "action=REJECT 5.7.1 sender domain %.253s is not allowed for login %.255s\n\n",
                 at && at[1] ? at + 1 : "(none)", j->user);
        break;
    case VKS_IN_TEMP:
        snprintf(line, sizeof line, "action=DEFER_IF_PERMIT 4.7.1 credential store unavailable, try again later\n\n");
        break;
    default:
        snprintf(line, sizeof line, "action=REJECT 5.7.1 the credential of login %.255s is not valid\n\n", j->user);
        break;
    }
    if (j->ans.outcome != VKS_IN_OK)
        ag_log("notice", "inbound.policy: login %.255s sender <%.300s>: %s: %s", j->user, j->sender,
               vks_inbound_outcome_name(j->ans.outcome), j->ans.reason);
    for (char *p = line; *p; p++) /* the action is one line: nothing from the request may break it */
        if ((unsigned char)*p < 0x20 && p[0] != '\n')
            *p = ' ';
    in_reply(c, line);
}
