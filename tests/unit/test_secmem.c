/*
 * Unit tests of the locked arena (src/vks_secmem.c). Criterion runs every test in its own process,
 * so each test starts with an unmapped arena and may change rlimits and capabilities freely.
 * Process-level proofs (capsh/setpriv, real core dumps) are in tests/integration/20-secmem-*.sh.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vks_secmem.h"

/* ---------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* VmFlags of the VMA containing addr, copied to out (empty when not found). */
static void vma_flags(const void *addr, char *out, size_t outn)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool in = false;
    out[0] = '\0';
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, outn, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static bool has_flag(const char *flags, const char *flag)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s", flag);
    const char *p = flags;
    size_t n = strlen(pat);
    while ((p = strstr(p, pat)) != NULL) {
        if (p[n] == ' ' || p[n] == '\n' || p[n] == '\0')
            return true;
        p += n;
    }
    return false;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Drops CAP_IPC_LOCK from the effective, permitted and inheritable sets so RLIMIT_MEMLOCK applies. */
static void drop_ipc_lock(void)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    cr_assert_eq(syscall(SYS_capget, &h, d), 0);
    unsigned bit = CAP_IPC_LOCK;
    for (int i = 0; i < 2; i++) {
        uint32_t m = i == (int)(bit / 32) ? ~(UINT32_C(1) << (bit % 32)) : UINT32_MAX;
        d[i].effective &= m;
        d[i].permitted &= m;
        d[i].inheritable &= m;
    }
    cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %s", strerror(errno));
}

static void limit_memlock(rlim_t bytes)
{
    struct rlimit rl = { bytes, bytes };
    cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
}

static void init_default(void)
{
    struct vks_err e;
    cr_assert_eq(vks_secmem_init(NULL, &e), VKS_OK, "%s", e.msg);
}

/* Runs fn in a forked child with default SIGSEGV handling and no core file; returns wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* wipe and constant-time comparison                                                              */

Test(secmem, wipe_zeroes_and_accepts_null)
{
    unsigned char buf[100];
    memset(buf, 0xa5, sizeof buf);
    vks_wipe(buf + 10, 80);
    cr_assert_eq(buf[9], 0xa5);
    cr_assert(all_zero(buf + 10, 80));
    cr_assert_eq(buf[90], 0xa5);
    vks_wipe(NULL, 10);
    vks_wipe(buf, 0);
}

Test(secmem, ct_equal_compares_every_byte)
{
    unsigned char a[64], b[64];
    for (int i = 0; i < 64; i++)
        a[i] = b[i] = (unsigned char)(i * 7 + 1);
    cr_assert(vks_ct_equal(a, b, 64));
    cr_assert(vks_ct_equal(a, b, 0));
    b[0] ^= 1;
    cr_assert_not(vks_ct_equal(a, b, 64));
    b[0] ^= 1;
    b[63] ^= 0x80;
    cr_assert_not(vks_ct_equal(a, b, 64));
    cr_assert(vks_ct_equal(a, b, 63));
}

/* ---------------------------------------------------------------------------------------------- */
/* allocation                                                                                     */

Test(secmem, size_classes_are_powers_of_two_from_16_to_4096)
{
    cr_assert_eq(vks_secmem_class_size(0), 16);
    cr_assert_eq(vks_secmem_class_size(1), 16);
    cr_assert_eq(vks_secmem_class_size(16), 16);
    cr_assert_eq(vks_secmem_class_size(17), 32);
    cr_assert_eq(vks_secmem_class_size(32), 32, "a 32-byte secret must cost at most 64 locked bytes");
    cr_assert_eq(vks_secmem_class_size(64), 64);
    cr_assert_eq(vks_secmem_class_size(65), 128);
    cr_assert_eq(vks_secmem_class_size(4096), 4096);
    cr_assert_eq(vks_secmem_class_size(4097), 0);
}

