/*
 * vks_audit through its C API: event fields, every outcome, the chain and the verifier against
 * every kind of tampering, failure policies on /dev/full, async queue and drops, rotation,
 * syslog and the capture used by the Lua callback sink.
 * Secrets used here are listed in tests/test-secrets.d/audit.txt.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vks_audit.h"
#include "vks_hmac.h"

#define KEY_B64 "QVVESVRLRVktVEVTVC01ZTFmMGM5YTc3ZDJiM2M0ZTg="
#define KEY_RAW "AUDITKEY-TEST-5e1f0c9a77d2b3c4e8"
#define VALUE "relay-password-AUDIT-9c1e4f"
#define VALUE2 "relay-password-AUDIT-rotated-77ab"
#define LONG_VALUE "relay-password-AUDIT-long-0f3c9e1d7a5b2e8c4f6a0d9b3e7c1a5f8d2b6e0c4a9f7d3b1e5c"

static char dir[256];

static void setup_dir(void)
{
    snprintf(dir, sizeof dir, "%s/unit-XXXXXX", getenv("VKS_SUITE_WORK") ? getenv("VKS_SUITE_WORK") : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    setenv("VKS_AUDIT_KEY", KEY_B64, 1);
    unsetenv("VKS_AUDIT_KEY_FILE");
}

static void teardown_all(void)
{
    vks_audit_shutdown();
}

static char *path_in(const char *name)
{
    static char p[2][512];
    static int i;
    i ^= 1;
    snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
    return p[i];
}

static void configure_file(const char *file, enum vks_audit_mode mode,
                           enum vks_audit_on_failure pol)
{
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.mode = mode;
    cfg.on_failure = pol;
    cfg.reopen_check_ms = 0;
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
}

static struct vks_audit_event lookup_event(enum vks_audit_outcome o, vks_status st)
{
    struct vks_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.outcome = o;
    ev.status = st;
    ev.source = VKS_AUDIT_SRC_VAULT;
    ev.vault_addr = "https://127.0.0.1:8200";
    ev.namespace_ = "team-a";
    ev.mount = "secret";
    ev.path = "smtp-auth/example.com";
    ev.key = "password";
    ev.kv_version = 2;
    ev.secret_version = 3;
    ev.token_accessor = "accessor-visible-1234";
    ev.ctx.domain = "example.com";
    ev.ctx.site_name = "site-a";
    ev.ctx.username = "relay-user";
    ev.ctx.destination = "mx.example.com";
    ev.ctx.tag = "tag-1";
    ev.latency_ns = 1234;
    if (st == VKS_OK) {
        ev.value = (const unsigned char *)VALUE;
        ev.value_len = strlen(VALUE);
        ev.encrypted = true;
    } else {
        ev.error = "not found: secret/smtp-auth/example.com";
    }
    if (o == VKS_AUDIT_HIT || o == VKS_AUDIT_STALE || o == VKS_AUDIT_NEGATIVE ||
        o == VKS_AUDIT_REFRESH) {
        ev.cached = true;
        ev.cache_age_ms = 42;
    }
    return ev;
}

static size_t read_lines(const char *file, char ***out)
{
    FILE *f = fopen(file, "r");
    cr_assert_not_null(f, "open %s", file);
    char **lines = NULL;
    size_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t l;
    while ((l = getline(&line, &cap, f)) >= 0) {
        if (l > 0 && line[l - 1] == '\n')
            line[l - 1] = '\0';
        lines = realloc(lines, (n + 1) * sizeof *lines);
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    *out = lines;
    return n;
}

static void write_lines(const char *file, char **lines, size_t n)
{
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static struct vks_audit_keys *test_keys(void)
{
    struct vks_audit_keys *k = NULL;
    bool found = false;
    struct vks_err err;
    cr_assert_eq(vks_audit_keys_load(NULL, &k, &found, &err), VKS_OK);
    cr_assert(found);
    return k;
}

/* Verifies the files in order; returns the verdict, *bad_seq the first bad seq. */
static int verify(const char **files, size_t nfiles, const char *head, long long *bad_seq,
                  bool with_key)
{
    struct vks_audit_keys *k = with_key ? test_keys() : NULL;
    struct vks_audit_verifier *v = NULL;
    struct vks_err err;
    cr_assert_eq(vks_audit_verifier_new(k, "file", &v, &err), VKS_OK);
    if (head != NULL)
        cr_assert_eq(vks_audit_verifier_add_head(v, head, &err), VKS_OK);
    for (size_t i = 0; i < nfiles; i++) {
        char **lines;
        size_t n = read_lines(files[i], &lines);
        for (size_t j = 0; j < n; j++)
            vks_audit_verifier_line(v, files[i], lines[j], strlen(lines[j]));
        free_lines(lines, n);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int rc = vks_audit_verifier_finish(v, mem);
    fclose(mem);
    cr_log_info("verifier:\n%s", buf);
    free(buf);
    unsigned long line;
    long long seq;
    vks_audit_verifier_first_bad(v, &line, &seq);
    if (bad_seq)
        *bad_seq = seq;
    vks_audit_verifier_free(v);
    vks_audit_keys_free(k);
    return rc;
}

static int verify1(const char *file, long long *bad_seq)
{
    const char *f[1] = { file };
    return verify(f, 1, NULL, bad_seq, true);
}

static struct json_object *parse(const char *line)
{
    struct json_object *o = json_tokener_parse(line);
    cr_assert_not_null(o, "line does not parse: %s", line);
    return o;
}

static const char *jstr(struct json_object *o, const char *path1, const char *path2)
{
    struct json_object *x;
    if (!json_object_object_get_ex(o, path1, &x))
        return NULL;
    if (path2 != NULL && !json_object_object_get_ex(x, path2, &x))
        return NULL;
    return json_object_is_type(x, json_type_null) ? NULL : json_object_get_string(x);
}

static int64_t jint(struct json_object *o, const char *k)
{
    struct json_object *x;
    cr_assert(json_object_object_get_ex(o, k, &x), "no field %s", k);
    return json_object_get_int64(x);
}

static bool file_contains(const char *file, const void *needle, size_t n)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        return false;
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return memmem(buf, len, needle, n) != NULL;
}

TestSuite(audit, .init = setup_dir, .fini = teardown_all, .timeout = 60);

Test(audit, hmac_matches_rfc4231_and_openssl)
{
    /* RFC 4231 test case 2 */
    struct vks_hmac_key k = { VKS_SECRET_EMPTY };
    struct vks_err err;
    cr_assert_eq(vks_hmac_key_set(&k, (const unsigned char *)"Jefe", 4, &err), VKS_OK);
    unsigned char mac[32];
    char hex[65];
    const char *msg = "what do ya want for nothing?";
    cr_assert(vks_hmac(&k, msg, strlen(msg), mac));
    vks_hmac_hex(mac, 32, hex);
    cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* and OpenSSL's HMAC over a longer message */
    unsigned char key32[32];
    memset(key32, 0xab, sizeof key32);
    cr_assert_eq(vks_hmac_key_set(&k, key32, 32, &err), VKS_OK);
    char big[1000];
    memset(big, 'x', sizeof big);
    cr_assert(vks_hmac(&k, big, sizeof big, mac));
    unsigned char ref[32];
    unsigned int rl = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), key32, 32, (unsigned char *)big, sizeof big, ref, &rl));
    cr_assert_eq(memcmp(mac, ref, 32), 0);
    vks_hmac_key_clear(&k);
}

