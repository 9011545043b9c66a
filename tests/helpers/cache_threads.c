/*
 * cache_threads: concurrency drivers for the cache (run by tests/integration/40-cache-threads.sh,
 * also under ThreadSanitizer by `make tsan`; Criterion cannot run under TSan).
 *
 *   cache_threads core THREADS ITERATIONS
 *       THREADS threads hammer 40 keys through the C cache (capacity 24, so entries are evicted)
 *       with an in-process fetch function while another thread invalidates; then 64 threads miss
 *       one key at once and must cause exactly one fetch; then THREADS threads look up 8 keys as
 *       admitted and refused callers at random (ops->admit) while another thread invalidates:
 *       admitted ones get the right value, refused ones restricted, and a last refusal of each key
 *       leaves no value cached; then THREADS threads hit 4 keys whose values (of many lengths,
 *       with metadata naming their generation) are replaced, flushed and evicted meanwhile: every
 *       value must be whole and come with its own metadata, and the hit count must be exact;
 *       then (not in sanitizer builds) 20 forks while 4 threads hit: every child can hit, miss
 *       and flush.
 *       Exit 0 when every answer was right.
 *
 *   cache_threads abort SCRIPT
 *       runs SCRIPT in one lua_State and then calls abort() with the state (and its handles) alive,
 *       for the core-dump test.
 *
 *   cache_threads lua THREADS SCRIPT
 *       THREADS threads, each with its own lua_State (luaL_newstate + openlibs), run SCRIPT with
 *       the global THREAD = 1..THREADS, as a KumoMTA-style host runs the policy in many states.
 *       The script loads the module itself (require 'vault_keysource') and raises on any wrong
 *       value; barrier() makes all threads start a phase together. Exit 0 when every thread's script returned without error.
 *
 * Output: one line per failure (never a secret) and a closing "N passed, N failed".
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vks_cache.h"

#define PW "cache-unit-pw-"

static atomic_int fetches;
static atomic_int block_until_waits;

struct src {
    char id[32];
};

static vks_status fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    struct src *s = source;
    atomic_fetch_add(&fetches, 1);
    int need = atomic_load(&block_until_waits);
    for (int i = 0; need > 0 && i < 30000; i++) {
        struct vks_cache_stats st;
        vks_cache_get_stats(&st);
        if ((int)st.waits >= need)
            break;
        usleep(1000);
    }
    char v[64];
    snprintf(v, sizeof v, PW "%s", s->id);
    out->meta.kv_version = 2;
    return vks_secret_dup(v, strlen(v), &out->value, err);
}

static void *clone_src(const void *s)
{
    struct src *c = malloc(sizeof *c);
    if (c)
        memcpy(c, s, sizeof *c);
    return c;
}

static const struct vks_cache_source_ops ops = { fetch, clone_src, free, NULL };

static bool lookup(const char *id)
{
    struct src s;
    snprintf(s.id, sizeof s.id, "%s", id);
    char want[64];
    snprintf(want, sizeof want, PW "%s", id);
    vks_secret v;
    struct vks_cache_info info;
    struct vks_err e;
    vks_status st = vks_cache_get(id, NULL, &ops, &s, &v, &info, &e);
    bool ok = st == VKS_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0 &&
              info.meta != NULL && info.meta->kv_version == 2;
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return ok;
}

/* a caller that the admit callback refuses or admits (restrictions, issue 10 item 4) */
struct asrc {
    struct src s; /* first: fetch and clone_src read it */
    bool allow;
};

static vks_status admit(void *source, const struct vks_cache_meta *meta, struct vks_err *err)
{
    const struct asrc *a = source;
    if (meta == NULL || meta->kv_version != 2)
        return vks_err_set(err, VKS_E_INTERNAL, "%s: admit without metadata", a->s.id);
    return a->allow ? VKS_OK : vks_err_set(err, VKS_E_RESTRICTED, "%s: refused", a->s.id);
}

static const struct vks_cache_source_ops aops = { fetch, clone_src, free, admit };

static bool alookup(const char *id, bool allow)
{
    struct asrc a = { .allow = allow };
    snprintf(a.s.id, sizeof a.s.id, "%s", id);
    char want[64];
    snprintf(want, sizeof want, PW "%s", id);
    vks_secret v;
    struct vks_err e;
    vks_status st = vks_cache_get(id, NULL, &aops, &a, &v, NULL, &e);
    bool ok = allow ? st == VKS_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0
                    : st == VKS_E_RESTRICTED && v.data == NULL;
    vks_secret_free(&v);
    return ok;
}