Test(secmem, alloc_gives_zeroed_locked_slots_and_counts_them)
{
    struct vks_err e;
    vks_secret s[10];
    size_t sizes[10] = { 1, 16, 17, 32, 33, 100, 500, 1000, 2049, 4096 };
    size_t total = 0;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(vks_secret_alloc(sizes[i], &s[i], &e), VKS_OK, "%s", e.msg);
        cr_assert_geq(s[i].cap, sizes[i]);
        cr_assert_eq(s[i].cap, vks_secmem_class_size(sizes[i]));
        cr_assert_eq(s[i].len, 0);
        cr_assert(all_zero(s[i].data, s[i].cap));
        cr_assert(vks_secmem_owns(s[i].data, s[i].cap));
        memset(s[i].data, 'x', s[i].cap); /* the whole cap is usable */
        total += s[i].cap;
    }
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert(st.initialised, "the first allocation initialises the arena");
    cr_assert_eq(st.slots_in_use, 10);
    cr_assert_eq(st.in_use, total);
    for (int i = 0; i < 10; i++) {
        vks_secret_free(&s[i]);
        cr_assert_null(s[i].data);
        cr_assert_eq(s[i].cap, 0);
        vks_secret_free(&s[i]); /* idempotent on the zeroed struct */
    }
    vks_secmem_get_status(&st);
    cr_assert_eq(st.slots_in_use, 0);
    cr_assert_eq(st.in_use, 0);
    vks_secret empty = VKS_SECRET_EMPTY;
    vks_secret_free(&empty);
    vks_secret_free(NULL);
}

Test(secmem, dup_copies_and_keeps_length)
{
    struct vks_err e;
    vks_secret s;
    cr_assert_eq(vks_secret_dup("hello", 5, &s, &e), VKS_OK);
    cr_assert_eq(s.len, 5);
    cr_assert_eq(memcmp(s.data, "hello", 5), 0);
    cr_assert(all_zero(s.data + 5, s.cap - 5));
    vks_secret_free(&s);
    cr_assert_eq(vks_secret_dup(NULL, 0, &s, &e), VKS_OK, "an empty secret still gets a slot");
    cr_assert_not_null(s.data);
    cr_assert_eq(s.len, 0);
    vks_secret_free(&s);
}

Test(secmem, bad_sizes_are_refused)
{
    struct vks_err e;
    vks_secret s = { (unsigned char *)1, 1, 1 };
    cr_assert_eq(vks_secret_alloc(0, &s, &e), VKS_E_INVALID_ARG);
    cr_assert_null(s.data, "a failed alloc leaves an empty secret");
    cr_assert_eq(vks_secret_alloc(VKS_SECRET_MAX + 1, &s, &e), VKS_E_INVALID_ARG);
    cr_assert(strstr(e.msg, "4097") != NULL, "%s", e.msg);
    char big[VKS_SECRET_MAX + 1] = { 0 };
    cr_assert_eq(vks_secret_dup(big, sizeof big, &s, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_secret_dup(NULL, 3, &s, &e), VKS_E_INVALID_ARG);
}

Test(secmem, freed_slot_reads_all_zeros)
{
    struct vks_err e;
    vks_secret keep, s;
    /* keep the unit alive so the freed slot stays carved to its class */
    cr_assert_eq(vks_secret_alloc(64, &keep, &e), VKS_OK);
    cr_assert_eq(vks_secret_alloc(64, &s, &e), VKS_OK);
    memset(s.data, 'S', s.cap);
    s.len = s.cap;
    unsigned char *raw = s.data;
    size_t cap = s.cap;
    vks_secret_free(&s);
    cr_assert(all_zero(raw, cap), "a freed slot must be wiped");
    /* a unit whose last slot is freed returns to the free-unit stack, also zero */
    vks_secret big;
    cr_assert_eq(vks_secret_alloc(4096, &big, &e), VKS_OK);
    memset(big.data, 'S', big.cap);
    raw = big.data;
    vks_secret_free(&big);
    cr_assert(all_zero(raw, 4096));
    vks_secret_free(&keep);
}

Test(secmem, slots_do_not_overlap_and_keep_their_bytes)
{
    struct vks_err e;
    enum { N = 3000 };
    static vks_secret s[N];
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(1 + (i * 37) % 300);
        cr_assert_eq(vks_secret_alloc(n, &s[i], &e), VKS_OK, "%s", e.msg);
        memset(s[i].data, (unsigned char)(i % 251 + 1), s[i].cap);
    }
    for (int i = 0; i < N; i += 2)
        vks_secret_free(&s[i]);
    for (int i = 0; i < N; i += 2) {
        cr_assert_eq(vks_secret_alloc((size_t)(1 + (i * 13) % 300), &s[i], &e), VKS_OK);
        memset(s[i].data, (unsigned char)(i % 251 + 1), s[i].cap);
    }
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < s[i].cap; k++)
            cr_assert_eq(s[i].data[k], (unsigned char)(i % 251 + 1), "slot %d byte %zu overwritten", i, k);
        vks_secret_free(&s[i]);
    }
}

