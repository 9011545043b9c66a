/*
 * The audit chain verifier (see vks_audit.h; rules in docs/audit.md "Verifying a log").
 * Audit lines hold no secret, so json-c may parse them.
 */
#include "vks_audit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "vks_hmac.h"
#include "vks_json.h"

/* Sequence numbers beyond 2^53 cannot come from a writer (they would not even survive a JSON
 * reader that uses doubles) and would overflow the seq + 1 arithmetic below: malformed. */
#define MAX_SEQ (1LL << 53)

struct chain {
    char id[33];
    char key_id[24];
    unsigned long first_line, last_line;
    long long first_seq, last_seq;
    char last_mac[65];
    unsigned long events;
    unsigned long gaps;          /* acknowledged gaps (an audit.open naming the missed range) */
    unsigned long rot_gaps;      /* gaps at a copytruncate boundary (audit.open reason truncated) */
    unsigned long problems;
    /* A gap that a later "truncated" audit.open of this sink in the same file may explain
       (copytruncate: lines written after the truncate but before the module noticed it come
       before the marker). Reported as a problem unless explained. */
    struct {
        bool on;
        unsigned long line;
        long long seq;
        char *where;             /* malloc'd copy of the file name (NULL: out of memory) */
        char msg[400];
    } pending;
    long long first_bad_seq;
    unsigned long first_bad_line;
    bool closed;
    bool keyed;                  /* MACs checked with the key */
};

struct head {
    char mac[65];
    bool found;
    char chain[33];
    long long seq;
    unsigned long line;
};

struct vks_audit_verifier {
    const struct vks_audit_keys *keys;
    char sink[16];
    struct chain *chains;
    size_t nchains, cap;
    size_t last_hit;
    struct head *heads;
    size_t nheads;
    unsigned long lines;
    unsigned long problems;
    unsigned long bad_lines;     /* lines that are not audit events */
    unsigned long first_bad_line;
    long long first_bad_seq;
    char first_problem[512];
    FILE *report;                /* problems are collected and printed at finish */
    char *report_buf;
    size_t report_len;
    unsigned long reported;
    vks_audit_event_fn on_event;  /* vks_audit_verifier_on_event */
    void *on_event_ud;
};

#define MAX_PROBLEM_LINES 50