static int iterations;
static atomic_bool stop;

static void *mixed(void *arg)
{
    unsigned x = (unsigned)(uintptr_t)arg * 2246822519u + 7;
    for (int i = 0; i < iterations; i++) {
        x = x * 1103515245u + 12345u;
        char id[16];
        snprintf(id, sizeof id, "m%u", (x >> 16) % 8);
        if (!alookup(id, (x >> 24) % 3 != 0))
            return (void *)1;
    }
    return NULL;
}

static void *hammer(void *arg)
{
    unsigned x = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    for (int i = 0; i < iterations; i++) {
        x = x * 1103515245u + 12345u;
        char id[16];
        snprintf(id, sizeof id, "k%02u", (x >> 16) % 40);
        if (!lookup(id))
            return (void *)1;
    }
    return NULL;
}

static void *invalidator(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        vks_cache_invalidate("k07");
        vks_cache_invalidate_prefix("k1");
        struct vks_cache_stats st;
        vks_cache_get_stats(&st);
        usleep(500);
    }
    return NULL;
}

static void *one_key(void *arg)
{
    (void)arg;
    return lookup("single") ? NULL : (void *)1;
}

/* values replaced under hits (lock-free hit path): every fetch of r0..r3 makes generation g, a
 * value of one letter repeated to a length, both given by g, with secret_version g and custom
 * metadata naming g. A torn value, or a value with another value's metadata, shows. */
static atomic_int generation;
static atomic_ullong seen_hits;

static size_t gen_len(int g) { return 1 + (size_t)(g * 37) % 300; }

static vks_status gen_fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    (void)source;
    int g = atomic_fetch_add(&generation, 1) + 1;
    char v[301], meta[32];
    memset(v, 'a' + g % 26, gen_len(g));
    snprintf(meta, sizeof meta, "{\"g\":%d}", g);
    out->meta.kv_version = 2;
    out->meta.secret_version = g;
    if ((out->meta.custom_metadata_json = strdup(meta)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    return vks_secret_dup(v, gen_len(g), &out->value, err);
}

static const struct vks_cache_source_ops gops = { gen_fetch, NULL, NULL, NULL };

static bool gen_value_ok(const vks_secret *v, const struct vks_cache_info *info)
{
    if (info->meta == NULL || info->meta->custom_metadata_json == NULL)
        return false;
    int g = (int)info->meta->secret_version;
    char meta[32];
    snprintf(meta, sizeof meta, "{\"g\":%d}", g);
    if (g < 1 || v->len != gen_len(g) || strcmp(info->meta->custom_metadata_json, meta) != 0)
        return false;
    for (size_t i = 0; i < v->len; i++)
        if (v->data[i] != 'a' + g % 26)
            return false;
    return true;
}

static void *gen_reader(void *arg)
{
    unsigned x = (unsigned)(uintptr_t)arg * 2246822519u + 3;
    bool hashed = (uintptr_t)arg % 2 == 0; /* half the threads reuse their own slot */
    vks_secret v = VKS_SECRET_EMPTY;
    unsigned long long hits = 0;
    void *bad = NULL;
    for (int i = 0; i < iterations && bad == NULL; i++) {
        x = x * 1103515245u + 12345u;
        char id[8];
        snprintf(id, sizeof id, "r%u", (x >> 16) % 4);
        struct vks_cache_info info;
        struct vks_err e;
        vks_status st;
        if (hashed) {
            v.len = 0;
            st = vks_cache_get_hashed(id, strlen(id), vks_cache_identity_hash(id, strlen(id)), NULL,
                                      &gops, NULL, &v, &info, &e);
        } else {
            st = vks_cache_get(id, NULL, &gops, NULL, &v, &info, &e);
        }
        if (st != VKS_OK || !gen_value_ok(&v, &info))
            bad = (void *)1;
        hits += info.outcome == VKS_CACHE_HIT;
        if (hashed && v.data != NULL)
            vks_wipe(v.data, v.cap);
        else
            vks_secret_free(&v);
        vks_cache_info_release(&info);
    }
    vks_secret_free(&v);
    atomic_fetch_add(&seen_hits, hits);
    return bad;
}

/* replaces values under the readers: invalidations, a flush, and a capacity change now and then */
static void *gen_writer(void *arg)
{
    (void)arg;
    for (unsigned n = 0; !atomic_load(&stop); n++) {
        char id[8];
        snprintf(id, sizeof id, "r%u", n % 4);
        vks_cache_invalidate(id);
        if (n % 16 == 0)
            vks_cache_flush();
        if (n % 32 == 0) {
            struct vks_cache_config c;
            vks_cache_config_defaults(&c);
            c.capacity = n % 64 == 0 ? 3 : 24; /* 3: entries are evicted as well */
            c.refresh_fraction = 1.0;
            vks_cache_configure(&c, NULL);
        }
        usleep(200);
    }
    return NULL;
}

static int run_replaced(int nthreads)
{
    struct vks_cache_stats st0, st;
    vks_cache_get_stats(&st0);
    atomic_store(&stop, false);
    pthread_t w, *t = calloc((size_t)nthreads, sizeof *t);
    pthread_create(&w, NULL, gen_writer, NULL);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, gen_reader, (void *)(uintptr_t)(i + 1));
    int bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    atomic_store(&stop, true);
    pthread_join(w, NULL);
    free(t);
    vks_cache_get_stats(&st);
    unsigned long long hits = st.hits - st0.hits;
    if (bad == 0 && hits == atomic_load(&seen_hits) && hits > 0 && atomic_load(&generation) > 4) {
        printf("ok     %d threads hit 4 keys whose values are replaced meanwhile: every value whole and "
               "with its own metadata (%llu hits, counted exactly; %d fetches)\n", nthreads, hits,
               atomic_load(&generation));
        return 1;
    }
    printf("FAILED replaced values: %d threads saw a wrong value or metadata; %llu hits counted, %llu "
           "seen; %d fetches\n", bad, hits, atomic_load(&seen_hits), atomic_load(&generation));
    return 0;
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FORK_PHASE 0
#else
#define FORK_PHASE 1
#endif
#if FORK_PHASE
/* forks while threads hit: each child must hit, miss, and flush (a writer section: it would wait
 * forever for a reader record left marked by a thread that does not exist in the child) */
static void *fork_hitter(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop))
        if (!lookup("f1") || !lookup("f2"))
            return (void *)1;
    return NULL;
}