Test(secmem, hundred_thousand_64_byte_secrets_fit_the_default_arena)
{
    init_default();
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_leq(st.capacity, (size_t)8 << 20, "the default must fit the 8 MiB default memlock limit");
    cr_assert_leq(st.capacity, ((size_t)8 << 20) - ((size_t)512 << 10), "room is left for scratch buffers");
    enum { N = 100000 };
    vks_secret *s = calloc(N, sizeof *s);
    struct vks_err e;
    unsigned char v[64];
    for (int i = 0; i < N; i++) {
        memset(v, (unsigned char)i, sizeof v);
        cr_assert_eq(vks_secret_dup(v, sizeof v, &s[i], &e), VKS_OK, "secret %d: %s", i, e.msg);
    }
    vks_secmem_get_status(&st);
    cr_assert_eq(st.slots_in_use, N);
    cr_assert_eq(st.in_use, (size_t)N * 64);
    cr_assert(st.locked || geteuid() != 0, "root can always lock");
    for (int i = 0; i < N; i++)
        vks_secret_free(&s[i]);
    free(s);
}

Test(secmem, a_full_arena_refuses_and_counts_failures_then_reuses_units_across_classes)
{
    struct vks_secmem_config cfg = { .locked_bytes = 64 << 10 };
    struct vks_err e;
    cr_assert_eq(vks_secmem_init(&cfg, &e), VKS_OK, "%s", e.msg);
    enum { SMALL = (64 << 10) / 16 };
    static vks_secret s[SMALL];
    for (int i = 0; i < SMALL; i++)
        cr_assert_eq(vks_secret_alloc(16, &s[i], &e), VKS_OK, "%d: %s", i, e.msg);
    vks_secret x;
    cr_assert_eq(vks_secret_alloc(16, &x, &e), VKS_E_LOCKED_MEMORY);
    cr_assert(strstr(e.msg, "full") != NULL, "%s", e.msg);
    cr_assert_eq(vks_secret_alloc(4096, &x, &e), VKS_E_LOCKED_MEMORY);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_eq(st.alloc_failures, 2);
    for (int i = 0; i < SMALL; i++)
        vks_secret_free(&s[i]);
    /* every unit went back: the whole region can now hold 4096-byte secrets */
    static vks_secret big[16];
    for (int i = 0; i < 16; i++)
        cr_assert_eq(vks_secret_alloc(4096, &big[i], &e), VKS_OK, "%d: %s", i, e.msg);
    for (int i = 0; i < 16; i++)
        vks_secret_free(&big[i]);
}

Test(secmem, double_free_aborts, .signal = SIGABRT)
{
    struct vks_err e;
    vks_secret a, b;
    cr_assert_eq(vks_secret_alloc(32, &a, &e), VKS_OK);
    cr_assert_eq(vks_secret_alloc(32, &b, &e), VKS_OK); /* keeps the unit carved */
    vks_secret copy = a;
    vks_secret_free(&a);
    vks_secret_free(&copy);
}

/* ---------------------------------------------------------------------------------------------- */
/* configuration                                                                                  */