Test(audit, lookup_event_has_every_field_and_no_secret)
{
    const char *file = path_in("fields.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    char *line = NULL;
    struct vks_err err;
    cr_assert_eq(vks_audit_emit(&ev, &line, &err), VKS_OK, "%s", err.msg);
    cr_assert_not_null(line);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 2, "start event + lookup event, got %zu", n);
    cr_assert_str_eq(lines[1], line, "line_out is the written line");
    struct json_object *o0 = parse(lines[0]);
    cr_assert_str_eq(jstr(o0, "type", NULL), "audit.open");
    cr_assert_str_eq(jstr(o0, "reason", NULL), "start");
    cr_assert_eq(jint(o0, "seq"), 0);
    struct json_object *o = parse(lines[1]);
    cr_assert_eq(jint(o, "v"), 1);
    cr_assert_eq(jint(o, "seq"), 1);
    cr_assert_str_eq(jstr(o, "chain", NULL), jstr(o0, "chain", NULL));
    cr_assert_str_eq(jstr(o, "type", NULL), "secret.lookup");
    cr_assert_str_eq(jstr(o, "api", NULL), "resolve");
    cr_assert_str_eq(jstr(o, "outcome", NULL), "hit");
    cr_assert_str_eq(jstr(o, "result", NULL), "success");
    cr_assert_str_eq(jstr(o, "code", NULL), "ok");
    cr_assert_null(jstr(o, "error", NULL));
    cr_assert_str_eq(jstr(o, "source", NULL), "vault");
    cr_assert_str_eq(jstr(o, "vault_addr", NULL), "https://127.0.0.1:8200");
    cr_assert_str_eq(jstr(o, "namespace", NULL), "team-a");
    cr_assert_str_eq(jstr(o, "mount", NULL), "secret");
    cr_assert_str_eq(jstr(o, "path", NULL), "smtp-auth/example.com");
    cr_assert_str_eq(jstr(o, "key", NULL), "password");
    cr_assert_eq(jint(o, "kv_version"), 2);
    cr_assert_eq(jint(o, "secret_version"), 3);
    cr_assert_str_eq(jstr(o, "cached", NULL), "true");
    cr_assert_eq(jint(o, "cache_age_ms"), 42);
    cr_assert_str_eq(jstr(o, "latency_us", NULL), "1.234");
    cr_assert_str_eq(jstr(o, "token_accessor", NULL), "accessor-visible-1234");
    cr_assert_str_eq(jstr(o, "ctx", "domain"), "example.com");
    cr_assert_str_eq(jstr(o, "ctx", "site_name"), "site-a");
    cr_assert_str_eq(jstr(o, "ctx", "username"), "relay-user");
    cr_assert_str_eq(jstr(o, "ctx", "destination"), "mx.example.com");
    cr_assert_str_eq(jstr(o, "ctx", "tag"), "tag-1");
    cr_assert_str_eq(jstr(o, "encrypted", NULL), "true");
    cr_assert_not_null(jstr(o, "actor", "host"));
    cr_assert_eq(atoll(jstr(o, "actor", "pid")), getpid());
    cr_assert_not_null(jstr(o, "actor", "program"));
    cr_assert_eq(strlen(jstr(o, "key_id", NULL)), 16);
    cr_assert_str_eq(jstr(o, "prev_mac", NULL), jstr(o0, "mac", NULL));
    /* ts: RFC 3339 UTC with microseconds */
    const char *ts = jstr(o, "ts", NULL);
    cr_assert_eq(strlen(ts), 27, "ts %s", ts);
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[26], 'Z');
    /* the fingerprint is the keyed HMAC of the value, truncated, and reveals nothing */
    unsigned char fp[VKS_AUDIT_FP_LEN];
    char fphex[2 * VKS_AUDIT_FP_LEN + 1];
    cr_assert_eq(vks_audit_fingerprint((const unsigned char *)VALUE, strlen(VALUE), fp, &err),
                 VKS_OK);
    vks_hmac_hex(fp, sizeof fp, fphex);
    cr_assert_str_eq(jstr(o, "fp", NULL), fphex);
    cr_assert_not(file_contains(file, VALUE, strlen(VALUE)));
    cr_assert_not(file_contains(file, KEY_B64, strlen(KEY_B64)));
    cr_assert_not(file_contains(file, KEY_RAW, strlen(KEY_RAW)));
    json_object_put(o);
    json_object_put(o0);
    free(line);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

Test(audit, rotation_of_value_changes_fingerprint_not_revealing_it)
{
    const char *file = path_in("fp.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_MISS, VKS_OK);
    char *l1, *l2, *l3;
    cr_assert_eq(vks_audit_emit(&ev, &l1, NULL), VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, &l2, NULL), VKS_OK);
    ev.value = (const unsigned char *)VALUE2;
    ev.value_len = strlen(VALUE2);
    cr_assert_eq(vks_audit_emit(&ev, &l3, NULL), VKS_OK);
    struct json_object *a = parse(l1), *b = parse(l2), *c = parse(l3);
    cr_assert_str_eq(jstr(a, "fp", NULL), jstr(b, "fp", NULL), "same value, same fingerprint");
    cr_assert_str_neq(jstr(a, "fp", NULL), jstr(c, "fp", NULL), "rotation is visible");
    cr_assert_not(file_contains(file, VALUE2, strlen(VALUE2)));
    json_object_put(a);
    json_object_put(b);
    json_object_put(c);
    free(l1);
    free(l2);
    free(l3);
}

Test(audit, every_outcome_gives_exactly_one_event)
{
    const char *file = path_in("outcomes.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct {
        enum vks_audit_outcome o;
        vks_status st;
        const char *name, *result, *code;
    } cases[] = {
        { VKS_AUDIT_HIT, VKS_OK, "hit", "success", "ok" },
        { VKS_AUDIT_MISS, VKS_OK, "miss", "success", "ok" },
        { VKS_AUDIT_REFRESH, VKS_OK, "refresh", "success", "ok" },
        { VKS_AUDIT_STALE, VKS_OK, "stale", "success", "ok" },
        { VKS_AUDIT_NEGATIVE, VKS_E_NOT_FOUND, "negative_cached", "failure", "not_found" },
        { VKS_AUDIT_DENIED, VKS_E_PERMISSION_DENIED, "denied", "failure", "permission_denied" },
        { VKS_AUDIT_DENIED, VKS_E_RESTRICTED, "denied", "failure", "restricted" },
        { VKS_AUDIT_ERROR, VKS_E_UNAVAILABLE, "error", "failure", "unavailable" },
    };
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < nc; i++) {
        struct vks_audit_event ev = lookup_event(cases[i].o, cases[i].st);
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    }
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, nc + 1, "one start event and one event per lookup, got %zu", n);
    for (size_t i = 0; i < nc; i++) {
        struct json_object *o = parse(lines[i + 1]);
        cr_assert_str_eq(jstr(o, "outcome", NULL), cases[i].name);
        cr_assert_str_eq(jstr(o, "result", NULL), cases[i].result);
        cr_assert_str_eq(jstr(o, "code", NULL), cases[i].code);
        if (cases[i].st == VKS_OK)
            cr_assert_not_null(jstr(o, "fp", NULL));
        else
            cr_assert_null(jstr(o, "fp", NULL), "no fingerprint without a value");
        json_object_put(o);
    }
    free_lines(lines, n);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_eq(s.emitted, nc);
    cr_assert_eq(s.written, nc + 1);
    cr_assert_eq(s.failures, 0);
}

Test(audit, strings_are_escaped_and_still_verify)
{
    const char *file = path_in("escape.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_ERROR, VKS_E_BAD_KEYSOURCE);
    ev.path = "we\"ird\\path\n\x01\xff\xc3\xa9";
    ev.ctx.tag = "tag\twith\ttabs";
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 2);
    struct json_object *o = parse(lines[1]);
    cr_assert_str_eq(jstr(o, "path", NULL), "we\"ird\\path\n\x01\xef\xbf\xbd\xc3\xa9");
    cr_assert_str_eq(jstr(o, "ctx", "tag"), "tag\twith\ttabs");
    json_object_put(o);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

/* ---- tampering ------------------------------------------------------------------------------ */

static const char *make_log(const char *name, int events)
{
    const char *file = path_in(name);
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    for (int i = 0; i < events; i++) {
        struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    }
    return file;
}

Test(audit, untouched_log_verifies)
{
    const char *file = make_log("clean.jsonl", 10);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 0);
    cr_assert_eq(bad, -1);
}

Test(audit, deleting_a_line_is_detected)
{
    const char *file = make_log("del.jsonl", 10);
    char **lines;
    size_t n = read_lines(file, &lines);
    free(lines[5]);
    memmove(&lines[5], &lines[6], (n - 6) * sizeof *lines);
    write_lines(file, lines, n - 1);
    free_lines(lines, n - 1);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 6, "first bad seq is the one after the gap, got %lld", bad);
}

