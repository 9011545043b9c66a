/*
 * vks_smtp (the SMTP AUTH probe) against the real test relay (tests/lib/smtprelay.py: aiosmtpd,
 * STARTTLS with its own CA, AUTH PLAIN, a JSON-lines log of every AUTH it sees) and against small
 * hostile servers run in a thread of the test (oversized, cut, silent, dripping, garbage replies).
 * Every result's transcript, reply and error, and the relay's log, are scanned for the password.
 *
 * The passwords here are listed in tests/test-secrets.d/smtp.txt.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vks_smtp.h"

#define RIGHT "smtp-probe-RIGHT-71c0e94b"
#define WRONG "smtp-probe-WRONG-2d6f8a13"

/* ------------------------------------------------------------------ the relay (a child process) */

struct relay {
    pid_t pid;
    int port;
    char cafile[600];
    char dir[512];
    char log[600];
};

static void relay_start(struct relay *r, bool tls)
{
    memset(r, 0, sizeof *r);
    const char *w = getenv("VKS_SUITE_WORK");
    snprintf(r->dir, sizeof r->dir, "%s/smtp-XXXXXX", w && *w ? w : "/tmp");
    cr_assert_not_null(mkdtemp(r->dir));
    char creds[600], out[600], errf[600], script[1024];
    snprintf(creds, sizeof creds, "%s/creds.txt", r->dir);
    snprintf(out, sizeof out, "%s/relay.out", r->dir);
    snprintf(errf, sizeof errf, "%s/relay.err", r->dir);
    snprintf(r->log, sizeof r->log, "%s/auth.jsonl", r->dir);
    const char *root = getenv("ROOT");
    snprintf(script, sizeof script, "%s/tests/lib/smtprelay.py", root && *root ? root : ".");
    FILE *f = fopen(creds, "w");
    cr_assert_not_null(f);
    fprintf(f, "daniel:%s\n", RIGHT);
    fclose(f);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0)
            _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl("/usr/bin/python3", "python3", script, "--creds", creds, "--dir", r->dir, "--log", r->log,
              tls ? NULL : "--no-tls", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 6000 && (r->port == 0 || r->cafile[0] == '\0'); i++) {
        FILE *g = fopen(out, "r");
        char line[700];
        while (g && fgets(line, sizeof line, g)) {
            line[strcspn(line, "\n")] = '\0';
            if (strncmp(line, "SMTP_PORT=", 10) == 0)
                r->port = atoi(line + 10);
            else if (strncmp(line, "SMTP_CAFILE=", 12) == 0)
                snprintf(r->cafile, sizeof r->cafile, "%.590s", line + 12);
        }
        if (g)
            fclose(g);
        cr_assert(waitpid(pid, NULL, WNOHANG) == 0, "the relay exited early (see %s)", errf);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    cr_assert(r->port > 0 && r->cafile[0], "the relay did not start within 60 s (see %s)", errf);
}