static int run_forks(int nthreads)
{
    lookup("f1");
    atomic_store(&stop, false);
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, fork_hitter, NULL);
    int bad_children = 0, forks = 20;
    for (int f = 0; f < forks; f++) {
        usleep(2000);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20); /* a hang fails the test instead of blocking it */
            bool ok = lookup("f1") && lookup("f1") && lookup("c1");
            ok = ok && vks_cache_flush() >= 1 && lookup("f1");
            struct vks_cache_stats st;
            vks_cache_get_stats(&st);
            _exit(ok && st.hits >= 1 ? 0 : 1);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad_children++;
    }
    atomic_store(&stop, true);
    int bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    free(t);
    if (bad == 0 && bad_children == 0) {
        printf("ok     %d forks while %d threads hit: every child hit, missed and flushed, the parent's "
               "values stayed right\n", forks, nthreads);
        return 1;
    }
    printf("FAILED forks while hitting: %d children failed or hung, %d threads saw a wrong value\n",
           bad_children, bad);
    return 0;
}
#endif

static int run_core(int nthreads, int iters)
{
    int passed = 0, failed = 0;
    iterations = iters;
    struct vks_cache_config c;
    vks_cache_config_defaults(&c);
    c.capacity = 24;
    c.refresh_fraction = 1.0;
    struct vks_err e;
    if (vks_cache_configure(&c, &e) != VKS_OK) {
        printf("configure: %s\n", e.msg);
        return 1;
    }
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    pthread_t inv;
    pthread_create(&inv, NULL, invalidator, NULL);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(uintptr_t)(i + 1));
    int bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    atomic_store(&stop, true);
    pthread_join(inv, NULL);
    free(t);
    struct vks_cache_stats st;
    vks_cache_get_stats(&st);
    if (bad == 0 && st.entries <= 24 && st.evictions > 0) {
        printf("ok     %d threads x %d lookups of 40 keys: all values right (%llu hits, %llu misses, "
               "%llu evictions, %llu coalesced)\n", nthreads, iters, (unsigned long long)st.hits,
               (unsigned long long)st.misses, (unsigned long long)st.evictions,
               (unsigned long long)st.coalesced);
        passed++;
    } else {
        printf("FAILED hammer: %d threads saw a wrong value, %zu entries, %llu evictions\n", bad,
               st.entries, (unsigned long long)st.evictions);
        failed++;
    }

    vks_cache_flush();
    atomic_store(&fetches, 0);
    uint64_t waits0 = st.waits;
    atomic_store(&block_until_waits, (int)waits0 + 64);
    pthread_t m[64];
    for (int i = 0; i < 64; i++)
        pthread_create(&m[i], NULL, one_key, NULL);
    bad = 0;
    for (int i = 0; i < 64; i++) {
        void *r;
        pthread_join(m[i], &r);
        bad += r != NULL;
    }
    if (bad == 0 && atomic_load(&fetches) == 1) {
        printf("ok     64 concurrent misses for one key made exactly one fetch\n");
        passed++;
    } else {
        printf("FAILED 64 concurrent misses: %d wrong values, %d fetches\n", bad, atomic_load(&fetches));
        failed++;
    }

    vks_cache_flush();
    atomic_store(&block_until_waits, 0);
    atomic_store(&stop, false);
    pthread_create(&inv, NULL, invalidator, NULL);
    t = calloc((size_t)nthreads, sizeof *t);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, mixed, (void *)(uintptr_t)(i + 1));
    bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    atomic_store(&stop, true);
    pthread_join(inv, NULL);
    free(t);
    for (int k = 0; k < 8; k++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", k);
        bad += !alookup(id, false) || vks_cache_test_slot(id, NULL) != NULL;
    }
    vks_cache_get_stats(&st);
    if (bad == 0 && st.values == 0 && st.refused > 0) {
        printf("ok     %d threads of admitted and refused callers: every answer right, no value left "
               "after a refusal (%llu refused, %llu cached values wiped by a refusal)\n",
               nthreads, (unsigned long long)st.refused, (unsigned long long)st.refused_wipes);
        passed++;
    } else {
        printf("FAILED admitted and refused callers: %d wrong answers, %zu values left, %llu refused\n",
               bad, st.values, (unsigned long long)st.refused);
        failed++;
    }
    vks_cache_flush();
    if (run_replaced(nthreads))
        passed++;
    else
        failed++;
