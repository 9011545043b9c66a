/* The period report of `vks audit report` (vks_audit_report.h; docs/internals/audit-report.md). */
#include "vks_audit_report.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STR 256

struct lookup_group {            /* secret.lookup events of one credential, actor and api */
    char cred[STR];              /* mount/path, file:PATH or event:NAME                  */
    char actor[STR];             /* program@host uid N                                   */
    char api[48];                /* "" for an outbound lookup; inbound.auth, inbound.sender */
    unsigned long count, served, refused, failed;
    char first[40], last[40];
};

struct admin_act {               /* one cred.*, backup.*, rekey.* or serve.* event */
    char ts[40], type[48], op[STR], cred[STR], user[STR], result[16], code[40];
    char reason[STR], detail[STR], where[STR];
    unsigned long line;
};

struct file_span {
    char name[STR];
    unsigned long first, last;
};

struct overdue {
    char name[STR], due[40], why[STR];
};

struct vks_audit_report {
    time_t from, to;             /* inclusive, seconds */
    char from_s[32], to_s[32];
    struct lookup_group *groups;
    size_t ngroups, cap_groups;
    struct admin_act *acts;
    size_t nacts, cap_acts;
    struct file_span *files;
    size_t nfiles, cap_files;
    struct overdue *overdue;
    size_t noverdue, cap_overdue;
    bool overdue_checked;
    unsigned long events, in_period, skipped_types, no_ts;
    int verify_rc;
    unsigned long bad_line;
    char verdict[768];
    bool nomem;
};