static void relay_stop(struct relay *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

/* The relay's log as one string (empty when no AUTH was seen). */
static char *relay_log(const struct relay *r)
{
    static char buf[65536];
    buf[0] = '\0';
    FILE *f = fopen(r->log, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* ------------------------------------------------------------------ helpers */

static void no_secret(const struct vks_smtp_result *res, const char *extra)
{
    const char *pw[] = { RIGHT, WRONG };
    for (int i = 0; i < 2; i++) {
        cr_assert_null(strstr(res->reply, pw[i]), "password in the reply");
        cr_assert_null(strstr(res->error, pw[i]), "password in the error");
        if (res->transcript)
            cr_assert_null(strstr(res->transcript, pw[i]), "password in the transcript");
        if (extra)
            cr_assert_null(strstr(extra, pw[i]), "password in the relay log");
    }
}

static vks_status probe(struct vks_smtp_opts *o, const char *password, struct vks_smtp_result *res,
                        struct vks_err *err)
{
    vks_secret s = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_dup(password, strlen(password), &s, err), VKS_OK);
    vks_status st = vks_smtp_check_auth(o, &s, res, err);
    vks_secret_free(&s);
    no_secret(res, NULL);
    cr_assert_null(strstr(err->msg, RIGHT));
    return st;
}

static struct vks_smtp_opts relay_opts(const struct relay *r, enum vks_smtp_tls tls)
{
    return (struct vks_smtp_opts){ .host = "127.0.0.1", .port = r->port, .ehlo_name = "probe.test",
                                   .tls = tls, .username = "daniel", .username_len = 6,
                                   .cafile = r->cafile, .timeout_ms = 20000 };
}

TestSuite(smtp, .timeout = 120);

/* ------------------------------------------------------------------ against the real relay */

Test(smtp, right_password_235_over_verified_starttls)
{
    struct relay r;
    relay_start(&r, true);
    struct vks_smtp_opts o = relay_opts(&r, VKS_SMTP_TLS_REQUIRED);
    struct vks_smtp_result res;
    struct vks_err err;
    vks_status st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_OK, "%s", res.error);
    cr_assert(res.ok && res.code == 235 && res.tls && res.tls_verified && res.auth_attempted);
    cr_assert_str_eq(res.stage, "auth");
    cr_assert_str_eq(res.peer, "127.0.0.1");
    cr_assert_not_null(strstr(res.transcript, "C: AUTH PLAIN <redacted>"));
    cr_assert_not_null(strstr(res.transcript, "C: STARTTLS"));
    const char *log = relay_log(&r);
    cr_assert_not_null(strstr(log, "\"ok\": true"), "%s", log);
    cr_assert_not_null(strstr(log, "\"ehlo\": \"probe.test\""), "%s", log);
    cr_assert_not_null(strstr(log, "\"ts\": "), "%s", log);
    no_secret(&res, log);
    vks_smtp_result_free(&res);
    relay_stop(&r);
}

Test(smtp, wrong_password_is_535_and_not_ok)
{
    struct relay r;
    relay_start(&r, true);
    struct vks_smtp_opts o = relay_opts(&r, VKS_SMTP_TLS_OPPORTUNISTIC);
    struct vks_smtp_result res;
    struct vks_err err;
    vks_status st = probe(&o, WRONG, &res, &err);
    cr_assert_eq(st, VKS_OK, "a 535 is an answer: %s", res.error);
    cr_assert(!res.ok && res.code == 535 && res.auth_attempted);
    cr_assert_str_eq(res.stage, "auth");
    cr_assert_not_null(strstr(res.error, "rejected by 127.0.0.1"), "%s", res.error);
    const char *log = relay_log(&r);
    cr_assert_not_null(strstr(log, "\"ok\": false"), "%s", log);
    no_secret(&res, log);
    vks_smtp_result_free(&res);
    relay_stop(&r);
}

struct peer_seen {
    int calls;
    char addr[64];
};

static bool refuse_peer(const struct sockaddr *sa, socklen_t len, void *arg, char *why, size_t whyn)
{
    struct peer_seen *p = arg;
    p->calls++;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, p->addr, sizeof p->addr);
    snprintf(why, whyn, "not in allowed_hosts");
    return false;
}

Test(smtp, peer_ok_refusing_sends_nothing)
{
    struct relay r;
    relay_start(&r, true);
    struct peer_seen seen = { 0 };
    struct vks_smtp_opts o = relay_opts(&r, VKS_SMTP_TLS_REQUIRED);
    o.peer_ok = refuse_peer;
    o.peer_ok_arg = &seen;
    struct vks_smtp_result res;
    struct vks_err err;
    vks_status st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_E_RESTRICTED, "%s", res.error);
    cr_assert(!res.ok && !res.auth_attempted && res.code == 0);
    cr_assert_str_eq(res.stage, "restrict");
    cr_assert_eq(seen.calls, 1);
    cr_assert_str_eq(seen.addr, "127.0.0.1");
    cr_assert_not_null(strstr(res.error, "not in allowed_hosts"), "%s", res.error);
    cr_assert_null(strstr(res.transcript, "C: "), "something was sent: %s", res.transcript);
    cr_assert_str_eq(relay_log(&r), "", "the relay saw an AUTH");
    vks_smtp_result_free(&res);
    relay_stop(&r);
}