Test(audit, deleting_the_first_line_is_detected)
{
    const char *file = make_log("delhead.jsonl", 5);
    char **lines;
    size_t n = read_lines(file, &lines);
    write_lines(file, lines + 1, n - 1);
    free_lines(lines, n);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 1);
}

Test(audit, modifying_a_line_is_detected)
{
    const char *file = make_log("mod.jsonl", 10);
    char **lines;
    size_t n = read_lines(file, &lines);
    char *p = strstr(lines[4], "example.com");
    cr_assert_not_null(p);
    p[0] = 'E'; /* "Example.com" */
    write_lines(file, lines, n);
    free_lines(lines, n);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 4);
}

/* A repeated key (json-c would silently keep the last) is refused as not one of our lines, with
 * the key and without it (structure only), wherever it sits. */
Test(audit, a_repeated_key_in_a_line_is_detected)
{
    static const char *const dup[] = { "{\"v\":1,", "\"seq\":", "\"chain\":" };
    for (size_t k = 0; k < sizeof dup / sizeof dup[0]; k++) {
        char name[40];
        snprintf(name, sizeof name, "dup%zu.jsonl", k);
        const char *file = make_log(name, 6);
        char **lines;
        size_t n = read_lines(file, &lines);
        const char *at = strstr(lines[3], dup[k]);
        cr_assert_not_null(at, "%s", dup[k]);
        /* repeat the member that starts at `at` (up to its comma) right after it */
        const char *from = k == 0 ? at + 1 : at;
        const char *comma = strchr(from, ',');
        cr_assert_not_null(comma);
        size_t mlen = (size_t)(comma + 1 - from);
        char *grown = malloc(strlen(lines[3]) + mlen + 1);
        size_t pre = (size_t)(comma + 1 - lines[3]);
        memcpy(grown, lines[3], pre);
        memcpy(grown + pre, from, mlen);
        strcpy(grown + pre + mlen, lines[3] + pre);
        free(lines[3]);
        lines[3] = grown;
        write_lines(file, lines, n);
        free_lines(lines, n);
        const char *f[1] = { file };
        cr_assert_eq(verify(f, 1, NULL, NULL, true), 1, "with the key: %s", dup[k]);
        cr_assert_eq(verify(f, 1, NULL, NULL, false), 1, "structure only: %s", dup[k]);
    }
}

Test(audit, inserting_a_forged_or_copied_line_is_detected)
{
    const char *file = make_log("ins.jsonl", 10);
    char **lines;
    size_t n = read_lines(file, &lines);
    /* a copy of line 3 inserted after line 7 (a replay) */
    char **more = malloc((n + 1) * sizeof *more);
    memcpy(more, lines, 8 * sizeof *more);
    more[8] = lines[3];
    memcpy(more + 9, lines + 8, (n - 8) * sizeof *more);
    write_lines(file, more, n + 1);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 3);
    /* a line with a fresh seq but no valid MAC */
    char forged[4096];
    snprintf(forged, sizeof forged, "%s", lines[n - 1]);
    char *seq = strstr(forged, "\"seq\":10");
    cr_assert_not_null(seq);
    seq[7] = '1'; /* seq 11 */
    lines = realloc(lines, (n + 1) * sizeof *lines);
    lines[n] = strdup(forged);
    write_lines(file, lines, n + 1);
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 11);
    /* a garbage line */
    free(lines[n]);
    lines[n] = strdup("{\"hello\":\"world\"}");
    write_lines(file, lines, n + 1);
    cr_assert_eq(verify1(file, &bad), 1);
    free(more);
    free_lines(lines, n + 1);
}

Test(audit, reordering_lines_is_detected)
{
    const char *file = make_log("reorder.jsonl", 10);
    char **lines;
    size_t n = read_lines(file, &lines);
    char *t = lines[3];
    lines[3] = lines[4];
    lines[4] = t;
    write_lines(file, lines, n);
    free_lines(lines, n);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
    cr_assert_eq(bad, 4);
}

Test(audit, truncating_the_tail_is_detected_with_an_anchored_head)
{
    const char *file = make_log("trunc.jsonl", 10);
    char **lines;
    size_t n = read_lines(file, &lines);
    struct json_object *last = parse(lines[n - 1]);
    char head[65];
    snprintf(head, sizeof head, "%s", jstr(last, "mac", NULL));
    json_object_put(last);
    const char *f[1] = { file };
    cr_assert_eq(verify(f, 1, head, NULL, true), 0, "anchored head present");
    write_lines(file, lines, n - 2);
    free_lines(lines, n);
    cr_assert_eq(verify(f, 1, head, NULL, true), 1, "anchored head gone: truncation detected");
    /* without the anchor the shorter log is internally consistent and reported open */
    cr_assert_eq(verify(f, 1, NULL, NULL, true), 0);
}

Test(audit, a_closed_chain_shows_that_nothing_followed)
{
    const char *file = make_log("closed.jsonl", 3);
    vks_audit_shutdown();
    char **lines;
    size_t n = read_lines(file, &lines);
    struct json_object *o = parse(lines[n - 1]);
    cr_assert_str_eq(jstr(o, "type", NULL), "audit.close");
    json_object_put(o);
    /* an event appended after the close by someone else is detected (even a replayed one) */
    lines = realloc(lines, (n + 1) * sizeof *lines);
    lines[n] = strdup(lines[2]);
    write_lines(file, lines, n + 1);
    free_lines(lines, n + 1);
    cr_assert_eq(verify1(file, NULL), 1);
}

Test(audit, wrong_key_or_no_key_cannot_verify)
{
    const char *file = make_log("wrongkey.jsonl", 3);
    const char *f[1] = { file };
    cr_assert_eq(verify(f, 1, NULL, NULL, false), 3, "structure only without a key");
    setenv("VKS_AUDIT_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
    cr_assert_eq(verify(f, 1, NULL, NULL, true), 3, "another key: not verifiable");
}

Test(audit, ephemeral_key_without_configuration)
{
    unsetenv("VKS_AUDIT_KEY");
    const char *file = make_log("ephemeral.jsonl", 2);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert(s.ephemeral_key);
    cr_assert_str_eq(s.key_id, "ephemeral");
    char **lines;
    size_t n = read_lines(file, &lines);
    struct json_object *o = parse(lines[1]);
    cr_assert_str_eq(jstr(o, "key_id", NULL), "ephemeral");
    json_object_put(o);
    free_lines(lines, n);
    const char *f[1] = { file };
    setenv("VKS_AUDIT_KEY", KEY_B64, 1);
    cr_assert_eq(verify(f, 1, NULL, NULL, true), 3);
    /* require_key refuses to run with an ephemeral key */
    vks_audit_shutdown();
    unsetenv("VKS_AUDIT_KEY");
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.require_key = true;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_E_CONFIG);
    cr_assert(strstr(err.msg, "require_key") != NULL, "%s", err.msg);
}

Test(audit, key_file_must_be_private)
{
    unsetenv("VKS_AUDIT_KEY");
    const char *kf = path_in("audit.key");
    int fd = open(kf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, KEY_RAW, 32), 32);
    close(fd);
    chmod(kf, 0644);
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = path_in("kf.jsonl");
    cfg.key_file = kf;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_E_CONFIG);
    cr_assert(strstr(err.msg, "group or others") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, KEY_RAW) == NULL);
    chmod(kf, 0600);
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    /* the same key as the base64 one: same key id */
    struct vks_audit_keys *k;
    bool found;
    setenv("VKS_AUDIT_KEY", KEY_B64, 1);
    cr_assert_eq(vks_audit_keys_load(NULL, &k, &found, &err), VKS_OK);
    cr_assert_str_eq(s.key_id, vks_audit_keys_id(k));
    vks_audit_keys_free(k);
}

