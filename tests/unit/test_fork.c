/*
 * vks_fork: kept secrets survive fork() in inherit mode and are wiped and refused in strict mode;
 * the arena's secrets are wiped either way; the generation moves in every child (with and without
 * atfork handlers: _Fork); the kept region is locked, not dumped and re-locked in the child;
 * vks_secret_free releases kept secrets; a full kept region falls back to the arena.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vks_fork.h"

#define CRED "kept-credential-FORKUNIT-81f3"

/* Runs fn in a child; returns its exit status. */
static int in_child(int (*fn)(void *), void *arg, bool raw)
{
    fflush(NULL);
    pid_t p = raw ? (pid_t)syscall(SYS_fork) : fork(); /* raw: no atfork handlers (like _Fork) */
    cr_assert(p >= 0);
    if (p == 0)
        _exit(fn(arg));
    int st = 0;
    cr_assert_eq(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

struct pair {
    vks_secret kept, plain;
    unsigned long born;
};

static int child_inherit(void *arg)
{
    struct pair *p = arg;
    if (vks_fork_generation() == p->born)
        return 1;
    if (p->kept.len != strlen(CRED) || memcmp(p->kept.data, CRED, p->kept.len) != 0)
        return 2; /* the credential must be intact */
    for (size_t i = 0; i < p->plain.len; i++)
        if (p->plain.data[i] != 0)
            return 3; /* the arena (cached plaintext) must read zeros */
    struct vks_err e;
    if (vks_fork_check(p->born, VKS_E_AUTH_FAILED, "x", &e) != VKS_OK)
        return 4;
    struct vks_fork_status fs;
    vks_fork_get_status(&fs);
    if (!fs.kept_locked && getuid() == 0)
        return 5; /* re-locked in the child */
    /* a grandchild keeps it too */
    pid_t g = fork();
    if (g == 0)
        _exit(memcmp(p->kept.data, CRED, strlen(CRED)) == 0 ? 0 : 6);
    int st = 0;
    waitpid(g, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 7;
    vks_secret_free(&p->kept); /* freeing an inherited kept secret works in the child */
    return 0;
}

static int child_strict(void *arg)
{
    struct pair *p = arg;
    for (size_t i = 0; i < strlen(CRED); i++)
        if (p->kept.data[i] != 0)
            return 1; /* wiped */
    struct vks_err e;
    if (vks_fork_check(p->born, VKS_E_AUTH_FAILED, "the token", &e) != VKS_E_AUTH_FAILED)
        return 2;
    if (!strstr(e.msg, "fork = 'strict'") || !strstr(e.msg, "the token"))
        return 3;
    /* credentials stored in the child itself are fine */
    unsigned long now = vks_fork_generation();
    vks_secret fresh = VKS_SECRET_EMPTY;
    if (vks_secret_dup_kept(CRED, strlen(CRED), &fresh, NULL) != VKS_OK)
        return 4;
    if (vks_fork_check(now, VKS_E_AUTH_FAILED, "x", &e) != VKS_OK)
        return 5;
    vks_secret_free(&fresh);
    vks_secret_free(&p->kept);
    return 0;
}

static void make_pair(struct pair *p)
{
    cr_assert_eq(vks_secret_dup_kept(CRED, strlen(CRED), &p->kept, NULL), VKS_OK);
    cr_assert_eq(vks_secret_dup("cached-plaintext-FORKUNIT", 25, &p->plain, NULL), VKS_OK);
    cr_assert(vks_fork_kept_owns(p->kept.data));
    cr_assert(!vks_fork_kept_owns(p->plain.data));
    cr_assert(!vks_secmem_owns(p->kept.data, p->kept.len));
    p->born = vks_fork_generation();
}

Test(fork, inherit_keeps_credentials_and_wipes_the_cache)
{
    vks_fork_set_mode(VKS_FORK_INHERIT);
    struct pair p;
    make_pair(&p);
    cr_assert_eq(in_child(child_inherit, &p, false), 0);
    cr_assert_eq(in_child(child_inherit, &p, true), 0, "without atfork handlers too");
    cr_assert_eq(memcmp(p.kept.data, CRED, strlen(CRED)), 0, "the parent keeps its copy");
    vks_secret_free(&p.kept);
    vks_secret_free(&p.plain);
}

Test(fork, strict_wipes_and_refuses_inherited_credentials)
{
    vks_fork_set_mode(VKS_FORK_STRICT);
    struct pair p;
    make_pair(&p);
    cr_assert_eq(in_child(child_strict, &p, false), 0);
    cr_assert_eq(in_child(child_strict, &p, true), 0, "without atfork handlers too");
    struct vks_err e;
    cr_assert_eq(vks_fork_check(p.born, VKS_E_AUTH_FAILED, "x", &e), VKS_OK, "the parent is not affected");
    cr_assert_eq(memcmp(p.kept.data, CRED, strlen(CRED)), 0);
    vks_secret_free(&p.kept);
    vks_secret_free(&p.plain);
}

Test(fork, the_environment_sets_the_mode)
{
    setenv("VKS_FORK", "strict", 1);
    cr_assert_eq(vks_fork_get_mode(), VKS_FORK_STRICT);
    enum vks_fork_mode m;
    struct vks_err e;
    cr_assert_eq(vks_fork_mode_parse("inherit", 7, "fork", &m, &e), VKS_OK);
    cr_assert_eq(m, VKS_FORK_INHERIT);
    cr_assert_eq(vks_fork_mode_parse("strictly", 8, "setup option fork", &m, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "setup option fork must be") != NULL, "%s", e.msg);
    cr_assert_eq(vks_fork_mode_parse("strict\0x", 8, "fork", &m, &e), VKS_E_CONFIG, "no NUL truncation");
}

Test(fork, kept_region_is_locked_not_dumped_and_falls_back_when_full)
{
    vks_secret s[40];
    for (int i = 0; i < 40; i++)
        cr_assert_eq(vks_secret_alloc_kept(VKS_SECRET_MAX, &s[i], NULL), VKS_OK);
    struct vks_fork_status fs;
    vks_fork_get_status(&fs);
    cr_assert(fs.kept_dontdump);
    cr_assert_eq(fs.kept_capacity, 64 * 1024);
    cr_assert_eq(fs.kept_in_use, 16 * (size_t)VKS_SECRET_MAX, "16 of 4096 bytes fit");
    cr_assert_eq(fs.kept_fallbacks, 24);
    cr_assert(vks_fork_kept_owns(s[0].data));
    cr_assert(!vks_fork_kept_owns(s[39].data), "the 17th comes from the arena");
    for (int i = 0; i < 40; i++)
        vks_secret_free(&s[i]);
    vks_fork_get_status(&fs);
    cr_assert_eq(fs.kept_in_use, 0);
    /* freed chunks are zero again and reusable in any size */
    vks_secret a, b;
    cr_assert_eq(vks_secret_alloc_kept(1, &a, NULL), VKS_OK);
    cr_assert_eq(a.cap, 64);
    for (size_t i = 0; i < a.cap; i++)
        cr_assert_eq(a.data[i], 0);
    cr_assert_eq(vks_secret_alloc_kept(65, &b, NULL), VKS_OK);
    cr_assert_eq(b.cap, 128);
    cr_assert_eq(vks_secret_keep(&b, NULL), VKS_OK, "keeping a kept secret is a no-op");
    vks_secret_free(&a);
    vks_secret_free(&b);
    /* vks_secret_keep moves an arena secret */
    vks_secret c;
    cr_assert_eq(vks_secret_dup(CRED, strlen(CRED), &c, NULL), VKS_OK);
    cr_assert_eq(vks_secret_keep(&c, NULL), VKS_OK);
    cr_assert(vks_fork_kept_owns(c.data));
    cr_assert_eq(memcmp(c.data, CRED, strlen(CRED)), 0);
    vks_secret_free(&c);
    /* the smaps flags of the kept region: locked (as root) and dd, but no wf in inherit mode */
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert(f != NULL);
    vks_secret k;
    cr_assert_eq(vks_secret_alloc_kept(32, &k, NULL), VKS_OK);
    char line[512];
    unsigned long want = (unsigned long)k.data, lo = 0, hi = 0;
    bool in = false, found = false;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            in = want >= lo && want < hi;
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = true;
            cr_assert(strstr(line, " dd") != NULL, "%s", line);
            if (vks_fork_get_mode() == VKS_FORK_INHERIT)
                cr_assert(strstr(line, " wf") == NULL, "%s", line);
        }
    }
    fclose(f);
    cr_assert(found);
    vks_secret_free(&k);
}