Test(smtp, required_without_starttls_offered_is_refused_before_auth)
{
    struct relay r;
    relay_start(&r, false);
    struct vks_smtp_opts o = relay_opts(&r, VKS_SMTP_TLS_REQUIRED);
    struct vks_smtp_result res;
    struct vks_err err;
    vks_status st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_E_TLS, "%s", res.error);
    cr_assert(!res.ok && !res.auth_attempted && !res.tls);
    cr_assert_str_eq(res.stage, "starttls");
    cr_assert_not_null(strstr(res.error, "did not offer STARTTLS"), "%s", res.error);
    /* and Disabled without allow_without_tls: stopped by our own policy */
    o.tls = VKS_SMTP_TLS_DISABLED;
    vks_smtp_result_free(&res);
    st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_E_TLS, "%s", res.error);
    cr_assert_str_eq(res.stage, "policy");
    cr_assert(!res.auth_attempted);
    cr_assert_null(strstr(res.transcript, "C: AUTH"), "%s", res.transcript);
    cr_assert_str_eq(relay_log(&r), "", "the relay saw an AUTH");
    vks_smtp_result_free(&res);
    relay_stop(&r);
}

Test(smtp, untrusted_certificate_is_refused_before_auth)
{
    struct relay r;
    relay_start(&r, true);
    struct vks_smtp_opts o = relay_opts(&r, VKS_SMTP_TLS_REQUIRED);
    o.cafile = NULL; /* the system's CAs do not know the relay's own CA */
    struct vks_smtp_result res;
    struct vks_err err;
    vks_status st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_E_TLS, "%s", res.error);
    cr_assert(res.tls && !res.tls_verified && !res.auth_attempted);
    cr_assert_str_eq(res.stage, "tls");
    cr_assert(res.verify_error[0]);
    /* insecure TLS continues, but the credential still needs allow_invalid_cert */
    o.tls = VKS_SMTP_TLS_OPPORTUNISTIC_INSECURE;
    vks_smtp_result_free(&res);
    st = probe(&o, RIGHT, &res, &err);
    cr_assert_eq(st, VKS_E_TLS, "%s", res.error);
    cr_assert_str_eq(res.stage, "policy");
    cr_assert(!res.auth_attempted);
    cr_assert_str_eq(relay_log(&r), "", "the relay saw an AUTH");
    vks_smtp_result_free(&res);
    relay_stop(&r);
}

/* ------------------------------------------------------------------ hostile servers */

typedef void (*script_fn)(int fd);

struct hostile {
    int lfd, port;
    script_fn script;
    pthread_t th;
    size_t received; /* bytes the client sent before the script ended */
};

static size_t drain(int fd, int ms)
{
    size_t total = 0;
    char b[4096];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, ms) == 1) {
        ssize_t k = recv(fd, b, sizeof b, 0);
        if (k <= 0)
            break;
        total += (size_t)k;
    }
    return total;
}

static bool say(int fd, const char *s)
{
    return send(fd, s, strlen(s), MSG_NOSIGNAL) == (ssize_t)strlen(s);
}

/* Reads one command line from the client (up to 10 s). */
static void hear(int fd)
{
    char c;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, 0) == 1 && c != '\n')
        ;
}

static void *hostile_main(void *arg)
{
    struct hostile *h = arg;
    struct pollfd p = { .fd = h->lfd, .events = POLLIN };
    if (poll(&p, 1, 30000) != 1)
        return NULL;
    int fd = accept(h->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    h->script(fd);
    h->received = drain(fd, 200);
    close(fd);
    return NULL;
}

static void hostile_start(struct hostile *h, script_fn script)
{
    memset(h, 0, sizeof *h);
    h->script = script;
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert(bind(h->lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(h->lfd, 4) == 0);
    socklen_t l = sizeof a;
    getsockname(h->lfd, (struct sockaddr *)&a, &l);
    h->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&h->th, NULL, hostile_main, h), 0);
}