Test(audit, same_options_again_is_a_noop)
{
    const char *file = path_in("noop.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    struct vks_audit_stats a, b;
    vks_audit_get_stats(&a);
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    vks_audit_get_stats(&b);
    cr_assert_str_eq(a.chain, b.chain);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 3, "no extra audit.open after a no-op configure");
    free_lines(lines, n);
    /* a changed option continues the chain, announced by an audit.open */
    configure_file(file, VKS_AUDIT_FSYNC, VKS_AUDIT_DENY);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    n = read_lines(file, &lines);
    cr_assert_eq(n, 5);
    struct json_object *o = parse(lines[3]);
    cr_assert_str_eq(jstr(o, "type", NULL), "audit.open");
    cr_assert_str_eq(jstr(o, "reason", NULL), "configure");
    cr_assert_str_eq(jstr(o, "mode", NULL), "fsync");
    json_object_put(o);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

/* ---- failure policy ------------------------------------------------------------------------- */

Test(audit, deny_on_dev_full_refuses_the_lookup)
{
    configure_file("/dev/full", VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_emit(&ev, NULL, &err), VKS_E_AUDIT_UNAVAILABLE);
    cr_assert(strstr(err.msg, "/dev/full") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, VALUE) == NULL);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_eq(s.failures, 1);
    cr_assert_eq(s.written, 0);
}

Test(audit, allow_on_dev_full_serves_and_counts)
{
    configure_file("/dev/full", VKS_AUDIT_SYNC, VKS_AUDIT_ALLOW);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_eq(s.failures, 5);
    cr_assert_geq(s.sink_errors, 5);
}

Test(audit, one_sink_failing_leaves_an_acknowledged_gap)
{
    /* file + stderr; stderr points to /dev/full for a while */
    const char *file = path_in("gap.jsonl");
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.stderr_sink = true;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    /* the file fails: swap its fd for /dev/full underneath */
    int full = open("/dev/full", O_WRONLY);
    char **lines;
    size_t n0 = read_lines(file, &lines);
    free_lines(lines, n0);
    int filefd = -1;
    for (int fd = 3; fd < 64; fd++) {
        char l[64], t[512];
        snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(l, t, sizeof t - 1);
        if (k > 0) {
            t[k] = '\0';
            if (strstr(t, "gap.jsonl"))
                filefd = fd;
        }
    }
    cr_assert_geq(filefd, 0);
    int keep = dup(filefd);
    dup2(full, filefd);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK, "stderr still records");
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    dup2(keep, filefd);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    vks_audit_shutdown(); /* its audit.close goes to the stderr copy too: not to the test log */
    dup2(saved, 2);
    size_t n = read_lines(file, &lines);
    /* start, lookup, [2 lookups missed], audit.open resume, lookup, close */
    cr_assert_eq(n, 5, "got %zu lines", n);
    struct json_object *o = parse(lines[2]);
    cr_assert_str_eq(jstr(o, "type", NULL), "audit.open");
    cr_assert_str_eq(jstr(o, "reason", NULL), "resume");
    /* seq 2 was the first the file missed; failed attempts at this marker used seqs too */
    cr_assert_eq(jint(o, "missed_from"), 2);
    cr_assert_eq(jint(o, "missed_to"), jint(o, "seq") - 1);
    json_object_put(o);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0, "an acknowledged gap verifies");
}

/* ---- async ---------------------------------------------------------------------------------- */

Test(audit, async_writes_everything_and_drains_on_shutdown)
{
    const char *file = path_in("async.jsonl");
    configure_file(file, VKS_AUDIT_ASYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    int sent = 0;
    for (int i = 0; i < 3000; i++) {
        vks_status st = vks_audit_emit(&ev, NULL, NULL);
        if (st == VKS_OK)
            sent++;
    }
    vks_audit_shutdown();
    char **lines;
    size_t n = read_lines(file, &lines);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    /* start + accepted lookups + [dropped notice] + close */
    size_t lookups = 0, notices = 0;
    for (size_t i = 0; i < n; i++) {
        if (strstr(lines[i], "\"type\":\"secret.lookup\""))
            lookups++;
        if (strstr(lines[i], "\"type\":\"audit.dropped\""))
            notices++;
    }
    cr_assert_eq(lookups, (size_t)sent, "every accepted event written (%zu vs %d)", lookups, sent);
    cr_assert_eq(sent + (int)s.dropped, 3000, "each event is written or counted as dropped");
    if (s.dropped > 0)
        cr_assert_geq(notices, 1, "drops are reported in the log");
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

struct reader {
    const char *path;
    int fd;
    char *buf;
    size_t len;
};

static void *fifo_open_reader(void *arg)
{
    struct reader *r = arg;
    r->fd = open(r->path, O_RDONLY | O_NONBLOCK); /* no writer yet: must not wait */
    if (r->fd >= 0)
        fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) & ~O_NONBLOCK);
    return NULL;
}

static void *fifo_drain(void *arg)
{
    struct reader *r = arg;
    FILE *out = fopen(path_in("fifo-copy.jsonl"), "w");
    char buf[65536];
    ssize_t k;
    while ((k = read(r->fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)k, out);
    fclose(out);
    close(r->fd);
    return NULL;
}

/* Async audit to a FIFO whose read end is open (a FIFO without a reader is refused at configure,
 * never waited for) but not read yet: the writer waits in its write, the queue (4) fills. */
static void configure_unread_fifo(struct reader *r, long timeout_ms)
{
    const char *fifo = path_in("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    *r = (struct reader){ fifo, -1, NULL, 0 };
    fifo_open_reader(r);
    cr_assert_geq(r->fd, 0);
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = fifo;
    cfg.mode = VKS_AUDIT_ASYNC;
    cfg.on_failure = VKS_AUDIT_ALLOW;
    cfg.queue_size = 4;
    cfg.timeout_ms = timeout_ms;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
}

Test(audit, async_queue_full_drops_are_counted_and_reported)
{
    /* this test is about a full queue, not the write deadline: a deadline far longer than the
     * test needs, and no call that waits for the audit lock (vks_audit_get_stats does, for the
     * chain fields) while the writer is blocked on the full FIFO */
    struct reader r;
    configure_unread_fifo(&r, 20000);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    /* a 64 KiB pipe holds about a hundred lines, the queue 4: 400 events must overflow it */
    for (int i = 0; i < 400; i++)
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK, "allow: served even when dropped");
    /* drain the FIFO in a thread (the writer goes on), then count, then shut down: shutdown
     * closes the write end */
    pthread_t rt;
    pthread_create(&rt, NULL, fifo_drain, &r);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_geq(s.dropped, 3, "the queue filled up (%llu dropped)", (unsigned long long)s.dropped);
    vks_audit_shutdown();
    pthread_join(rt, NULL);
    char **lines;
    size_t n = read_lines(path_in("fifo-copy.jsonl"), &lines);
    uint64_t reported = 0;
    for (size_t j = 0; j < n; j++) {
        if (strstr(lines[j], "\"type\":\"audit.dropped\"")) {
            struct json_object *o = parse(lines[j]);
            reported += (uint64_t)jint(o, "queue_full");
            json_object_put(o);
        }
    }
    cr_assert_eq(reported, s.dropped, "every drop reported: %llu vs %llu",
                 (unsigned long long)reported, (unsigned long long)s.dropped);
    free_lines(lines, n);
    cr_assert_eq(verify1(path_in("fifo-copy.jsonl"), NULL), 0);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A stalled sink keeps the writer inside a write, holding the audit lock, for up to timeout_ms.
 * A lookup that then finds the queue full must drop its event and go on at once: it used to wait
 * for that lock (twice) only to note and word the reason, so every lookup took the deadline. The
 * bound asserted (5 s for 400 lookups against a 10 s deadline) is not a speed goal: waiting even once
 * would exceed it (the loop sleeps 0.4 s in all). */
Test(audit, async_queue_full_never_waits_for_a_stalled_writer)
{
    struct reader r;
    configure_unread_fifo(&r, 10000);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    /* 400 lookups, 1 ms apart: the 64 KiB pipe (about a hundred lines) fills after a fraction of
     * them, the writer then waits in its write (up to the 10 s deadline) and the rest are dropped */
    double t0 = mono_s();
    for (int i = 0; i < 400; i++) {
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK, "allow: served even when dropped");
        usleep(1000);
    }
    double took = mono_s() - t0;
    /* drain first: vks_audit_get_stats waits for the audit lock, which the blocked writer holds */
    pthread_t rt;
    pthread_create(&rt, NULL, fifo_drain, &r);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    vks_audit_shutdown();
    pthread_join(rt, NULL);
    cr_assert_geq(s.dropped, 100, "the queue was full while the writer waited (%llu dropped)",
                  (unsigned long long)s.dropped);
    cr_assert_lt(took, 5.0, "400 lookups took %.3f s: a dropped one waited for the stalled writer", took);
}

/* ---- rotation ------------------------------------------------------------------------------- */

Test(audit, rename_rotation_reopens_and_both_files_verify)
{
    const char *file = path_in("rot.jsonl");
    char old[600];
    snprintf(old, sizeof old, "%s.1", file);
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    cr_assert_eq(rename(file, old), 0);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 3, "reopen marker + 2 events in the new file");
    struct json_object *o = parse(lines[0]);
    cr_assert_str_eq(jstr(o, "reason", NULL), "reopen");
    json_object_put(o);
    free_lines(lines, n);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_eq(s.reopens, 1);
    const char *both[2] = { old, file };
    cr_assert_eq(verify(both, 2, NULL, NULL, true), 0);
    cr_assert_eq(verify1(file, NULL), 0, "the new file alone verifies too");
    /* but the new file without its first line does not */
    n = read_lines(file, &lines);
    write_lines(file, lines + 1, n - 1);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 1);
}