#if FORK_PHASE
    /* (not under TSan: a child's miss starts its refresh thread, which TSan refuses after a
     * multi-threaded fork; not under ASan: its allocator can hang a child forked while another
     * thread allocates; see 36-resolve-fork.sh) */
    if (run_forks(nthreads < 4 ? nthreads : 4))
        passed++;
    else
        failed++;
#endif
    vks_cache_shutdown();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ lua mode */

static const char *script;
static pthread_barrier_t barrier;

/* barrier(): every thread's script waits here until all have arrived (then they start together) */
static int l_barrier(lua_State *L)
{
    (void)L;
    pthread_barrier_wait(&barrier);
    return 0;
}

static void *lua_thread(void *arg)
{
    int n = (int)(uintptr_t)arg;
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return strdup("cannot create a lua_State");
    luaL_openlibs(L);
    lua_pushinteger(L, n);
    lua_setglobal(L, "THREAD");
    lua_pushcfunction(L, l_barrier);
    lua_setglobal(L, "barrier");
    char *fail = NULL;
    if (luaL_dofile(L, script) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        fail = strdup(m ? m : "error");
    }
    lua_close(L);
    return fail;
}

static int run_lua(int nthreads, const char *path)
{
    script = path;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, lua_thread, (void *)(uintptr_t)(i + 1));
    int failed = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r != NULL) {
            printf("FAILED thread %d: %s\n", i + 1, (char *)r);
            free(r);
            failed++;
        }
    }
    free(t);
    if (failed == 0)
        printf("ok     %d threads, each with its own lua_State, got every value right\n", nthreads);
    printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
    return failed ? 1 : 0;
}

/* abort mode: runs SCRIPT in one lua_State (which keeps its handles open), then aborts, so that
 * the test can search the core file for secret bytes */
static int run_abort(const char *path)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dofile(L, path) != LUA_OK) {
        printf("script failed: %s\n", lua_tostring(L, -1));
        return 1;
    }
    printf("script done, aborting with the state alive\n");
    fflush(stdout);
    abort();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "abort") == 0)
        return run_abort(argv[2]);
    if (argc == 4 && strcmp(argv[1], "core") == 0)
        return run_core(atoi(argv[2]), atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "lua") == 0)
        return run_lua(atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: cache_threads core THREADS ITERATIONS | lua THREADS SCRIPT\n");
    return 2;
}