static long last_probe_ms; /* how long the last hostile_run's probe took */

static void hostile_run(script_fn script, int timeout_ms, vks_status want, const char *stage,
                        const char *msg)
{
    struct hostile h;
    hostile_start(&h, script);
    struct vks_smtp_opts o = { .host = "127.0.0.1", .port = h.port, .tls = VKS_SMTP_TLS_REQUIRED,
                               .username = "daniel", .username_len = 6, .timeout_ms = timeout_ms };
    struct vks_smtp_result res;
    struct vks_err err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vks_status st = probe(&o, RIGHT, &res, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    last_probe_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert_eq(st, want, "status %s (%s), want %s", vks_status_code(st), res.error, vks_status_code(want));
    cr_assert_str_eq(res.stage, stage, "%s", res.error);
    cr_assert_not_null(strstr(res.error, msg), "error \"%s\" lacks \"%s\"", res.error, msg);
    cr_assert(!res.ok && !res.auth_attempted);
    cr_assert_str_eq(err.msg, res.error);
    vks_smtp_result_free(&res);
    pthread_join(h.th, NULL);
    close(h.lfd);
}

static void oversized_line(int fd)
{
    static char big[20000];
    memset(big, 'x', sizeof big - 3);
    memcpy(big, "220 ", 4);
    memcpy(big + sizeof big - 3, "\r\n", 3);
    say(fd, big);
}

static void oversized_after_newline(int fd)
{
    static char big[6000];
    memset(big, 'y', sizeof big - 3);
    memcpy(big, "220 ", 4);
    memcpy(big + sizeof big - 3, "\r\n", 3); /* fits the read buffer, not a line */
    say(fd, big);
}

static void cut_mid_line(int fd)
{
    say(fd, "220 hostile ESMTP\r\n");
    hear(fd);
    say(fd, "250-hostile\r\n250 STARTT"); /* then close */
}

static void never_answers(int fd)
{
    drain(fd, 3000);
}

static void drips(int fd)
{
    /* one byte every 50 ms, never a whole line: each read returns, the session deadline ends it */
    for (int i = 0; i < 80; i++) {
        if (!say(fd, i == 0 ? "2" : i == 1 ? "2" : i == 2 ? "0" : "-"))
            return; /* the client gave up */
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static void garbage_code(int fd)
{
    say(fd, "HELLO I AM NOT SMTP\r\n");
}

static void mixed_codes(int fd)
{
    say(fd, "220-first\r\n250 second\r\n");
}

static void starttls_injection(int fd)
{
    say(fd, "220 hostile ESMTP\r\n");
    hear(fd);
    say(fd, "250-hostile\r\n250 STARTTLS\r\n");
    hear(fd);
    say(fd, "220 go ahead\r\n250 injected\r\n");
}

static void garbage_instead_of_tls(int fd)
{
    say(fd, "220 hostile ESMTP\r\n");
    hear(fd);
    say(fd, "250-hostile\r\n250 STARTTLS\r\n");
    hear(fd);
    say(fd, "220 go ahead\r\n");
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    say(fd, "this is not a TLS record at all, just text\r\n");
}

Test(smtp, hostile_oversized_reply_line)
{
    hostile_run(oversized_line, 10000, VKS_E_BAD_RESPONSE, "greeting", "longer than 4096 bytes");
    hostile_run(oversized_after_newline, 10000, VKS_E_BAD_RESPONSE, "greeting", "longer than 4096 bytes");
}

Test(smtp, hostile_reply_cut_mid_line_then_close)
{
    hostile_run(cut_mid_line, 10000, VKS_E_BAD_RESPONSE, "ehlo", "in the middle of a reply line");
}

Test(smtp, hostile_server_that_never_answers_meets_the_deadline)
{
    hostile_run(never_answers, 500, VKS_E_TIMEOUT, "greeting", "deadline of 500 ms");
}

Test(smtp, hostile_dripping_server_meets_the_one_session_deadline)
{
    hostile_run(drips, 600, VKS_E_TIMEOUT, "greeting", "deadline of 600 ms");
    /* not a speed test: the drip lasts 4 s, so a per-read timeout would have waited it out */
    cr_assert_lt(last_probe_ms, 3500, "the deadline did not bound the whole session (%ld ms)", last_probe_ms);
}

Test(smtp, hostile_garbage_instead_of_a_code)
{
    hostile_run(garbage_code, 10000, VKS_E_BAD_RESPONSE, "greeting", "malformed reply line");
    hostile_run(mixed_codes, 10000, VKS_E_BAD_RESPONSE, "greeting", "malformed reply line");
}

Test(smtp, hostile_starttls_injection_and_non_tls_handshake)
{
    hostile_run(starttls_injection, 10000, VKS_E_BAD_RESPONSE, "starttls", "command injection");
    hostile_run(garbage_instead_of_tls, 10000, VKS_E_TLS, "tls", "TLS handshake with 127.0.0.1");
}

Test(smtp, closed_port_is_unavailable_at_connect)
{
    struct hostile h;
    hostile_start(&h, never_answers);
    int port = h.port;
    close(h.lfd); /* nothing listens there any more */
    pthread_cancel(h.th);
    pthread_join(h.th, NULL);
    struct vks_smtp_opts o = { .host = "127.0.0.1", .port = port, .username = "daniel",
                               .username_len = 6, .timeout_ms = 5000 };
    struct vks_smtp_result res;
    struct vks_err err;
    cr_assert_eq(probe(&o, RIGHT, &res, &err), VKS_E_UNAVAILABLE, "%s", res.error);
    cr_assert_str_eq(res.stage, "connect");
    vks_smtp_result_free(&res);
}

/* ------------------------------------------------------------------ options */

Test(smtp, bad_options_name_the_field_and_connect_nowhere)
{
    struct vks_smtp_opts good = { .host = "127.0.0.1", .port = 25, .username = "daniel",
                                  .username_len = 6, .timeout_ms = 1000 };
    struct { struct vks_smtp_opts o; const char *field; } cases[] = {
        { good, "port" }, { good, "ehlo_name" }, { good, "host" }, { good, "username" }, { good, "tls" },
    };
    cases[0].o.port = 0;
    cases[1].o.ehlo_name = "evil\r\nMAIL FROM:<x>";
    cases[2].o.host = "";
    cases[3].o.username = "dan\0iel";
    cases[3].o.username_len = 7;
    cases[4].o.tls = (enum vks_smtp_tls)42;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vks_smtp_result res;
        struct vks_err err;
        cr_assert_eq(probe(&cases[i].o, RIGHT, &res, &err), VKS_E_INVALID_INPUT, "case %zu", i);
        cr_assert_str_eq(res.stage, "options");
        cr_assert_not_null(strstr(res.error, cases[i].field), "case %zu: %s", i, res.error);
        cr_assert_null(res.transcript);
    }
    vks_secret s = VKS_SECRET_EMPTY;
    struct vks_err err;
    cr_assert_eq(vks_secret_dup("pass\0word-NUL", 13, &s, &err), VKS_OK);
    struct vks_smtp_result res;
    cr_assert_eq(vks_smtp_check_auth(&good, &s, &res, &err), VKS_E_INVALID_INPUT);
    cr_assert_not_null(strstr(res.error, "password contains a NUL"));
    vks_secret_free(&s);
    cr_assert_eq(vks_smtp_check_auth(&good, NULL, &res, &err), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_smtp_check_auth(NULL, NULL, &res, &err), VKS_E_INVALID_INPUT);
}