Test(audit, copytruncate_is_noticed)
{
    const char *file = path_in("ct.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    cr_assert_eq(truncate(file, 0), 0);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 2);
    struct json_object *o = parse(lines[0]);
    cr_assert_str_eq(jstr(o, "reason", NULL), "truncated");
    json_object_put(o);
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

/* ---- other sinks ---------------------------------------------------------------------------- */

Test(audit, syslog_sink_sends_the_line)
{
    const char *sock = path_in("log.sock");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.syslog = true;
    cfg.syslog_socket = sock;
    cfg.syslog_ident = "vks-test";
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_MISS, VKS_OK);
    char *line = NULL;
    cr_assert_eq(vks_audit_emit(&ev, &line, NULL), VKS_OK);
    char buf[8192];
    ssize_t k = recv(s, buf, sizeof buf - 1, 0); /* the start event */
    cr_assert_gt(k, 0);
    k = recv(s, buf, sizeof buf - 1, 0);
    cr_assert_gt(k, 0);
    buf[k] = '\0';
    cr_assert(strncmp(buf, "<86>", 4) == 0, "authpriv.info priority: %.8s", buf);
    cr_assert(strstr(buf, "vks-test[") != NULL);
    cr_assert(strstr(buf, line) != NULL, "the datagram carries the whole line");
    free(line);
    close(s);
    /* the socket gone: deny refuses */
    unlink(sock);
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_emit(&ev, NULL, &err), VKS_E_AUDIT_UNAVAILABLE);
    cr_assert(strstr(err.msg, "syslog") != NULL, "%s", err.msg);
}

Test(audit, capture_for_the_lua_callback_sink)
{
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.callback = true;
    cfg.mode = VKS_AUDIT_ASYNC;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    /* without a registered callback in this thread nothing can record: deny */
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_E_AUDIT_UNAVAILABLE);
    vks_audit_capture_begin();
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    char *lines = vks_audit_capture_end();
    cr_assert_not_null(lines);
    /* start event + lookup, newline separated */
    char *nl = strchr(lines, '\n');
    cr_assert_not_null(nl);
    cr_assert(strstr(lines, "\"type\":\"audit.open\"") < nl);
    cr_assert(strstr(nl, "\"type\":\"secret.lookup\"") != NULL);
    cr_assert_null(vks_audit_capture_end(), "capture ends");
    const char *file = path_in("captured.jsonl");
    FILE *f = fopen(file, "w");
    fprintf(f, "%s\n", lines);
    fclose(f);
    free(lines);
    cr_assert_eq(verify1(file, NULL), 0);
}

Test(audit, forked_child_starts_its_own_chain)
{
    const char *file = path_in("fork.jsonl");
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            if (vks_audit_emit(&ev, NULL, NULL) != VKS_OK)
                _exit(1);
        vks_audit_shutdown();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_eq(n, 2 + 5 + 1, "parent 3 lines, child start + 3 + close");
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

Test(audit, env_configuration)
{
    const char *file = path_in("env.jsonl");
    setenv("VKS_AUDIT_FILE", file, 1);
    setenv("VKS_AUDIT_MODE", "fsync", 1);
    setenv("VKS_AUDIT_ON_FAILURE", "allow", 1);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert(s.enabled);
    cr_assert_eq(s.mode, VKS_AUDIT_FSYNC);
    cr_assert_eq(s.on_failure, VKS_AUDIT_ALLOW);
    cr_assert_eq(verify1(file, NULL), 0);
    struct vks_audit_config cfg;
    struct vks_err err;
    setenv("VKS_AUDIT_MODE", "sometimes", 1);
    cr_assert_eq(vks_audit_config_from_env(&cfg, &err), VKS_E_CONFIG);
    cr_assert(strstr(err.msg, "VKS_AUDIT_MODE") != NULL);
    unsetenv("VKS_AUDIT_FILE");
    unsetenv("VKS_AUDIT_MODE");
    unsetenv("VKS_AUDIT_ON_FAILURE");
}

Test(audit, off_without_sinks_unless_required)
{
    unsetenv("VKS_AUDIT_FILE");
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_not(s.enabled);
    cr_assert_eq(s.unaudited, 1);
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.required = true;
    struct vks_err err;
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK);
    cr_assert_eq(vks_audit_emit(&ev, NULL, &err), VKS_E_AUDIT_UNAVAILABLE);
}

Test(audit, async_deny_refuses_once_the_writer_finds_every_sink_failing)
{
    configure_file("/dev/full", VKS_AUDIT_ASYNC, VKS_AUDIT_DENY);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    /* accepted into the queue: async cannot know yet */
    cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    vks_audit_flush(); /* the writer tried, and no sink recorded it */
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_emit(&ev, NULL, &err), VKS_E_AUDIT_UNAVAILABLE);
    cr_assert(strstr(err.msg, "deny") != NULL, "%s", err.msg);
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_geq(s.failures, 2, "the lost event and the refused one are both counted");
}

Test(audit, a_broken_environment_fails_closed)
{
    setenv("VKS_AUDIT_FILE", path_in("broken.jsonl"), 1);
    setenv("VKS_AUDIT_MODE", "sometimes", 1);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_emit(&ev, NULL, &err), VKS_E_AUDIT_UNAVAILABLE);
    cr_assert(strstr(err.msg, "VKS_AUDIT_MODE") != NULL, "%s", err.msg);
    unsetenv("VKS_AUDIT_FILE");
    unsetenv("VKS_AUDIT_MODE");
}

/* async: the writer fingerprints the value from the caller's locked copy (a pool slot for short
   values, an arena slot for long ones); every line carries the fingerprint of its own value,
   across pool wrap-around, and no value reaches the file */