Test(secmem, config_is_checked_and_not_changed_under_live_secrets)
{
    struct vks_err e;
    struct vks_secmem_config c1 = { .locked_bytes = 1 << 20 }, c2 = { .locked_bytes = 2 << 20 };
    cr_assert_eq(vks_secmem_init(&c1, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_secmem_init(&c1, &e), VKS_OK, "same config again is a no-op");
    vks_secret s;
    cr_assert_eq(vks_secret_alloc(10, &s, &e), VKS_OK);
    cr_assert_eq(vks_secmem_init(&c2, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "locked_bytes") != NULL, "%s", e.msg);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_eq(st.capacity, 1 << 20);
    vks_secret_free(&s);
    cr_assert_eq(vks_secmem_init(&c2, &e), VKS_OK, "an empty arena may be resized: %s", e.msg);
    vks_secmem_get_status(&st);
    cr_assert_eq(st.capacity, 2 << 20);
    struct vks_secmem_config tiny = { .locked_bytes = 100 };
    cr_assert_eq(vks_secmem_init(&tiny, &e), VKS_E_CONFIG);
}

Test(secmem, environment_sets_the_default_size)
{
    struct vks_err e;
    setenv("VKS_LOCKED_BYTES", "3M", 1);
    init_default();
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_eq(st.capacity, (size_t)3 << 20);
    vks_secmem_shutdown();
    setenv("VKS_LOCKED_BYTES", "lots", 1);
    cr_assert_eq(vks_secmem_init(NULL, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VKS_LOCKED_BYTES") != NULL, "%s", e.msg);
    vks_secret s;
    cr_assert_eq(vks_secret_alloc(8, &s, &e), VKS_E_CONFIG, "lazy init reports the bad variable");
    setenv("VKS_LOCKED_BYTES", "131072", 1);
    setenv("VKS_REQUIRE_LOCKED", "maybe", 1);
    cr_assert_eq(vks_secmem_init(NULL, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VKS_REQUIRE_LOCKED") != NULL, "%s", e.msg);
    setenv("VKS_REQUIRE_LOCKED", "true", 1);
    init_default();
    vks_secmem_get_status(&st);
    cr_assert_eq(st.capacity, 131072);
    cr_assert(st.require_locked);
}

Test(secmem, shutdown_releases_and_changes_generation)
{
    struct vks_err e;
    vks_secret s;
    cr_assert_eq(vks_secret_alloc(10, &s, &e), VKS_OK);
    unsigned long g0 = vks_secmem_generation();
    vks_secmem_shutdown();
    cr_assert_neq(vks_secmem_generation(), g0);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_not(st.initialised);
    vks_secret_free(&s); /* a secret from before shutdown is forgotten, not a crash */
    cr_assert_null(s.data);
    cr_assert_eq(vks_secret_alloc(10, &s, &e), VKS_OK, "the arena comes back on next use");
    vks_secret_free(&s);
}

/* ---------------------------------------------------------------------------------------------- */
/* kernel-visible protections                                                                     */

Test(secmem, vmlck_grows_by_the_arena_after_init)
{
    long before = status_kb("VmLck");
    cr_assert_geq(before, 0);
    init_default();
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert(st.locked);
    long after = status_kb("VmLck");
    cr_assert_geq(after - before, (long)(st.capacity / 1024), "VmLck %ld -> %ld kB", before, after);
}

Test(secmem, region_vmflags_say_locked_dontdump_wipeonfork)
{
    init_default();
    const void *data;
    size_t len;
    cr_assert(vks_secmem_region(&data, &len));
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert(st.locked && st.dontdump && st.guard_pages);
    char f[512];
    vma_flags(data, f, sizeof f);
    cr_assert(has_flag(f, "lo"), "VmFlags:%s", f);
    cr_assert(has_flag(f, "dd"), "VmFlags:%s", f);
    vma_flags((const char *)data + len - 1, f, sizeof f);
    cr_assert(has_flag(f, "lo") && has_flag(f, "dd"), "end of region VmFlags:%s", f);
    struct utsname u;
    uname(&u);
    int maj = 0, min = 0;
    sscanf(u.release, "%d.%d", &maj, &min);
    if (maj > 4 || (maj == 4 && min >= 14))
        cr_assert(st.wipe_on_fork, "kernel %s supports MADV_WIPEONFORK", u.release);
    if (st.wipe_on_fork)
        cr_assert(has_flag(f, "wf"), "VmFlags:%s", f);
    /* guard pages: PROT_NONE neighbours */
    vma_flags((const char *)data - 1, f, sizeof f);
    cr_assert(f[0] != '\0' && !has_flag(f, "rd") && !has_flag(f, "wr"), "leading guard VmFlags:%s", f);
    vma_flags((const char *)data + len, f, sizeof f);
    cr_assert(f[0] != '\0' && !has_flag(f, "rd") && !has_flag(f, "wr"), "trailing guard VmFlags:%s", f);
}

/* Mappings that intersect [lo, hi). */
static int count_maps_in(uintptr_t lo, uintptr_t hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
            n++;
    }
    fclose(f);
    return n;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

Test(secmem, at_most_four_new_mappings_for_any_number_of_secrets)
{
    int before = count_maps();
    init_default();
    int after_init = count_maps();
    const void *data;
    size_t len;
    cr_assert(vks_secmem_region(&data, &len));
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    int arena_maps = count_maps_in((uintptr_t)data - pg, (uintptr_t)data + len + pg);
    cr_assert_eq(arena_maps, 3, "guard | data | guard, got %d mappings", arena_maps);
#ifndef UNDER_ASAN
    /* the metadata calloc may get its own mapping: it counts too (ASan's allocator maps its own
     * regions, so this part is only checked without it) */
    cr_assert_leq(after_init - before, 4, "maps: %d -> %d", before, after_init);
#else
    (void)before;
#endif
    struct vks_err e;
    enum { N = 20000 };
    static vks_secret s[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(vks_secret_alloc((size_t)(1 + i % VKS_SECRET_MAX / 16), &s[i], &e), VKS_OK, "%s", e.msg);
    int after = count_maps();
    cr_assert_eq(after, after_init, "secrets add no mapping: %d -> %d", after_init, after);
    cr_assert_eq(count_maps_in((uintptr_t)data - pg, (uintptr_t)data + len + pg), 3);
    for (int i = 0; i < N; i++)
        vks_secret_free(&s[i]);
}

static void touch(void *p)
{
    volatile unsigned char *q = p;
    (void)*q;
}

static void read_past_end(void *unused)
{
    (void)unused;
    const void *data;
    size_t len;
    vks_secmem_region(&data, &len);
    touch((unsigned char *)data + len);
    _exit(7); /* not reached */
}

static void read_before_start(void *unused)
{
    (void)unused;
    const void *data;
    size_t len;
    vks_secmem_region(&data, &len);
    touch((unsigned char *)data - 1);
    _exit(7);
}

Test(secmem, reading_past_the_region_is_sigsegv)
{
    init_default();
    const void *data;
    size_t len;
    cr_assert(vks_secmem_region(&data, &len));
    touch((unsigned char *)data + len - 1); /* the last data byte is readable */
    int st = in_child(read_past_end, NULL);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child status %#x", st);
    st = in_child(read_before_start, NULL);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child status %#x", st);
}

struct fork_case {
    vks_secret *s;
    unsigned long gen;
};

static void child_checks_slot(void *arg)
{
    struct fork_case *fc = arg;
    /* exit codes: 1 = bytes survived, 2 = generation unchanged, 3 = cannot allocate, 4 = not relocked */
    if (!all_zero(fc->s->data, fc->s->cap))
        _exit(1);
    if (vks_secmem_generation() == fc->gen)
        _exit(2);
    struct vks_err e;
    vks_secret t;
    if (vks_secret_dup("child", 5, &t, &e) != VKS_OK)
        _exit(3);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    if (!st.locked)
        _exit(4);
    vks_secret_free(&t);
    vks_secret_free(fc->s);
    _exit(0);
}

Test(secmem, a_forked_child_reads_zeros_where_the_parent_has_a_secret)
{
    struct vks_err e;
    vks_secret s;
    cr_assert_eq(vks_secret_alloc(48, &s, &e), VKS_OK);
    memset(s.data, 'P', s.cap);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert(st.wipe_on_fork || true); /* without WIPEONFORK the child handler wipes instead */
    struct fork_case fc = { &s, vks_secmem_generation() };
    int ws = in_child(child_checks_slot, &fc);
    cr_assert(WIFEXITED(ws), "child status %#x", ws);
    cr_assert_eq(WEXITSTATUS(ws), 0, "child check %d failed", WEXITSTATUS(ws));
    for (size_t i = 0; i < s.cap; i++)
        cr_assert_eq(s.data[i], 'P', "the parent keeps its secret");
    vks_secret_free(&s);
}

Test(secmem, over_the_memlock_limit_it_degrades_with_one_warning)
{
    limit_memlock(64 << 10);
    drop_ipc_lock();
    char path[] = "/tmp/vks-secmem-warn-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    struct vks_err e;
    vks_status rc = vks_secmem_init(NULL, &e);
    vks_secret s;
    vks_status rc2 = vks_secret_dup("abc", 3, &s, &e);
    struct vks_secmem_config again = { 0 };
    vks_secmem_init(&again, &e);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cr_assert_eq(rc, VKS_OK, "default mode serves");
    cr_assert_eq(rc2, VKS_OK, "default mode serves: %s", e.msg);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_not(st.locked);
    cr_assert(st.dontdump && st.guard_pages, "the other protections still apply");
    char buf[2048] = { 0 };
    cr_assert_gt(pread(fd, buf, sizeof buf - 1, 0), 0, "a warning was printed");
    close(fd);
    cr_assert(strstr(buf, "NOT LOCKED") != NULL, "%s", buf);
    cr_assert(strstr(buf, "RLIMIT_MEMLOCK is 65536 bytes") != NULL, "%s", buf);
    char *second = strstr(buf, "WARNING");
    cr_assert(second && strstr(second + 1, "WARNING") == NULL, "warned once: %s", buf);
    vks_secret_free(&s);
}

Test(secmem, require_locked_fails_closed_over_the_memlock_limit)
{
    limit_memlock(64 << 10);
    drop_ipc_lock();
    struct vks_err e;
    struct vks_secmem_config cfg = { .locked_bytes = 0, .require_locked = true };
    cr_assert_eq(vks_secmem_init(&cfg, &e), VKS_E_LOCKED_MEMORY);
    cr_assert(strstr(e.msg, "RLIMIT_MEMLOCK is 65536 bytes") != NULL, "%s", e.msg);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_not(st.locked);
    cr_assert(st.require_locked);
    vks_secret s;
    cr_assert_eq(vks_secret_dup("abc", 3, &s, &e), VKS_E_LOCKED_MEMORY, "every allocation is refused");
    cr_assert_null(s.data);
    /* a small enough arena locks fine under the same limit */
    struct vks_secmem_config small = { .locked_bytes = 32 << 10, .require_locked = true };
    cr_assert_eq(vks_secmem_init(&small, &e), VKS_E_CONFIG, "below the minimum size");
    small.locked_bytes = 64 << 10;
    /* 64 KiB of data plus nothing else locked: exactly at the limit */
    cr_assert_eq(vks_secmem_init(&small, &e), VKS_OK, "%s", e.msg);
    vks_secmem_get_status(&st);
    cr_assert(st.locked);
    cr_assert_eq(vks_secret_dup("abc", 3, &s, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&s);
}

/* ---------------------------------------------------------------------------------------------- */
/* threads                                                                                        */

static void *hammer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    const unsigned char tag = (unsigned char)((uintptr_t)arg * 37 % 250 + 1);
    vks_secret mine[32] = { { 0 } };
    struct vks_err e;
    for (int round = 0; round < 4000; round++) {
        int i = (int)(rand_r(&seed) % 32);
        unsigned char want = (unsigned char)(tag ^ i);
        if (mine[i].data) {
            for (size_t k = 0; k < mine[i].len; k++)
                if (mine[i].data[k] != want)
                    return (void *)1;
            vks_secret_free(&mine[i]);
        } else {
            size_t n = 1 + rand_r(&seed) % 700;
            unsigned char v[700];
            memset(v, want, n);
            if (vks_secret_dup(v, n, &mine[i], &e) != VKS_OK)
                return (void *)2;
        }
        if (round % 512 == 0) {
            struct vks_secmem_status st;
            vks_secmem_get_status(&st);
        }
    }
    for (int i = 0; i < 32; i++)
        vks_secret_free(&mine[i]);
    return NULL;
}

Test(secmem, eight_threads_share_the_arena_without_corruption)
{
    pthread_t t[8];
    for (uintptr_t i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, (void *)(i + 1)), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        cr_assert_null(r, "thread %d failed with %ld", i, (long)(intptr_t)r);
    }
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_eq(st.slots_in_use, 0);
    cr_assert_eq(st.in_use, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* scratch                                                                                        */

static void scratch_overrun(void *arg)
{
    vks_scratch *s = arg;
    touch(s->data + s->cap);
    _exit(7);
}

Test(secmem, scratch_buffers_are_guarded_dontdump_and_wiped)
{
    struct vks_err e;
    vks_scratch s;
    cr_assert_eq(vks_scratch_open(10000, &s, &e), VKS_OK, "%s", e.msg);
    cr_assert_geq(s.cap, 10000);
    cr_assert(all_zero(s.data, s.cap));
    memset(s.data, 'B', 5000);
    s.len = 5000;
    char f[512];
    vma_flags(s.data, f, sizeof f);
    cr_assert(has_flag(f, "dd"), "VmFlags:%s", f);
    cr_assert(has_flag(f, "lo"), "root can lock scratch: VmFlags:%s", f);
    vks_scratch_reset(&s);
    cr_assert_eq(s.len, 0);
    cr_assert(all_zero(s.data, s.cap));
    int st = in_child(scratch_overrun, &s);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child status %#x", st);
    struct vks_secmem_status ss;
    vks_secmem_get_status(&ss);
    cr_assert(ss.initialised, "opening a scratch initialises the arena first");
    cr_assert_eq(ss.scratch_open, 1);
    cr_assert_eq(ss.scratch_locked_bytes, s.cap);
    cr_assert(s.locked);
    int before = count_maps();
    vks_scratch_close(&s);
    vks_secmem_get_status(&ss);
    cr_assert_eq(ss.scratch_open, 0);
    cr_assert_eq(ss.scratch_locked_bytes, 0);
    cr_assert_null(s.data);
    cr_assert_lt(count_maps(), before, "the mapping is gone");
    vks_scratch_close(&s);
    cr_assert_eq(vks_scratch_open(0, &s, &e), VKS_E_INVALID_ARG);
}

Test(secmem, the_arena_is_locked_before_scratch_buffers_use_the_memlock_budget)
{
    limit_memlock(256 << 10);
    drop_ipc_lock();
    setenv("VKS_LOCKED_BYTES", "192K", 1);
    struct vks_err e;
    vks_scratch a, b;
    cr_assert_eq(vks_scratch_open(48 << 10, &a, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_scratch_open(48 << 10, &b, &e), VKS_OK, "a scratch still opens when it cannot be locked");
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert(st.locked, "the arena (192 KiB) was locked before the scratch buffers");
    cr_assert(a.locked, "the first scratch fits the remaining 64 KiB");
    cr_assert_not(b.locked);
    cr_assert_eq(st.scratch_lock_failures, 1);
    cr_assert_eq(st.scratch_open, 2);
    vks_scratch_close(&a);
    vks_scratch_close(&b);
}

/* ---------------------------------------------------------------------------------------------- */
/* lanes: threads allocate from their own lane; a slot is freed wherever it came from            */

struct lane_job {
    vks_secret *slots;
    int n;
    size_t size;
    unsigned char fill;
    int errors;
};

static void *lane_alloc(void *arg)
{
    struct lane_job *j = arg;
    struct vks_err e;
    for (int i = 0; i < j->n; i++) {
        if (vks_secret_alloc(j->size, &j->slots[i], &e) != VKS_OK) {
            j->errors++;
            continue;
        }
        memset(j->slots[i].data, j->fill, j->size);
        j->slots[i].len = j->size;
    }
    return NULL;
}

static void *lane_free(void *arg)
{
    struct lane_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        for (size_t k = 0; k < j->slots[i].len; k++)
            if (j->slots[i].data[k] != j->fill) {
                j->errors++;
                break;
            }
        vks_secret_free(&j->slots[i]);
    }
    return NULL;
}

Test(secmem, slots_allocated_by_many_threads_are_freed_by_others_and_counted_exactly)
{
    init_default();
    enum { T = 12, N = 300 };
    static vks_secret slots[T][N];
    struct lane_job jobs[T];
    pthread_t th[T];
    struct vks_secmem_status s0, s1;
    vks_secmem_get_status(&s0);
    for (int t = 0; t < T; t++) {
        jobs[t] = (struct lane_job){ slots[t], N, (size_t)(16 << (t % 4)), (unsigned char)(0x40 + t), 0 };
        pthread_create(&th[t], NULL, lane_alloc, &jobs[t]);
    }
    size_t want = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(jobs[t].errors, 0, "thread %d could not allocate", t);
        want += (size_t)N * jobs[t].size;
    }
    vks_secmem_get_status(&s1);
    cr_assert_eq(s1.slots_in_use - s0.slots_in_use, (size_t)T * N);
    cr_assert_eq(s1.in_use - s0.in_use, want);
    /* every thread frees the slots another one allocated (another lane), checking their bytes */
    for (int t = 0; t < T; t++) {
        struct lane_job *j = &jobs[(t + 5) % T];
        pthread_create(&th[t], NULL, lane_free, j);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++)
        cr_assert_eq(jobs[t].errors, 0, "slots of thread %d were overwritten", t);
    vks_secmem_get_status(&s1);
    cr_assert_eq(s1.slots_in_use, s0.slots_in_use);
    cr_assert_eq(s1.in_use, s0.in_use);
}

static void *alloc_one_16(void *arg)
{
    struct lane_job *j = arg;
    struct vks_err e;
    j->errors = vks_secret_alloc(16, &j->slots[0], &e) == VKS_OK ? 0 : 1;
    return NULL;
}

Test(secmem, a_thread_gets_a_free_slot_of_another_lane_when_no_unit_is_left)
{
    /* 16 units of 256 x 16-byte slots; this thread's lane takes them all, then frees one slot */
    struct vks_secmem_config cfg = { .locked_bytes = 64 << 10 };
    struct vks_err e;
    cr_assert_eq(vks_secmem_init(&cfg, &e), VKS_OK, "%s", e.msg);
    enum { SMALL = (64 << 10) / 16 };
    static vks_secret s[SMALL];
    for (int i = 0; i < SMALL; i++)
        cr_assert_eq(vks_secret_alloc(16, &s[i], &e), VKS_OK, "%d: %s", i, e.msg);
    vks_secret_free(&s[100]);
    /* threads started now land on other lanes, which own no unit: the free slot is still theirs */
    for (int t = 0; t < 9; t++) {
        vks_secret one = VKS_SECRET_EMPTY;
        struct lane_job j = { &one, 1, 16, 0, 0 };
        pthread_t th;
        pthread_create(&th, NULL, alloc_one_16, &j);
        pthread_join(th, NULL);
        cr_assert_eq(j.errors, 0, "thread %d found no slot", t);
        vks_secret_free(&one);
    }
    for (int i = 0; i < SMALL; i++)
        vks_secret_free(&s[i]);
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    cr_assert_eq(st.slots_in_use, 0);
}
