/* vks_hook (rotation's set hook runner) and vks_cred_parse_relay: the command gets the secret
 * and one newline on stdin, the three variables and no VAULT_* / VKS_* in its environment, its
 * stdout goes to stderr; exit status and signals are reported; a hang is killed with its whole
 * process group at the deadline; a hook that never reads stdin does not kill the caller (SIGPIPE);
 * bad input is refused naming the field. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vks_cred.h"
#include "vks_hook.h"

static char dir[] = "/tmp/vks-hook-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static vks_secret secret(const char *s)
{
    vks_secret v = VKS_SECRET_EMPTY;
    struct vks_err e;
    cr_assert_eq(vks_secret_dup(s, strlen(s), &v, &e), VKS_OK);
    return v;
}

static char *slurp(const char *name)
{
    static char buf[4096];
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

Test(hook, stdin_env_and_exit, .init = setup)
{
    setenv("VAULT_TOKEN", "hook-test-token-not-for-hooks", 1);
    setenv("VKS_ENCRYPTION_KEY", "hook-test-key-not-for-hooks", 1);
    vks_secret pw = secret("Hook-Unit-Secret-0123456789");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd %s && cat > in && env > env.txt && echo to-stdout", dir);
    const char *env[] = { "VKS_CRED_NAME=example.com", "VKS_CRED_USERNAME=u1", "VKS_CRED_ROTATION_ID=r-1" };
    struct vks_err e;
    int code = 99;
    cr_assert_eq(vks_hook_run(cmd, &pw, env, 3, 5000, &code, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(code, 0);
    cr_assert_str_eq(slurp("in"), "Hook-Unit-Secret-0123456789\n", "the secret and one newline on stdin");
    char *envs = slurp("env.txt");
    cr_assert(strstr(envs, "VKS_CRED_NAME=example.com\n") && strstr(envs, "VKS_CRED_USERNAME=u1\n") &&
              strstr(envs, "VKS_CRED_ROTATION_ID=r-1\n"), "the three variables");
    cr_assert(!strstr(envs, "VAULT_TOKEN") && !strstr(envs, "VKS_ENCRYPTION_KEY"), "no token, no key");
    cr_assert(!strstr(envs, "Hook-Unit-Secret"), "the secret is not in the environment");
    unsetenv("VAULT_TOKEN");
    unsetenv("VKS_ENCRYPTION_KEY");
    cr_assert_eq(vks_hook_run("cat >/dev/null; exit 7", &pw, NULL, 0, 5000, &code, &e), VKS_E_REJECTED);
    cr_assert(code == 7 && strstr(e.msg, "status 7") && !strstr(e.msg, "Hook-Unit"), "%d %s", code, e.msg);
    cr_assert_eq(vks_hook_run("kill -TERM $$", &pw, NULL, 0, 5000, &code, &e), VKS_E_REJECTED);
    cr_assert(code == 128 + SIGTERM && strstr(e.msg, "signal 15"), "%d %s", code, e.msg);
    vks_secret_free(&pw);
}

Test(hook, deadline_kills_the_group, .init = setup)
{
    vks_secret pw = secret("Hook-Unit-Secret-0123456789");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "echo $$ > %s/pgid; sleep 30 & sleep 30", dir);
    struct vks_err e;
    int code = 0;
    double t0 = now_s();
    cr_assert_eq(vks_hook_run(cmd, &pw, NULL, 0, 300, &code, &e), VKS_E_TIMEOUT);
    double took = now_s() - t0;
    cr_assert(took < 10, "returned at the deadline, not after the hook (%.1f s)", took);
    cr_assert(code == -1 && strstr(e.msg, "300 ms"), "%d %s", code, e.msg);
    pid_t pg = (pid_t)atoi(slurp("pgid"));
    cr_assert(pg > 1);
    for (int i = 0; i < 100 && kill(-pg, 0) == 0; i++) /* the orphaned sleep may linger as a zombie */
        usleep(20000);
    FILE *ps = popen("ps -e -o pgid=,stat= 2>/dev/null", "r");
    char line[128];
    int alive = 0;
    while (ps && fgets(line, sizeof line, ps)) {
        int g = 0;
        char st[16] = "";
        if (sscanf(line, "%d %15s", &g, st) == 2 && g == pg && st[0] != 'Z')
            alive++;
    }
    if (ps)
        pclose(ps);
    cr_assert_eq(alive, 0, "no live process left in the hook's group");
    vks_secret_free(&pw);
}

Test(hook, no_reader_no_sigpipe)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test process */
    vks_secret pw = secret("Hook-Unit-Secret-0123456789");
    struct vks_err e;
    int code = -5;
    for (int i = 0; i < 20; i++) /* the hook may exit before or after the write */
        cr_assert_eq(vks_hook_run("exec 0<&-; exit 0", &pw, NULL, 0, 5000, &code, &e), VKS_OK, "%s", e.msg);
    sigset_t pend;
    sigpending(&pend);
    cr_assert(!sigismember(&pend, SIGPIPE), "no SIGPIPE left pending");
    vks_secret_free(&pw);
}

Test(hook, bad_input)
{
    vks_secret pw = secret("two\nlines-of-secret");
    struct vks_err e;
    cr_assert_eq(vks_hook_run("true", &pw, NULL, 0, 1000, NULL, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "newline") && !strstr(e.msg, "lines-of"), "%s", e.msg);
    vks_secret_free(&pw);
    pw = secret("fine-secret-0123456789");
    cr_assert_eq(vks_hook_run("", &pw, NULL, 0, 1000, NULL, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "--set-hook"), "%s", e.msg);
    cr_assert_eq(vks_hook_run("exit 0", &pw, NULL, 0, 0, NULL, &e), VKS_OK, "timeout 0: the default");
    vks_secret_free(&pw);
}

Test(relay, parse)
{
    struct vks_err e;
    char host[VKS_CRED_RELAY_MAX + 1];
    int port = 0;
    cr_assert_eq(vks_cred_parse_relay("smtp.example.com:587", "--relay", host, sizeof host, &port, &e), VKS_OK);
    cr_assert(strcmp(host, "smtp.example.com") == 0 && port == 587);
    cr_assert_eq(vks_cred_parse_relay("[2001:db8::1]:25", "--relay", host, sizeof host, &port, &e), VKS_OK);
    cr_assert(strcmp(host, "2001:db8::1") == 0 && port == 25);
    cr_assert_eq(vks_cred_parse_relay("192.0.2.1:2525", "--relay", host, sizeof host, &port, &e), VKS_OK);
    const char *bad[] = { "", "host", "host:", "host:0", "host:65536", "host:25x", "host:+25", ":25", "a b:25",
                          "2001:db8::1:25", "[2001:db8::1]25", "[nothost]:25", "-a.example:25", "a..b:25",
                          "a.example.:25", "host:025", "[::1]:", "h\n:25" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(vks_cred_parse_relay(bad[i], "--relay", host, sizeof host, &port, &e), VKS_E_INVALID_INPUT,
                     "accepted \"%s\"", bad[i]);
        cr_assert(strstr(e.msg, "--relay"), "the field is named: %s", e.msg);
    }
    /* found by fuzz_cred: the input quoted in the message is made printable */
    cr_assert_eq(vks_cred_parse_relay("h\xfb\x1b[2J:25", "--relay", host, sizeof host, &port, &e), VKS_E_INVALID_INPUT);
    for (const char *c = e.msg; *c; c++)
        cr_assert((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f, "printable: %s", e.msg);
    cr_assert(strstr(e.msg, "\"h??[2J:25\""), "%s", e.msg);
}