Test(audit, async_fingerprints_each_value_it_was_given)
{
    const char *file = path_in("async-fp.jsonl");
    configure_file(file, VKS_AUDIT_ASYNC, VKS_AUDIT_DENY);
    static const char *const values[] = { VALUE, VALUE2, LONG_VALUE };
    char want[3][2 * VKS_AUDIT_FP_LEN + 1];
    for (int v = 0; v < 3; v++) {
        unsigned char fp[VKS_AUDIT_FP_LEN];
        cr_assert_eq(vks_audit_fingerprint((const unsigned char *)values[v], strlen(values[v]),
                                           fp, NULL), VKS_OK);
        vks_hmac_hex(fp, sizeof fp, want[v]);
    }
    cr_assert(strlen(LONG_VALUE) > 64, "the long value must not fit a pool slot");
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    int sent[3] = { 0, 0, 0 };
    for (int i = 0; i < 2500; i++) {
        int v = i % 3;
        char tag[32];
        snprintf(tag, sizeof tag, "v%d", v);
        ev.ctx.tag = tag;
        ev.value = (const unsigned char *)values[v];
        ev.value_len = strlen(values[v]);
        if (vks_audit_emit(&ev, NULL, NULL) == VKS_OK)
            sent[v]++;
        if (i % 500 == 499)
            vks_audit_flush(); /* stay under the 1024-slot queue: nothing may be dropped */
    }
    vks_audit_shutdown();
    cr_assert_eq(sent[0] + sent[1] + sent[2], 2500);
    char **lines;
    size_t n = read_lines(file, &lines);
    int seen[3] = { 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        if (!strstr(lines[i], "\"type\":\"secret.lookup\""))
            continue;
        struct json_object *o = json_tokener_parse(lines[i]);
        cr_assert_not_null(o);
        const char *tag = jstr(o, "ctx", "tag");
        cr_assert_not_null(tag);
        int v = tag[1] - '0';
        cr_assert(v >= 0 && v < 3);
        cr_assert_str_eq(jstr(o, "fp", NULL), want[v], "line %zu: fingerprint of value %d", i, v);
        seen[v]++;
        json_object_put(o);
    }
    for (int v = 0; v < 3; v++) {
        cr_assert_eq(seen[v], sent[v], "value %d: %d lines for %d lookups", v, seen[v], sent[v]);
        cr_assert_not(file_contains(file, values[v], strlen(values[v])));
    }
    free_lines(lines, n);
    cr_assert_eq(verify1(file, NULL), 0);
}

/* ---- deadlines: a stalled sink never holds a lookup past timeout_ms ------------------------- */

#define DEADLINE_MS 150

/* A pipe of one page that the test does not read (yet). */
static void small_pipe(int p[2])
{
    cr_assert_eq(pipe(p), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
}

struct drain {
    int fd;
    char *buf;
    size_t len;
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    FILE *m = open_memstream(&d->buf, &d->len);
    char b[65536];
    ssize_t k;
    while ((k = read(d->fd, b, sizeof b)) > 0)
        fwrite(b, 1, (size_t)k, m);
    fclose(m);
    return NULL;
}

/* Writes what was drained into `name` and returns the number of audit.dropped `unrecorded`. */
static uint64_t save_and_count_unrecorded(const struct drain *d, const char *name)
{
    const char *file = path_in(name);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fwrite(d->buf, 1, d->len, f);
    fclose(f);
    char **lines;
    size_t n = read_lines(file, &lines);
    uint64_t unrecorded = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strstr(lines[i], "\"type\":\"audit.dropped\""))
            continue;
        struct json_object *o = parse(lines[i]);
        unrecorded += (uint64_t)jint(o, "unrecorded");
        json_object_put(o);
    }
    free_lines(lines, n);
    return unrecorded;
}

enum stall_kind { STALL_STDERR, STALL_FIFO, STALL_SYSLOG };

struct stall {
    enum stall_kind kind;
    int rfd;           /* the read end the test drains later (pipe / FIFO), or the dgram socket */
    int saved_stderr;
};