static bool grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, nc * size);
    if (q == NULL)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.frac]Z (the event's ts) -> seconds; -1 if malformed. */
static time_t parse_time(const char *s, bool *date_only)
{
    struct tm tm = { 0 };
    const char *e = strptime(s, "%Y-%m-%d", &tm);
    if (e == NULL || e - s != 10)
        return -1;
    if (*e == '\0') {
        if (date_only)
            *date_only = true;
        return timegm(&tm);
    }
    const char *f = strptime(e, "T%H:%M:%S", &tm);
    if (f == NULL || f - e != 9)
        return -1;
    if (*f == '.')
        for (f++; *f >= '0' && *f <= '9'; f++)
            ;
    if (strcmp(f, "Z") != 0)
        return -1;
    if (date_only)
        *date_only = false;
    return timegm(&tm);
}

vks_status vks_audit_report_new(const char *from, const char *to, struct vks_audit_report **out,
                                struct vks_err *err)
{
    *out = NULL;
    bool day = false;
    time_t f = from ? parse_time(from, NULL) : -1;
    if (f < 0)
        return vks_err_set(err, VKS_E_INVALID_ARG, "--from: expected YYYY-MM-DD or "
                           "YYYY-MM-DDTHH:MM:SSZ (UTC)");
    time_t t = to ? parse_time(to, &day) : -1;
    if (t < 0)
        return vks_err_set(err, VKS_E_INVALID_ARG, "--to: expected YYYY-MM-DD or "
                           "YYYY-MM-DDTHH:MM:SSZ (UTC)");
    if (day)
        t += 86399; /* the whole day */
    if (f > t)
        return vks_err_set(err, VKS_E_INVALID_ARG, "--from is after --to");
    struct vks_audit_report *r = calloc(1, sizeof *r);
    if (r == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    r->from = f;
    r->to = t;
    struct tm tm;
    strftime(r->from_s, sizeof r->from_s, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&f, &tm));
    strftime(r->to_s, sizeof r->to_s, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    *out = r;
    return VKS_OK;
}

static const char *str(const struct json_object *o, const char *k)
{
    struct json_object *x;
    if (!json_object_object_get_ex(o, k, &x) || !json_object_is_type(x, json_type_string))
        return NULL;
    return json_object_get_string(x);
}

/* Copies a trail value for printing: control characters (a newline or an escape sequence written
 * into a reason or a path) become '?', so a value cannot forge report lines or drive a terminal. */
static void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* What a lookup or an act concerns: mount/path, else file:PATH or event:NAME. */
static void cred_name(const struct json_object *o, char *dst, size_t n)
{
    const char *m = str(o, "mount"), *p = str(o, "path");
    if (m || p)
        snprintf(dst, n, "%s/%s", m ? m : "-", p ? p : "-");
    else if (str(o, "file"))
        snprintf(dst, n, "file:%s", str(o, "file"));
    else if (str(o, "event_name"))
        snprintf(dst, n, "event:%s", str(o, "event_name"));
    else
        copy(dst, n, "-");
}

static void actor_name(const struct json_object *o, char *dst, size_t n)
{
    struct json_object *a, *uid;
    if (!json_object_object_get_ex(o, "actor", &a) || !json_object_is_type(a, json_type_object)) {
        copy(dst, n, "-");
        return;
    }
    const char *prog = str(a, "program"), *host = str(a, "host");
    long long u = json_object_object_get_ex(a, "uid", &uid) && json_object_is_type(uid, json_type_int)
                      ? (long long)json_object_get_int64(uid) : -1;
    snprintf(dst, n, "%s@%s uid %lld", prog ? prog : "-", host ? host : "-", u);
}

/* The api of an inbound login or sender check (vks-agent [inbound]); "" for every other lookup. */
static void lookup_api(const struct json_object *o, char *dst, size_t n)
{
    const char *api = str(o, "api");
    copy(dst, n, api && strncmp(api, "inbound.", 8) == 0 ? api : "");
}

static void add_lookup(struct vks_audit_report *r, const struct json_object *o, const char *ts)
{
    char cred[STR], actor[STR], api[48];
    cred_name(o, cred, sizeof cred);
    actor_name(o, actor, sizeof actor);
    lookup_api(o, api, sizeof api);
    struct lookup_group *g = NULL;
    for (size_t i = 0; i < r->ngroups && g == NULL; i++)
        if (strcmp(r->groups[i].cred, cred) == 0 && strcmp(r->groups[i].actor, actor) == 0 &&
            strcmp(r->groups[i].api, api) == 0)
            g = &r->groups[i];
    if (g == NULL) {
        if (!grow((void **)&r->groups, &r->cap_groups, r->ngroups, sizeof *r->groups)) {
            r->nomem = true;
            return;
        }
        g = &r->groups[r->ngroups++];
        memset(g, 0, sizeof *g);
        copy(g->cred, sizeof g->cred, cred);
        copy(g->actor, sizeof g->actor, actor);
        copy(g->api, sizeof g->api, api);
        copy(g->first, sizeof g->first, ts);
    }
    g->count++;
    copy(g->last, sizeof g->last, ts); /* a chain is in time order; several files in order */
    const char *result = str(o, "result"), *outcome = str(o, "outcome"), *code = str(o, "code");
    if (result && strcmp(result, "success") == 0)
        g->served++;
    else if ((outcome && strcmp(outcome, "denied") == 0) ||
             (code && (strcmp(code, "restricted") == 0 || strcmp(code, "permission_denied") == 0)))
        g->refused++;
    else
        g->failed++;
}

static void add_act(struct vks_audit_report *r, const struct json_object *o, const char *ts,
                    const char *type, const char *where, unsigned long line)
{
    if (!grow((void **)&r->acts, &r->cap_acts, r->nacts, sizeof *r->acts)) {
        r->nomem = true;
        return;
    }
    struct admin_act *a = &r->acts[r->nacts++];
    memset(a, 0, sizeof *a);
    copy(a->ts, sizeof a->ts, ts);
    copy(a->type, sizeof a->type, type);
    copy(a->op, sizeof a->op, str(o, "operator"));
    cred_name(o, a->cred, sizeof a->cred);
    copy(a->user, sizeof a->user, str(o, "username"));
    copy(a->result, sizeof a->result, str(o, "result"));
    copy(a->code, sizeof a->code, str(o, "code"));
    copy(a->reason, sizeof a->reason, str(o, "reason"));
    copy(a->detail, sizeof a->detail, str(o, "detail"));
    copy(a->where, sizeof a->where, where);
    a->line = line;
}

void vks_audit_report_event(void *ud, const char *where, unsigned long line,
                            const struct json_object *o, bool line_bad)
{
    struct vks_audit_report *r = ud;
    (void)line_bad; /* the verdict covers it: a report on a broken chain says so at the top */
    r->events++;
    const char *ts = str(o, "ts"), *type = str(o, "type");
    time_t t = ts ? parse_time(ts, NULL) : -1;
    if (t < 0) {
        r->no_ts++;
        return;
    }
    if (t < r->from || t > r->to)
        return;
    r->in_period++;
    if (strcmp(type, "secret.lookup") == 0)
        add_lookup(r, o, ts);
    else if (strncmp(type, "cred.", 5) == 0 || strncmp(type, "backup.", 7) == 0 || strncmp(type, "rekey.", 6) == 0 ||
             strncmp(type, "serve.", 6) == 0)
        add_act(r, o, ts, type, where, line);
    else
        r->skipped_types++;
}

vks_status vks_audit_report_add_file(struct vks_audit_report *r, const char *name,
                                     unsigned long first, unsigned long last, struct vks_err *err)
{
    if (!grow((void **)&r->files, &r->cap_files, r->nfiles, sizeof *r->files))
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    struct file_span *f = &r->files[r->nfiles++];
    copy(f->name, sizeof f->name, name);
    f->first = first;
    f->last = last;
    return VKS_OK;
}

void vks_audit_report_set_verdict(struct vks_audit_report *r, int verify_rc, unsigned long bad_line,
                                  const char *verdict)
{
    r->verify_rc = verify_rc;
    r->bad_line = bad_line;
    copy(r->verdict, sizeof r->verdict, verdict);
    size_t n = strlen(r->verdict);
    while (n > 0 && r->verdict[n - 1] == '\n')
        r->verdict[--n] = '\0';
}

vks_status vks_audit_report_add_overdue(struct vks_audit_report *r, const char *name,
                                        const char *due, const char *why, struct vks_err *err)
{
    if (!grow((void **)&r->overdue, &r->cap_overdue, r->noverdue, sizeof *r->overdue))
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    struct overdue *d = &r->overdue[r->noverdue++];
    copy(d->name, sizeof d->name, name);
    copy(d->due, sizeof d->due, due);
    copy(d->why, sizeof d->why, why);
    return VKS_OK;
}

void vks_audit_report_set_overdue_checked(struct vks_audit_report *r)
{
    r->overdue_checked = true;
}

int vks_audit_report_status(const struct vks_audit_report *r)
{
    if (r->nomem)
        return 2;
    return r->verify_rc;
}

void vks_audit_report_free(struct vks_audit_report *r)
{
    if (r == NULL)
        return;
    free(r->groups);
    free(r->acts);
    free(r->files);
    free(r->overdue);
    free(r);
}

/* ---- per-file status ---- */

/* "verified", "broken at line N" (N within the file), "after a break", "unverifiable (no key)" */
static void file_status(const struct vks_audit_report *r, const struct file_span *f, char *dst,
                        size_t n, unsigned long *line)
{
    *line = 0;
    if (r->verify_rc == 1) {
        if (r->bad_line == 0)
            copy(dst, n, "broken");            /* e.g. an anchored head not found, no events */
        else if (r->bad_line >= f->first && r->bad_line <= f->last) {
            *line = r->bad_line - f->first + 1;
            snprintf(dst, n, "broken at line %lu", *line);
        } else if (r->bad_line > f->last)
            copy(dst, n, "verified up to the break");
        else
            copy(dst, n, "after the break (not trusted)");
    } else if (r->verify_rc == 3) {
        copy(dst, n, "unverifiable without the key");
    } else {
        copy(dst, n, "verified");
    }
}

static bool is_reveal(const struct admin_act *a)
{
    return strcmp(a->type, "cred.reveal") == 0;
}

static bool act_failed(const struct admin_act *a)
{
    return strcmp(a->result, "success") != 0;
}

static bool is_reset(const struct admin_act *a)
{
    return strcmp(a->type, "cred.reset") == 0;
}

static bool rotation_done(const struct admin_act *a)
{
    return strcmp(a->type, "cred.rotate.finish") == 0 && !act_failed(a);
}

/* ---- text ---- */

static const char *overall(const struct vks_audit_report *r)
{
    return r->verify_rc == 0 ? "verified" : r->verify_rc == 3 ? "unverifiable" : "BROKEN";
}

static void text_act(FILE *out, const struct admin_act *a)
{
    fprintf(out, "  %s %s %s by %s: %s%s%s", a->ts, a->type, a->cred, a->op[0] ? a->op : "-",
            a->result, act_failed(a) ? " " : "", act_failed(a) ? a->code : "");
    if (a->user[0])
        fprintf(out, ", username %s", a->user);
    if (a->reason[0])
        fprintf(out, ", reason \"%s\"", a->reason);
    if (a->detail[0])
        fprintf(out, ", %s", a->detail);
    fputc('\n', out);
}

static void text_section(FILE *out, const struct vks_audit_report *r, const char *title,
                         bool (*want)(const struct admin_act *))
{
    size_t n = 0;
    for (size_t i = 0; i < r->nacts; i++)
        n += want(&r->acts[i]);
    fprintf(out, "\n%s: %zu\n", title, n);
    for (size_t i = 0; i < r->nacts; i++)
        if (want(&r->acts[i]))
            text_act(out, &r->acts[i]);
}

static bool any_act(const struct admin_act *a)
{
    return !is_reveal(a);
}

static void write_text(const struct vks_audit_report *r, FILE *out)
{
    if (r->verify_rc == 1)
        fprintf(out, "WARNING: AUDIT CHAIN BROKEN: the trail was modified, truncated or is "
                     "incomplete; the events below cannot be trusted\n  %s\n", r->verdict);
    else if (r->verify_rc == 3)
        fprintf(out, "WARNING: chain not verifiable without the audit key (structure only)\n");
    fprintf(out, "audit report %s .. %s (UTC)\n", r->from_s, r->to_s);
    fprintf(out, "chain: %s; %lu events read, %lu in the period\n", overall(r), r->events,
            r->in_period);
    for (size_t i = 0; i < r->nfiles; i++) {
        char st[64];
        unsigned long l;
        file_status(r, &r->files[i], st, sizeof st, &l);
        fprintf(out, "  file %s: %s\n", r->files[i].name, st);
    }
    fprintf(out, "\nlookups by credential and actor: %zu\n", r->ngroups);
    for (size_t i = 0; i < r->ngroups; i++) {
        const struct lookup_group *g = &r->groups[i];
        fprintf(out, "  %s%s%s%s by %s: %lu (served %lu, refused %lu, failed %lu), first %s, last %s\n",
                g->cred, g->api[0] ? " [" : "", g->api, g->api[0] ? "]" : "", g->actor, g->count, g->served,
                g->refused, g->failed, g->first, g->last);
    }
    text_section(out, r, "reveals", is_reveal);
    text_section(out, r, "administrative acts", any_act);
    text_section(out, r, "rotations finished", rotation_done);
    text_section(out, r, "emergency resets", is_reset);
    size_t nf = 0;
    for (size_t i = 0; i < r->ngroups; i++)
        nf += r->groups[i].refused + r->groups[i].failed > 0;
    fprintf(out, "\nfailed and refused lookups: %zu group%s\n", nf, nf == 1 ? "" : "s");
    for (size_t i = 0; i < r->ngroups; i++) {
        const struct lookup_group *g = &r->groups[i];
        if (g->refused + g->failed > 0)
            fprintf(out, "  %s%s%s%s by %s: refused %lu, failed %lu\n", g->cred, g->api[0] ? " [" : "", g->api,
                    g->api[0] ? "]" : "", g->actor, g->refused, g->failed);
    }
    text_section(out, r, "failed or refused administrative acts", act_failed);
    if (r->overdue_checked) {
        fprintf(out, "\nrotations overdue now: %zu\n", r->noverdue);
        for (size_t i = 0; i < r->noverdue; i++)
            fprintf(out, "  %s: due %s (%s)\n", r->overdue[i].name, r->overdue[i].due,
                    r->overdue[i].why);
    }
}

/* ---- JSON ---- */

static void jset(struct json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v && v[0] ? json_object_new_string(v) : NULL);
}

static void jnum(struct json_object *o, const char *k, unsigned long v)
{
    json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static struct json_object *json_act(const struct admin_act *a)
{
    struct json_object *o = json_object_new_object();
    jset(o, "ts", a->ts);
    jset(o, "type", a->type);
    jset(o, "operator", a->op);
    jset(o, "credential", a->cred);
    jset(o, "username", a->user);
    jset(o, "result", a->result);
    jset(o, "code", a->code);
    jset(o, "reason", a->reason);
    jset(o, "detail", a->detail);
    jset(o, "file", a->where);
    jnum(o, "line", a->line);
    return o;
}

static struct json_object *json_acts(const struct vks_audit_report *r,
                                     bool (*want)(const struct admin_act *))
{
    struct json_object *a = json_object_new_array();
    for (size_t i = 0; i < r->nacts; i++)
        if (want(&r->acts[i]))
            json_object_array_add(a, json_act(&r->acts[i]));
    return a;
}

static struct json_object *json_verification(const struct vks_audit_report *r)
{
    struct json_object *v = json_object_new_object(), *files = json_object_new_array();
    jset(v, "status", overall(r));
    jnum(v, "exit", (unsigned long)r->verify_rc);
    jset(v, "verdict", r->verdict);
    for (size_t i = 0; i < r->nfiles; i++) {
        char st[64];
        unsigned long l;
        file_status(r, &r->files[i], st, sizeof st, &l);
        struct json_object *f = json_object_new_object();
        jset(f, "file", r->files[i].name);
        jset(f, "status", st);
        json_object_object_add(f, "broken_line", l ? json_object_new_int64((int64_t)l) : NULL);
        json_object_array_add(files, f);
    }
    json_object_object_add(v, "files", files);
    return v;
}

static struct json_object *json_lookups(const struct vks_audit_report *r)
{
    struct json_object *a = json_object_new_array();
    for (size_t i = 0; i < r->ngroups; i++) {
        const struct lookup_group *g = &r->groups[i];
        struct json_object *o = json_object_new_object();
        jset(o, "credential", g->cred);
        jset(o, "actor", g->actor);
        jset(o, "api", g->api);
        jnum(o, "count", g->count);
        jnum(o, "served", g->served);
        jnum(o, "refused", g->refused);
        jnum(o, "failed", g->failed);
        jset(o, "first", g->first);
        jset(o, "last", g->last);
        json_object_array_add(a, o);
    }
    return a;
}

static struct json_object *json_doc(const struct vks_audit_report *r)
{
    struct json_object *d = json_object_new_object(), *p = json_object_new_object();
    jset(p, "from", r->from_s);
    jset(p, "to", r->to_s);
    json_object_object_add(d, "period", p);
    json_object_object_add(d, "verification", json_verification(r));
    jnum(d, "events_read", r->events);
    jnum(d, "events_in_period", r->in_period);
    json_object_object_add(d, "lookups", json_lookups(r));
    json_object_object_add(d, "reveals", json_acts(r, is_reveal));
    json_object_object_add(d, "admin", json_acts(r, any_act));
    json_object_object_add(d, "rotations_finished", json_acts(r, rotation_done));
    json_object_object_add(d, "resets", json_acts(r, is_reset));
    json_object_object_add(d, "failed_admin", json_acts(r, act_failed));
    struct json_object *od = NULL;
    if (r->overdue_checked) {
        od = json_object_new_array();
        for (size_t i = 0; i < r->noverdue; i++) {
            struct json_object *o = json_object_new_object();
            jset(o, "name", r->overdue[i].name);
            jset(o, "due", r->overdue[i].due);
            jset(o, "why", r->overdue[i].why);
            json_object_array_add(od, o);
        }
    }
    json_object_object_add(d, "overdue", od);
    return d;
}

/* ---- CSV (RFC 4180; a cell starting with = + - @ gets a leading ' against formula injection) ---- */

static void csv_cell(FILE *out, const char *s, bool last)
{
    fputc('"', out);
    if (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@')
        fputc('\'', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputs(last ? "\"\r\n" : "\",", out);
}

static void csv_row(FILE *out, const char *const *cells, size_t n)
{
    for (size_t i = 0; i < n; i++)
        csv_cell(out, cells[i] ? cells[i] : "", i + 1 == n);
}

#define CSV_COLS 15
static const char *const csv_header[CSV_COLS] = {
    "kind", "first", "last", "count", "credential", "actor", "operator", "type", "result", "code",
    "served", "refused", "failed", "reason", "detail",
};

static void write_csv(const struct vks_audit_report *r, FILE *out)
{
    csv_row(out, csv_header, CSV_COLS);
    for (size_t i = 0; i < r->nfiles; i++) {
        char st[64];
        unsigned long l;
        file_status(r, &r->files[i], st, sizeof st, &l);
        const char *row[CSV_COLS] = { "verification", "", "", "", r->files[i].name, "", "", "",
                                      st, "", "", "", "", "", "" };
        csv_row(out, row, CSV_COLS);
    }
    for (size_t i = 0; i < r->ngroups; i++) {
        const struct lookup_group *g = &r->groups[i];
        char c[24], s[24], rf[24], f[24];
        snprintf(c, sizeof c, "%lu", g->count);
        snprintf(s, sizeof s, "%lu", g->served);
        snprintf(rf, sizeof rf, "%lu", g->refused);
        snprintf(f, sizeof f, "%lu", g->failed);
        const char *row[CSV_COLS] = { "lookup", g->first, g->last, c, g->cred, g->actor, "",
                                      g->api[0] ? g->api : "secret.lookup", "", "", s, rf, f, "", "" };
        csv_row(out, row, CSV_COLS);
    }
    for (size_t i = 0; i < r->nacts; i++) {
        const struct admin_act *a = &r->acts[i];
        const char *row[CSV_COLS] = { is_reveal(a) ? "reveal" : is_reset(a) ? "reset" : "admin", a->ts, a->ts, "1",
                                      a->cred, "", a->op, a->type, a->result, a->code, "", "",
                                      "", a->reason, a->detail };
        csv_row(out, row, CSV_COLS);
    }
    for (size_t i = 0; r->overdue_checked && i < r->noverdue; i++) {
        const char *row[CSV_COLS] = { "overdue", r->overdue[i].due, "", "", r->overdue[i].name,
                                      "", "", "", "", "", "", "", "", "", r->overdue[i].why };
        csv_row(out, row, CSV_COLS);
    }
}

vks_status vks_audit_report_write(const struct vks_audit_report *r, enum vks_audit_report_format f,
                                  FILE *out, struct vks_err *err)
{
    if (r->nomem)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory while reading the trail");
    if (f == VKS_REPORT_JSON) {
        struct json_object *d = json_doc(r);
        if (d == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory");
        fputs(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE),
              out);
        fputc('\n', out);
        json_object_put(d);
    } else if (f == VKS_REPORT_CSV) {
        write_csv(r, out);
    } else {
        write_text(r, out);
    }
    if (fflush(out) != 0 || ferror(out))
        return vks_err_set(err, VKS_E_INTERNAL, "writing the report failed");
    return VKS_OK;
}