vks_status vks_audit_verifier_new(const struct vks_audit_keys *keys, const char *sink,
                                  struct vks_audit_verifier **out, struct vks_err *err)
{
    struct vks_audit_verifier *v = calloc(1, sizeof *v);
    if (v == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    v->keys = keys;
    snprintf(v->sink, sizeof v->sink, "%s", sink != NULL ? sink : "file");
    v->first_bad_seq = -1;
    v->report = open_memstream(&v->report_buf, &v->report_len);
    if (v->report == NULL) {
        free(v);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    *out = v;
    return VKS_OK;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

vks_status vks_audit_verifier_add_head(struct vks_audit_verifier *v, const char *mac_hex,
                                       struct vks_err *err)
{
    if (mac_hex == NULL || strlen(mac_hex) != 64 || !is_hex(mac_hex, 64))
        return vks_err_set(err, VKS_E_INVALID_ARG,
                           "--head must be the 64 lower-case hex characters of an event's mac");
    struct head *h = realloc(v->heads, (v->nheads + 1) * sizeof *h);
    if (h == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    v->heads = h;
    memset(&h[v->nheads], 0, sizeof *h);
    memcpy(h[v->nheads].mac, mac_hex, 65);
    h[v->nheads].seq = -1;
    v->nheads++;
    return VKS_OK;
}

static void problem_at(struct vks_audit_verifier *v, struct chain *c, long long seq,
                       const char *where, unsigned long line, const char *msg)
{
    char full[512];
    if (c != NULL)
        snprintf(full, sizeof full, "%s line %lu: chain %.32s seq %lld: %s", where, line, c->id,
                 seq, msg);
    else
        snprintf(full, sizeof full, "%s line %lu: %s", where, line, msg);
    /* the first problem is the earliest line (a gap can be reported after later lines) */
    if (v->problems == 0 || line < v->first_bad_line) {
        v->first_bad_line = line;
        v->first_bad_seq = seq;
        snprintf(v->first_problem, sizeof v->first_problem, "%s", full);
    }
    v->problems++;
    if (c != NULL) {
        if (c->problems == 0 || line < c->first_bad_line) {
            c->first_bad_seq = seq;
            c->first_bad_line = line;
        }
        c->problems++;
    }
    if (v->reported < MAX_PROBLEM_LINES) {
        fprintf(v->report, "  problem: %s\n", full);
        v->reported++;
    }
}

static void problem(struct vks_audit_verifier *v, struct chain *c, long long seq, const char *where,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void problem(struct vks_audit_verifier *v, struct chain *c, long long seq, const char *where,
                    const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    problem_at(v, c, seq, where, v->lines, msg);
}

/* A gap that only a later copytruncate marker can explain: held until then. */
static void drop_pending(struct chain *c)
{
    c->pending.on = false;
    free(c->pending.where);
    c->pending.where = NULL;
}

static bool pending_in(const struct chain *c, const char *where)
{
    return c->pending.where != NULL && strcmp(c->pending.where, where) == 0;
}

static void flush_pending(struct vks_audit_verifier *v, struct chain *c)
{
    if (!c->pending.on)
        return;
    problem_at(v, c, c->pending.seq, c->pending.where ? c->pending.where : "-", c->pending.line,
               c->pending.msg);
    drop_pending(c);
}

static void hold(struct vks_audit_verifier *v, struct chain *c, long long seq, const char *where,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void hold(struct vks_audit_verifier *v, struct chain *c, long long seq, const char *where,
                 const char *fmt, ...)
{
    flush_pending(v, c);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->pending.msg, sizeof c->pending.msg, fmt, ap);
    va_end(ap);
    c->pending.on = true;
    c->pending.line = v->lines;
    c->pending.seq = seq;
    c->pending.where = strdup(where); /* NULL: never explained, so reported */
}

static struct chain *find_chain(struct vks_audit_verifier *v, const char *id)
{
    if (v->last_hit < v->nchains && strcmp(v->chains[v->last_hit].id, id) == 0)
        return &v->chains[v->last_hit];
    for (size_t i = 0; i < v->nchains; i++)
        if (strcmp(v->chains[i].id, id) == 0) {
            v->last_hit = i;
            return &v->chains[i];
        }
    return NULL;
}

static struct chain *add_chain(struct vks_audit_verifier *v, const char *id)
{
    if (v->nchains == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        struct chain *n = realloc(v->chains, ncap * sizeof *n);
        if (n == NULL)
            return NULL;
        v->chains = n;
        v->cap = ncap;
    }
    struct chain *c = &v->chains[v->nchains];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->first_bad_seq = -1;
    c->first_seq = -1;
    v->last_hit = v->nchains++;
    return c;
}

static const char *get_str(struct json_object *o, const char *k)
{
    struct json_object *x;
    if (!json_object_object_get_ex(o, k, &x) || !json_object_is_type(x, json_type_string))
        return NULL;
    return json_object_get_string(x);
}

static bool get_int(struct json_object *o, const char *k, long long *out)
{
    struct json_object *x;
    if (!json_object_object_get_ex(o, k, &x) || !json_object_is_type(x, json_type_int))
        return false;
    errno = 0;
    *out = (long long)json_object_get_int64(x);
    return errno == 0;
}

/* A later line of a known chain: seq and prev_mac continuity, acknowledged gaps. */
static void check_continuity(struct vks_audit_verifier *v, struct chain *c, struct json_object *o,
                             long long seq, const char *where, const char *type, const char *prev)
{
    long long expected = c->last_seq + 1;
    bool mine = strcmp(type, "audit.open") == 0 && get_str(o, "sink") != NULL &&
                strcmp(get_str(o, "sink"), v->sink) == 0;
    const char *reason = mine ? get_str(o, "reason") : NULL;
    bool truncated = reason != NULL && strcmp(reason, "truncated") == 0;
    long long from = -1, to = -1;
    bool has_range = mine && get_int(o, "missed_from", &from) && get_int(o, "missed_to", &to);
    if (c->pending.on) {
        /* a copytruncate marker explains the held gap if the lines since it were written after
           the file was last seen intact, in the same file */
        if (truncated && has_range && from <= c->pending.seq && seq >= expected &&
            pending_in(c, where)) {
            drop_pending(c);
            c->rot_gaps++;
        } else if (mine || strcmp(type, "audit.close") == 0 || seq != expected ||
                   !pending_in(c, where)) {
            flush_pending(v, c);
        }
    }
    if (c->closed) {
        problem(v, c, seq, where, "event after the chain's audit.close (inserted)");
    } else if (seq == expected) {
        if (strcmp(prev, c->last_mac) != 0)
            problem(v, c, seq, where,
                    "prev_mac does not match the mac of seq %lld (a line was replaced)",
                    c->last_seq);
    } else if (seq > expected) {
        /* the sink's own audit.open names a range that covers the gap (it may start earlier
           when the writer could not know whether the first events of the range arrived, e.g.
           a copytruncate noticed after some writes) */
        if (has_range && from <= expected && to == seq - 1)
            c->gaps++;
        else if (truncated)
            c->rot_gaps++; /* events lost between logrotate's copy and its truncate */
        else if (seq == expected + 1)
            hold(v, c, seq, where, "seq %lld is missing (deleted)", expected);
        else
            hold(v, c, seq, where, "seq %lld..%lld are missing (deleted)", expected, seq - 1);
    } else {
        problem(v, c, seq, where,
                "seq goes back from %lld to %lld (lines reordered, duplicated or replayed)",
                c->last_seq, seq);
    }
}

void vks_audit_verifier_line(struct vks_audit_verifier *v, const char *where, const char *line,
                             size_t len)
{
    v->lines++;
    if (where == NULL)
        where = "-";
    if (len == 0) {
        v->bad_lines++;
        problem(v, NULL, -1, where, "empty line (inserted, or a torn write)");
        return;
    }
    if (memchr(line, '\0', len) != NULL) {
        v->bad_lines++;
        problem(v, NULL, -1, where, "not an audit event (NUL byte in the line)");
        return;
    }
    if (vks_json_scan(line, len, NULL, 0, NULL, NULL) == VKS_E_BAD_RESPONSE) {
        /* json-c would keep the last of a repeated key: a line with one was not written by us */
        v->bad_lines++;
        problem(v, NULL, -1, where, "not an audit event (not one JSON object, or a key repeated: modified, "
                                    "inserted or a torn write)");
        return;
    }
    struct json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        problem(v, NULL, -1, where, "out of memory");
        return;
    }
    struct json_object *o = json_tokener_parse_ex(tok, line, (int)(len > 0x7fffffff ? 0x7fffffff : len));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t consumed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (o == NULL || jerr != json_tokener_success || consumed != len ||
        !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        v->bad_lines++;
        problem(v, NULL, -1, where, "not an audit event (not one JSON object: modified, inserted "
                                    "or a torn write)");
        return;
    }
    long long ver = 0, seq = -1;
    const char *id = get_str(o, "chain");
    const char *type = get_str(o, "type");
    const char *prev = get_str(o, "prev_mac");
    const char *mac = get_str(o, "mac");
    const char *key_id = get_str(o, "key_id");
    if (!get_int(o, "v", &ver) || ver != VKS_AUDIT_SCHEMA_VERSION || id == NULL ||
        strlen(id) != 32 || !is_hex(id, 32) || !get_int(o, "seq", &seq) || seq < 0 ||
        seq > MAX_SEQ || type == NULL || prev == NULL || strlen(prev) != 64 || !is_hex(prev, 64) || mac == NULL ||
        strlen(mac) != 64 || !is_hex(mac, 64) || key_id == NULL) {
        json_object_put(o);
        v->bad_lines++;
        problem(v, NULL, -1, where,
                "not an audit event of schema %d (missing or malformed v, chain, seq, type, "
                "key_id, prev_mac or mac)", VKS_AUDIT_SCHEMA_VERSION);
        return;
    }
    /* the mac field must be the line's own tail, which the MAC check reads */
    if (len < 76 || memcmp(line + len - 66, mac, 64) != 0) {
        json_object_put(o);
        v->bad_lines++;
        problem(v, NULL, seq, where, "mac is not the last member of the line (modified)");
        return;
    }
    for (size_t i = 0; i < v->nheads; i++)
        if (!v->heads[i].found && strcmp(v->heads[i].mac, mac) == 0) {
            v->heads[i].found = true;
            snprintf(v->heads[i].chain, sizeof v->heads[i].chain, "%s", id);
            v->heads[i].seq = seq;
            v->heads[i].line = v->lines;
        }

    unsigned long problems_before = v->problems;
    struct chain *c = find_chain(v, id);
    bool is_open = strcmp(type, "audit.open") == 0;
    const char *sink = is_open ? get_str(o, "sink") : NULL;
    const char *reason = is_open ? get_str(o, "reason") : NULL;
    if (c == NULL) {
        c = add_chain(v, id);
        if (c == NULL) {
            json_object_put(o);
            problem(v, NULL, seq, where, "out of memory");
            return;
        }
        snprintf(c->key_id, sizeof c->key_id, "%s", key_id);
        c->keyed = v->keys != NULL && strcmp(key_id, vks_audit_keys_id(v->keys)) == 0;
        c->first_line = v->lines;
        c->first_seq = seq;
        static const char zeros[65] =
            "0000000000000000000000000000000000000000000000000000000000000000";
        if (!is_open)
            hold(v, c, seq, where,
                 "the chain's first line here is a %s, not its audit.open: earlier lines were "
                 "removed (head of the log truncated or deleted)", type);
        else if (seq == 0 && (reason == NULL || strcmp(reason, "start") != 0 ||
                              strcmp(prev, zeros) != 0))
            problem(v, c, seq, where, "seq 0 is not a chain start");
        else if (seq > 0 && (sink == NULL || strcmp(sink, v->sink) != 0))
            problem(v, c, seq, where,
                    "the chain starts at seq %lld with an audit.open for another sink (%s): "
                    "earlier lines of this %s were removed", seq, sink ? sink : "all", v->sink);
    } else {
        check_continuity(v, c, o, seq, where, type, prev);
    }
    if (v->keys != NULL && c->keyed && !vks_audit_line_mac_ok(v->keys, line, len))
        problem(v, c, seq, where, "mac does not verify (the line was modified or forged)");
    if (v->on_event != NULL)
        v->on_event(v->on_event_ud, where, v->lines, o, v->problems != problems_before);
    if (strcmp(type, "audit.close") == 0)
        c->closed = true;
    c->events++;
    c->last_seq = seq;
    c->last_line = v->lines;
    memcpy(c->last_mac, mac, 65);
    json_object_put(o);
}

void vks_audit_verifier_on_event(struct vks_audit_verifier *v, vks_audit_event_fn fn, void *ud)
{
    v->on_event = fn;
    v->on_event_ud = ud;
}

void vks_audit_verifier_lines(const struct vks_audit_verifier *v, unsigned long *lines)
{
    *lines = v->lines;
}

void vks_audit_verifier_first_bad(const struct vks_audit_verifier *v, unsigned long *line,
                                  long long *seq)
{
    *line = v->problems ? v->first_bad_line : 0;
    *seq = v->problems ? v->first_bad_seq : -1;
}

int vks_audit_verifier_finish(struct vks_audit_verifier *v, FILE *out)
{
    for (size_t i = 0; i < v->nchains; i++)
        flush_pending(v, &v->chains[i]);
    fflush(v->report);
    unsigned long events = 0, unkeyed = 0;
    for (size_t i = 0; i < v->nchains; i++) {
        struct chain *c = &v->chains[i];
        events += c->events;
        if (!c->keyed)
            unkeyed++;
        if (out == NULL)
            continue;
        const char *state = c->problems ? "FAIL" : c->keyed ? "OK" : "UNVERIFIED";
        fprintf(out, "chain %s: %s, %lu events, seq %lld..%lld, lines %lu..%lu, key %s%s, %s",
                c->id, state, c->events, c->first_seq, c->last_seq, c->first_line, c->last_line,
                c->key_id,
                c->keyed ? "" : (strcmp(c->key_id, "ephemeral") == 0 ? " (ephemeral: MACs not checkable)"
                                  : " (not the key given: MACs not checked)"),
                c->closed ? "closed" : "open (process running, crashed, or the tail is missing)");
        if (c->gaps)
            fprintf(out, ", %lu acknowledged gap%s", c->gaps, c->gaps == 1 ? "" : "s");
        if (c->rot_gaps)
            fprintf(out, ", %lu copytruncate boundar%s (lines written between logrotate's copy "
                         "and truncate are lost)", c->rot_gaps, c->rot_gaps == 1 ? "y" : "ies");
        fprintf(out, "\n  head: seq %lld mac %s\n", c->last_seq, c->last_mac);
        if (c->problems)
            fprintf(out, "  first bad seq %lld (line %lu), %lu problem%s\n", c->first_bad_seq,
                    c->first_bad_line, c->problems, c->problems == 1 ? "" : "s");
    }
    for (size_t i = 0; i < v->nheads; i++) {
        struct head *h = &v->heads[i];
        if (h->found) {
            if (out)
                fprintf(out, "anchored head %s: found, chain %s seq %lld (line %lu)\n", h->mac,
                        h->chain, h->seq, h->line);
        } else {
            char where[8] = "-";
            bool first = v->problems == 0;
            v->lines++; /* the message places it after the last line */
            problem(v, NULL, -1, where,
                    "anchored head %.64s not found: the log was truncated after it, or this is "
                    "not the log it was taken from", h->mac);
            v->lines--;
            if (first)
                v->first_bad_line = 0; /* a problem of no one line (see vks_audit.h) */
        }
    }
    if (v->nchains == 0 && v->problems == 0) {
        char where[8] = "-";
        problem(v, NULL, -1, where, "no audit events found");
    }
    fflush(v->report);
    if (out != NULL && v->report_len > 0) {
        fwrite(v->report_buf, 1, v->report_len, out);
        if (v->reported < v->problems)
            fprintf(out, "  ... %lu more problems\n", v->problems - v->reported);
    }
    int rc;
    if (v->problems > 0) {
        if (out)
            fprintf(out, "FAIL: %lu problem%s; first: %s\n", v->problems,
                    v->problems == 1 ? "" : "s", v->first_problem);
        rc = 1;
    } else if (unkeyed > 0) {
        if (out)
            fprintf(out, "UNVERIFIED: %zu chain%s, %lu events, structure intact; %lu chain%s "
                         "without MAC check (no matching audit key)\n",
                    v->nchains, v->nchains == 1 ? "" : "s", events, unkeyed,
                    unkeyed == 1 ? "" : "s");
        rc = 3;
    } else {
        if (out) {
            fprintf(out, "OK: %zu chain%s, %lu events verified", v->nchains,
                    v->nchains == 1 ? "" : "s", events);
            if (v->nchains == 1)
                fprintf(out, ", head seq %lld mac %s", v->chains[0].last_seq,
                        v->chains[0].last_mac);
            fprintf(out, "\n");
        }
        rc = 0;
    }
    return rc;
}

void vks_audit_verifier_free(struct vks_audit_verifier *v)
{
    if (v == NULL)
        return;
    if (v->report)
        fclose(v->report);
    free(v->report_buf);
    for (size_t i = 0; i < v->nchains; i++)
        drop_pending(&v->chains[i]);
    free(v->chains);
    free(v->heads);
    free(v);
}