static void stall_configure(struct stall *st, enum stall_kind kind, enum vks_audit_mode mode,
                            enum vks_audit_on_failure pol)
{
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.mode = mode;
    cfg.on_failure = pol;
    cfg.timeout_ms = DEADLINE_MS;
    cfg.reopen_check_ms = 0;
    st->kind = kind;
    st->saved_stderr = -1;
    if (kind == STALL_STDERR) {
        int p[2];
        small_pipe(p);
        st->saved_stderr = dup(2);
        dup2(p[1], 2);
        close(p[1]);
        st->rfd = p[0];
        cfg.stderr_sink = true;
    } else if (kind == STALL_FIFO) {
        const char *fifo = path_in("stall.fifo");
        cr_assert_eq(mkfifo(fifo, 0600), 0);
        st->rfd = open(fifo, O_RDONLY | O_NONBLOCK);
        cr_assert_geq(st->rfd, 0);
        fcntl(st->rfd, F_SETFL, fcntl(st->rfd, F_GETFL) & ~O_NONBLOCK);
        cfg.file = fifo;
    } else {
        const char *sock = path_in("stall.sock");
        st->rfd = socket(AF_UNIX, SOCK_DGRAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
        cr_assert_eq(bind(st->rfd, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
        cfg.syslog = true;
        cfg.syslog_socket = sock;
    }
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
}

static void stall_restore(struct stall *st)
{
    if (st->saved_stderr >= 0) {
        dup2(st->saved_stderr, 2);
        close(st->saved_stderr);
        st->saved_stderr = -1;
    }
}

/* syslog: receives the datagrams (without their RFC 3164 header) as lines into d->buf. */
static void syslog_drain(int fd, struct drain *d)
{
    FILE *m = open_memstream(&d->buf, &d->len);
    char b[70000];
    ssize_t k;
    while ((k = recv(fd, b, sizeof b - 1, MSG_DONTWAIT)) > 0) {
        b[k] = '\0';
        char *j = strstr(b, "]: {");
        if (j != NULL)
            fprintf(m, "%s\n", j + 3);
    }
    fclose(m);
}

/*
 * The sink stalls (nobody reads): every emit returns within the deadline (the first one after
 * waiting for it, the next ones at once), with the policy's result; once the reader reads again,
 * events are recorded and the next line reports how many were not. The copy verifies.
 */
static void stalled_sink_case(enum stall_kind kind, enum vks_audit_on_failure pol)
{
    struct stall st;
    stall_configure(&st, kind, VKS_AUDIT_SYNC, pol);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    int ok = 0, refused = 0;
    double t0 = mono_s();
    struct vks_err err;
    vks_err_clear(&err);
    char msg[VKS_ERR_MSG_MAX] = "";
    for (int i = 0; i < 400; i++) {
        vks_status s = vks_audit_emit(&ev, NULL, &err);
        if (s == VKS_OK) {
            ok++;
        } else {
            cr_assert_eq(s, VKS_E_AUDIT_UNAVAILABLE);
            refused++;
            snprintf(msg, sizeof msg, "%s", err.msg);
        }
    }
    double took = mono_s() - t0;
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_geq(s.timeouts, 1, "the stall was met by the deadline");
    cr_assert_gt(s.failures, 0, "events were lost and counted");
    /* 400 lookups against a stalled sink: one deadline each would take 60 s; a stalled sink is
       not waited for again, so this is a handful of deadlines at most (generous bound) */
    cr_assert_lt(took, 30.0, "took %.1f s", took);
    if (pol == VKS_AUDIT_DENY) {
        cr_assert_eq(refused, (int)s.failures, "deny: every lost event refused its lookup");
        cr_assert_gt(ok, 0, "the first events fit the pipe");
        cr_assert(strstr(msg, "stalled") != NULL && strstr(msg, "deny") != NULL, "%s", msg);
    } else {
        cr_assert_eq(ok, 400, "allow: every lookup served");
    }
    /* the reader reads again: recorded again, and the gap is reported in the log */
    struct drain d = { st.rfd, NULL, 0 };
    pthread_t t;
    if (kind != STALL_SYSLOG)
        pthread_create(&t, NULL, drain_main, &d);
    else {
        char junk[70000];
        while (recv(st.rfd, junk, sizeof junk, MSG_DONTWAIT) > 0) /* room again */
            ;
    }
    usleep(50000);
    uint64_t lost = s.failures;
    int later_ok = 0;
    for (int i = 0; i < 5; i++)
        if (vks_audit_emit(&ev, NULL, NULL) == VKS_OK)
            later_ok++;
    cr_assert_eq(later_ok, 5, "recorded again once the reader reads");
    vks_audit_get_stats(&s);
    cr_assert_eq(s.failures, lost, "nothing lost after the sink recovered");
    if (kind == STALL_SYSLOG) {
        syslog_drain(st.rfd, &d);
        vks_audit_shutdown();
    } else {
        vks_audit_shutdown(); /* closes the write end (stderr: our copy; then restore fd 2) */
        stall_restore(&st);
        pthread_join(t, NULL);
    }
    stall_restore(&st);
    close(st.rfd);
    char name[64];
    snprintf(name, sizeof name, "stall-%d-%d.jsonl", (int)kind, (int)pol);
    uint64_t reported = save_and_count_unrecorded(&d, name);
    if (kind != STALL_SYSLOG) {
        /* syslog drops what was queued before the drain: the copy starts mid-chain */
        cr_assert_eq(reported, lost, "the log proves %llu lost events (reported %llu)",
                     (unsigned long long)lost, (unsigned long long)reported);
        cr_assert_eq(verify1(path_in(name), NULL), 0, "the chain verifies across the gap");
    } else {
        cr_assert_eq(reported, lost, "the next line reports the %llu lost events (%llu)",
                     (unsigned long long)lost, (unsigned long long)reported);
    }
    free(d.buf);
}

Test(audit, stalled_stderr_pipe_deny_refuses_within_the_deadline)
{
    stalled_sink_case(STALL_STDERR, VKS_AUDIT_DENY);
}

Test(audit, stalled_stderr_pipe_allow_serves_counts_and_reports)
{
    stalled_sink_case(STALL_STDERR, VKS_AUDIT_ALLOW);
}

Test(audit, stalled_fifo_file_sink_deny_refuses_within_the_deadline)
{
    stalled_sink_case(STALL_FIFO, VKS_AUDIT_DENY);
}

Test(audit, stalled_fifo_file_sink_allow_serves_counts_and_reports)
{
    stalled_sink_case(STALL_FIFO, VKS_AUDIT_ALLOW);
}

Test(audit, stalled_syslog_socket_deny_refuses_within_the_deadline)
{
    stalled_sink_case(STALL_SYSLOG, VKS_AUDIT_DENY);
}

Test(audit, stalled_syslog_socket_allow_serves_counts_and_reports)
{
    stalled_sink_case(STALL_SYSLOG, VKS_AUDIT_ALLOW);
}

Test(audit, a_fifo_without_reader_is_refused_not_waited_for)
{
    const char *fifo = path_in("noreader.fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = fifo;
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_E_CONFIG);
    cr_assert(strstr(err.msg, "noreader.fifo") != NULL, "%s", err.msg);
}

struct emitter {
    int ok, refused, other;
};

static void *emit_many(void *arg)
{
    struct emitter *e = arg;
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < 50; i++) {
        vks_status s = vks_audit_emit(&ev, NULL, NULL);
        if (s == VKS_OK)
            e->ok++;
        else if (s == VKS_E_AUDIT_UNAVAILABLE)
            e->refused++;
        else
            e->other++;
    }
    return NULL;
}

/* Threads queueing for the audit lock behind a writer stuck on the stalled sink wait at most the
   deadline too, and every lookup ends with the policy's answer. */
Test(audit, threads_behind_a_stalled_sink_all_finish)
{
    for (int pol = VKS_AUDIT_DENY; pol <= VKS_AUDIT_ALLOW; pol++) {
        struct stall st;
        stall_configure(&st, STALL_STDERR, VKS_AUDIT_SYNC, (enum vks_audit_on_failure)pol);
        pthread_t t[6];
        struct emitter e[6];
        memset(e, 0, sizeof e);
        for (int i = 0; i < 6; i++)
            pthread_create(&t[i], NULL, emit_many, &e[i]);
        int ok = 0, refused = 0;
        for (int i = 0; i < 6; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(e[i].other, 0);
            ok += e[i].ok;
            refused += e[i].refused;
        }
        cr_assert_eq(ok + refused, 300);
        if (pol == VKS_AUDIT_ALLOW)
            cr_assert_eq(ok, 300);
        else
            cr_assert_gt(refused, 0);
        struct vks_audit_stats s;
        vks_audit_get_stats(&s);
        cr_assert_geq(s.timeouts, 1);
        vks_audit_shutdown();
        stall_restore(&st);
        close(st.rfd);
        dir[0] = '\0';
        setup_dir();
    }
}

/* async: the caller never writes, so a stalled sink never holds it; the writer meets the
   deadline, so flush and shutdown end too, and nothing is lost silently. */
Test(audit, async_with_a_stalled_sink_never_blocks_the_caller)
{
    struct stall st;
    stall_configure(&st, STALL_STDERR, VKS_AUDIT_ASYNC, VKS_AUDIT_ALLOW);
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
    vks_audit_flush();
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    cr_assert_geq(s.timeouts, 1);
    cr_assert_gt(s.failures + s.dropped, 0, "lost events are counted");
    vks_audit_shutdown();
    stall_restore(&st);
    /* what reached the pipe: the lookups written; with the failures and drops, every one */
    struct drain d = { st.rfd, NULL, 0 };
    pthread_t t;
    pthread_create(&t, NULL, drain_main, &d);
    pthread_join(t, NULL);
    close(st.rfd);
    size_t lookups = 0;
    for (char *p = d.buf; p != NULL && (p = strstr(p, "\"type\":\"secret.lookup\"")) != NULL; p++)
        lookups++;
    free(d.buf);
    cr_log_info("lookups %zu failures %llu dropped %llu", lookups,
                (unsigned long long)s.failures, (unsigned long long)s.dropped);
    cr_assert_eq(lookups + s.failures + s.dropped, 5000,
                 "every event written, lost or dropped: %zu + %llu + %llu", lookups,
                 (unsigned long long)s.failures, (unsigned long long)s.dropped);
}

/* ---- legitimate reconfiguration, restarts and rotation verify clean ------------------------- */

static void emit_n(int n)
{
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < n; i++)
        cr_assert_eq(vks_audit_emit(&ev, NULL, NULL), VKS_OK);
}

static void configure_sinks(const char *file, bool with_stderr, bool callback)
{
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.stderr_sink = with_stderr;
    cfg.callback = callback;
    cfg.reopen_check_ms = 0;
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_audit_configure(&cfg, &err), VKS_OK, "%s", err.msg);
}

/* stderr to /dev/null for the test (a second sink that keeps the chain going) */
static int quiet_stderr(void)
{
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    close(devnull);
    return saved;
}

static void restore_stderr(int saved)
{
    dup2(saved, 2);
    close(saved);
}

/* the line of `file` with "type":"audit.open" and reason `reason` (the first one), parsed */
static struct json_object *find_open(const char *file, const char *reason)
{
    char **lines;
    size_t n = read_lines(file, &lines);
    struct json_object *found = NULL;
    for (size_t i = 0; i < n && found == NULL; i++) {
        if (!strstr(lines[i], "\"type\":\"audit.open\""))
            continue;
        struct json_object *o = parse(lines[i]);
        if (strcmp(jstr(o, "reason", NULL), reason) == 0)
            found = o;
        else
            json_object_put(o);
    }
    free_lines(lines, n);
    return found;
}

Test(audit, file_sink_configured_off_and_on_verifies_clean)
{
    /* the other sink during the off period: stderr; the callback; none at all */
    for (int other = 0; other < 3; other++) {
        char name[64];
        snprintf(name, sizeof name, "offon-%d.jsonl", other);
        const char *file = path_in(name);
        int saved = quiet_stderr();
        bool se = other == 0, cb = other == 1;
        configure_sinks(file, se, cb);
        if (cb)
            vks_audit_capture_begin();
        emit_n(3);
        configure_sinks(NULL, se, cb); /* file off: the chain goes on in the other sink */
        emit_n(4);
        configure_sinks(file, se, cb); /* and on again */
        emit_n(2);
        if (cb)
            free(vks_audit_capture_end());
        vks_audit_shutdown();
        restore_stderr(saved);
        long long bad;
        cr_assert_eq(verify1(file, &bad), 0, "case %d: an untouched file verifies (bad %lld)",
                     other, bad);
        if (other != 2) {
            struct json_object *o = find_open(file, "configure");
            cr_assert_not_null(o);
            cr_assert_eq(jint(o, "missed_from"), 4, "case %d: the gap is named", other);
            cr_assert_eq(jint(o, "missed_to"), jint(o, "seq") - 1);
            json_object_put(o);
        }
        /* deleting the line before the announced gap is still caught */
        char **lines;
        size_t n = read_lines(file, &lines);
        free(lines[3]);
        memmove(&lines[3], &lines[4], (n - 4) * sizeof *lines);
        write_lines(file, lines, n - 1);
        free_lines(lines, n - 1);
        cr_assert_eq(verify1(file, NULL), 1, "case %d: a deletion next to the gap", other);
    }
}

