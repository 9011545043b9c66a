/*
 * secmem_probe: a small process the secmem integration tests (tests/integration/20-secmem-*.sh)
 * run to prove arena properties at the process level.
 *
 *   secmem_probe status [--require-locked] [--bytes N]
 *       init the arena, print its status as key=value lines, try one allocation.
 *       Exit 0 when init succeeded, 3 when it failed (init=<code> says why).
 *   secmem_probe hold SECRET_FILE COUNT [--leak]
 *       read the secret from the file (straight into a scratch buffer), keep COUNT copies in the
 *       arena, close the scratch, then abort() so the kernel writes a core file. A heap marker
 *       proves the core holds ordinary memory. --leak also copies the secret into malloc memory
 *       (the positive control: that core must contain it). --wait prints "ready" and waits for a
 *       signal instead of aborting (for gdb's gcore).
 *   secmem_probe threads NTHREADS ROUNDS FORKS
 *       NTHREADS threads allocate, fill, verify and free secrets of mixed sizes while the main
 *       thread forks FORKS times; each child must see only zeros in its parent's slots and must be
 *       able to allocate (no lock left held across fork). Prints "N passed, N failed".
 *
 * Never prints a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vks_secmem.h"

static int usage(void)
{
    fprintf(stderr, "usage: secmem_probe status [--require-locked] [--bytes N] | hold FILE COUNT [--leak] [--wait] | "
                    "threads NTHREADS ROUNDS FORKS\n");
    return 2;
}

static int cmd_status(int argc, char **argv)
{
    struct vks_secmem_config cfg = { 0 };
    bool use_cfg = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--require-locked")) {
            cfg.require_locked = true;
            use_cfg = true;
        } else if (!strcmp(argv[i], "--bytes") && i + 1 < argc) {
            cfg.locked_bytes = strtoul(argv[++i], NULL, 10);
            use_cfg = true;
        } else {
            return usage();
        }
    }
    struct vks_err e;
    vks_err_clear(&e);
    vks_status rc = vks_secmem_init(use_cfg ? &cfg : NULL, &e);
    printf("init=%s\n", vks_status_code(rc));
    if (rc != VKS_OK)
        printf("error=%s\n", e.msg);
    vks_secret s;
    vks_status ra = vks_secret_dup("probe", 5, &s, &e);
    printf("alloc=%s\n", vks_status_code(ra));
    vks_secret_free(&s);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    printf("initialised=%d\nlocked=%d\ndontdump=%d\nguard_pages=%d\nwipe_on_fork=%d\nrequire_locked=%d\n"
           "capacity=%zu\nalloc_failures=%lu\n",
           st.initialised, st.locked, st.dontdump, st.guard_pages, st.wipe_on_fork, st.require_locked,
           st.capacity, st.alloc_failures);
    return rc == VKS_OK ? 0 : 3;
}

static int cmd_hold(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    long count = strtol(argv[1], NULL, 10);
    bool leak = false, wait = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--leak"))
            leak = true;
        else if (!strcmp(argv[i], "--wait"))
            wait = true;
        else
            return usage();
    }
    struct vks_err e;
    vks_scratch sc;
    if (vks_scratch_open(VKS_SECRET_MAX, &sc, &e) != VKS_OK) {
        fprintf(stderr, "scratch: %s\n", e.msg);
        return 1;
    }
    int fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "cannot open the secret file: %s\n", strerror(errno));
        return 1;
    }
    ssize_t n = read(fd, sc.data, sc.cap);
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "cannot read the secret file\n");
        return 1;
    }
    sc.len = (size_t)n;
    while (sc.len > 0 && (sc.data[sc.len - 1] == '\n' || sc.data[sc.len - 1] == '\r'))
        sc.len--;
    vks_secret *held = calloc((size_t)count, sizeof *held);
    for (long i = 0; i < count; i++) {
        if (vks_secret_dup(sc.data, sc.len, &held[i], &e) != VKS_OK) {
            fprintf(stderr, "dup %ld: %s\n", i, e.msg);
            return 1;
        }
    }
    char *copy = NULL;
    if (leak) {
        copy = malloc(sc.len + 1);
        memcpy(copy, sc.data, sc.len);
        copy[sc.len] = '\0';
    }
    vks_scratch_close(&sc);
    /* ordinary heap memory with a known marker: a core that lacks it proves nothing */
    char *marker = malloc(64);
    snprintf(marker, 64, "%s-%s", "secmem-probe", "heap-marker");
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    printf("holding %ld secrets, locked=%d dontdump=%d leak=%d\n", count, st.locked, st.dontdump, leak);
    fflush(stdout);
    __asm__ __volatile__("" : : "r"(marker), "r"(copy), "r"(held) : "memory");
    if (wait) {
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    abort();
}