Test(audit, file_sink_moved_elsewhere_and_back_verifies_clean)
{
    const char *a = path_in("here.jsonl");
    char b[600];
    snprintf(b, sizeof b, "%s", path_in("there.jsonl"));
    configure_sinks(a, false, false);
    emit_n(3);
    configure_sinks(b, false, false);
    emit_n(3);
    configure_sinks(a, false, false);
    emit_n(3);
    configure_sinks(b, false, false);
    emit_n(1);
    vks_audit_shutdown();
    cr_assert_eq(verify1(a, NULL), 0, "the first file verifies");
    cr_assert_eq(verify1(b, NULL), 0, "the second file verifies");
}

Test(audit, a_failing_sink_kept_across_a_reconfiguration_verifies_clean)
{
    const char *file = path_in("keptfail.jsonl");
    int saved = quiet_stderr();
    configure_sinks(file, true, false);
    emit_n(2);
    /* the file fails (its fd swapped for /dev/full) while stderr records */
    int filefd = -1;
    for (int fd = 3; fd < 64; fd++) {
        char l[64], t[512];
        snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(l, t, sizeof t - 1);
        if (k > 0) {
            t[k] = '\0';
            if (strstr(t, "keptfail.jsonl"))
                filefd = fd;
        }
    }
    cr_assert_geq(filefd, 0);
    int keep = dup(filefd);
    int full = open("/dev/full", O_WRONLY);
    dup2(full, filefd);
    emit_n(3);
    dup2(keep, filefd);
    /* reconfigured before the file got its resume marker: the new sink carries the gap */
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.stderr_sink = true;
    cfg.mode = VKS_AUDIT_FSYNC;
    cfg.reopen_check_ms = 0;
    cr_assert_eq(vks_audit_configure(&cfg, NULL), VKS_OK);
    emit_n(2);
    vks_audit_shutdown();
    restore_stderr(saved);
    close(keep);
    close(full);
    cr_assert_eq(verify1(file, NULL), 0);
}

Test(audit, restarts_appending_to_one_file_verify_clean)
{
    const char *file = path_in("restart.jsonl");
    for (int run = 0; run < 3; run++) {
        configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
        emit_n(3);
        vks_audit_shutdown(); /* a clean exit closes its chain */
    }
    /* and a process killed without closing its chain */
    pid_t pid = fork();
    if (pid == 0) {
        configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
        emit_n(3);
        _exit(0); /* no atexit handlers, no audit.close */
    }
    int status;
    waitpid(pid, &status, 0);
    configure_file(file, VKS_AUDIT_SYNC, VKS_AUDIT_DENY);
    emit_n(2);
    vks_audit_shutdown();
    cr_assert_eq(verify1(file, NULL), 0);
}

static void emit_for(int n, int sleep_us)
{
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < n; i++) {
        if (vks_audit_emit(&ev, NULL, NULL) != VKS_OK)
            _exit(3);
        usleep((useconds_t)sleep_us);
    }
}

/* logrotate's copytruncate: copy the file, then truncate it (lines written in between are lost) */
static void copytruncate(const char *file, const char *to)
{
    int in = open(file, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(in >= 0 && out >= 0);
    char buf[4096];
    ssize_t k;
    while ((k = read(in, buf, sizeof buf)) > 0) {
        cr_assert_eq(write(out, buf, (size_t)k), k);
        usleep(500); /* a slow copy: writers keep appending meanwhile */
    }
    close(in);
    close(out);
    usleep(20000); /* lines written now are in neither file: the loss logrotate documents */
    cr_assert_eq(truncate(file, 0), 0);
}

/* Several processes append to one file while it is rotated by rename and by copytruncate. */
static void rotation_case(bool rename_rotation, long check_ms)
{
    char file[600], old[640];
    snprintf(file, sizeof file, "%s", path_in(rename_rotation ? "rot-rename.jsonl"
                                                              : "rot-copy.jsonl"));
    snprintf(old, sizeof old, "%s.1", file);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            struct vks_audit_config cfg;
            vks_audit_config_init(&cfg);
            cfg.file = file;
            cfg.reopen_check_ms = check_ms;
            if (vks_audit_configure(&cfg, NULL) != VKS_OK)
                _exit(2);
            emit_for(400, 1000);
            vks_audit_shutdown();
            _exit(0);
        }
    }
    usleep(60000);
    if (rename_rotation)
        cr_assert_eq(rename(file, old), 0);
    else
        copytruncate(file, old);
    for (int k = 0; k < 3; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d", k);
    }
    const char *both[2] = { old, file };
    long long bad;
    cr_assert_eq(verify(both, 2, NULL, &bad, true), 0, "rotated + current verify (bad %lld)",
                 bad);
    cr_assert_eq(verify1(file, &bad), 0, "the current file alone verifies (bad %lld)", bad);
    cr_assert_eq(verify1(old, &bad), 0, "the rotated file alone verifies (bad %lld)", bad);
    /* tampering is still caught: a line deleted from the middle of the current file */
    char **lines;
    size_t n = read_lines(file, &lines);
    cr_assert_gt(n, 20);
    free(lines[n / 2]);
    memmove(&lines[n / 2], &lines[n / 2 + 1], (n - n / 2 - 1) * sizeof *lines);
    write_lines(file, lines, n - 1);
    free_lines(lines, n - 1);
    cr_assert_eq(verify(both, 2, NULL, NULL, true), 1, "a deleted line is detected");
}

Test(audit, several_processes_and_rename_rotation_verify_clean)
{
    rotation_case(true, 0);
}

Test(audit, several_processes_and_copytruncate_verify_clean)
{
    rotation_case(false, 0);
}

Test(audit, copytruncate_noticed_late_verifies_clean)
{
    /* lines written after the truncate and before the periodic check precede the marker */
    rotation_case(false, 40);
}

Test(audit, copytruncate_head_deleted_is_still_detected)
{
    const char *file = path_in("ct-head.jsonl");
    struct vks_audit_config cfg;
    vks_audit_config_init(&cfg);
    cfg.file = file;
    cfg.reopen_check_ms = 0;
    cr_assert_eq(vks_audit_configure(&cfg, NULL), VKS_OK);
    emit_n(3);
    cr_assert_eq(truncate(file, 0), 0);
    emit_n(4);
    vks_audit_shutdown();
    cr_assert_eq(verify1(file, NULL), 0);
    /* without its truncated marker the file starts mid-chain: detected */
    char **lines;
    size_t n = read_lines(file, &lines);
    struct json_object *o = parse(lines[0]);
    cr_assert_str_eq(jstr(o, "reason", NULL), "truncated");
    json_object_put(o);
    write_lines(file, lines + 1, n - 1);
    free_lines(lines, n);
    long long bad;
    cr_assert_eq(verify1(file, &bad), 1);
}

/* Unaudited lookups are counted per thread stripe: from more threads than stripes at once, every
 * one is counted. */
static void *emit_unaudited(void *arg)
{
    struct vks_audit_event ev = lookup_event(VKS_AUDIT_HIT, VKS_OK);
    for (int i = 0; i < 500; i++)
        if (vks_audit_emit(&ev, NULL, NULL) != VKS_OK)
            return (void *)1;
    return arg;
}

Test(audit, unaudited_lookups_from_many_threads_are_all_counted)
{
    unsetenv("VKS_AUDIT_FILE");
    struct vks_audit_stats s0, s;
    vks_audit_get_stats(&s0);
    cr_assert_not(s0.enabled);
    pthread_t t[20];
    for (int i = 0; i < 20; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, emit_unaudited, NULL), 0);
    for (int i = 0; i < 20; i++) {
        void *r;
        pthread_join(t[i], &r);
        cr_assert_null(r);
    }
    vks_audit_get_stats(&s);
    cr_assert_eq(s.unaudited - s0.unaudited, 20 * 500);
}