/* ---------------------------------------------------------------------------------------------- */

struct worker {
    unsigned id;
    long rounds;
    long failures;
    pthread_t t;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    unsigned seed = w->id * 2654435761u + 1;
    vks_secret mine[64];
    memset(mine, 0, sizeof mine);
    struct vks_err e;
    unsigned char buf[VKS_SECRET_MAX];
    for (long r = 0; r < w->rounds; r++) {
        unsigned i = (unsigned)rand_r(&seed) % 64;
        unsigned char want = (unsigned char)((w->id * 31 + i) % 251 + 1);
        if (mine[i].data != NULL) {
            for (size_t k = 0; k < mine[i].len; k++)
                if (mine[i].data[k] != want) {
                    w->failures++;
                    break;
                }
            vks_secret_free(&mine[i]);
        } else {
            size_t n = 1 + (size_t)rand_r(&seed) % (r % 7 == 0 ? VKS_SECRET_MAX : 96);
            memset(buf, want, n);
            if (vks_secret_dup(buf, n, &mine[i], &e) != VKS_OK)
                w->failures++;
        }
        if (r % 256 == 0) {
            struct vks_secmem_status st;
            vks_secmem_get_status(&st);
            (void)vks_secmem_generation();
        }
    }
    for (int i = 0; i < 64; i++)
        vks_secret_free(&mine[i]);
    return NULL;
}

static int child_after_fork(vks_secret *parent_slot)
{
    alarm(30); /* a lock left held across fork would hang here: die by SIGALRM instead */
    for (size_t k = 0; k < parent_slot->cap; k++)
        if (parent_slot->data[k] != 0)
            return 1;
    struct vks_err e;
    vks_secret s;
    if (vks_secret_dup("child-value", 11, &s, &e) != VKS_OK)
        return 2;
    vks_secret_free(&s);
    return 0;
}

static int cmd_threads(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    int nthreads = atoi(argv[0]);
    long rounds = atol(argv[1]);
    int forks = atoi(argv[2]);
    if (nthreads < 1 || nthreads > 256 || rounds < 1 || forks < 0)
        return usage();
    int passed = 0, failed = 0;
    struct vks_err e;
    vks_secret mark;
    if (vks_secret_dup("parent-value", 12, &mark, &e) != VKS_OK) {
        fprintf(stderr, "init: %s\n", e.msg);
        return 1;
    }
    struct worker *w = calloc((size_t)nthreads, sizeof *w);
    for (int i = 0; i < nthreads; i++) {
        w[i].id = (unsigned)i + 1;
        w[i].rounds = rounds;
        pthread_create(&w[i].t, NULL, work, &w[i]);
    }
    int fork_bad = 0;
    for (int f = 0; f < forks; f++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_after_fork(&mark));
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            fprintf(stderr, "fork %d: child status %#x\n", f, ws);
            fork_bad++;
        }
    }
    long bad = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        bad += w[i].failures;
    }
    printf("threads: %d x %ld rounds, %ld corrupted or failed operations\n", nthreads, rounds, bad);
    bad == 0 ? passed++ : failed++;
    printf("forks under load: %d, %d children saw secret bytes or could not allocate\n", forks, fork_bad);
    fork_bad == 0 ? passed++ : failed++;
    bool parent_ok = mark.len == 12 && memcmp(mark.data, "parent-value", 12) == 0;
    printf("parent slot intact after forks: %s\n", parent_ok ? "yes" : "no");
    parent_ok ? passed++ : failed++;
    vks_secret_free(&mark);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    printf("slots in use at the end: %zu\n", st.slots_in_use);
    st.slots_in_use == 0 ? passed++ : failed++;
    free(w);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "status"))
        return cmd_status(argc - 2, argv + 2);
    if (!strcmp(argv[1], "hold"))
        return cmd_hold(argc - 2, argv + 2);
    if (!strcmp(argv[1], "threads"))
        return cmd_threads(argc - 2, argv + 2);
    return usage();
}
