/*
 * lvks_cache: the cache's Lua functions (vks.invalidate, vks.flush, vks.stats,
 * vks.resolve_handle with its handle userdata) and the `cache = {...}` subtable of vks.setup.
 * A thin binding over src/vks_cache.c (docs/internals/cache.md, docs/lua-api.md).
 *
 * Handles: a full userdata whose memory starts with a vks_secret (stable layout, so a host written
 * in C can consume the bytes without a Lua string: check the metatable name "vks.secret", then
 * read the vks_secret at the start of the block). The value stays in its arena slot; :reveal()
 * makes the only Lua string copy; __close/__gc/:close() wipe the slot (idempotent).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvks.h"
#include "vks_cache.h"
#include "vks_config.h"
#include "vks_fork.h"

#define HANDLE_MT "vks.secret"

struct handle {
    vks_secret s; /* first member: the layout hosts rely on */
    int closed;
    unsigned long gen; /* vks_secmem_generation() when filled: a forked child reads zeros */
};

/* ------------------------------------------------------------------ handles */

static struct handle *check_handle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, HANDLE_MT);
}

static struct handle *check_open_handle(lua_State *L, int idx)
{
    struct handle *h = check_handle(L, idx);
    if (h->closed)
        luaL_argerror(L, idx, "the secret handle is closed");
    if (h->gen != vks_secmem_generation())
        luaL_argerror(L, idx, "the secret handle was wiped by fork() (it was made in the parent): resolve again");
    return h;
}

static int h_reveal(lua_State *L)
{
    struct handle *h = check_open_handle(L, 1);
    lua_pushlstring(L, h->s.data != NULL ? (const char *)h->s.data : "", h->s.len);
    return 1;
}

static int h_len(lua_State *L)
{
    struct handle *h = check_open_handle(L, 1);
    lua_pushinteger(L, (lua_Integer)h->s.len);
    return 1;
}

static int h_closed(lua_State *L)
{
    lua_pushboolean(L, check_handle(L, 1)->closed);
    return 1;
}

static int h_close(lua_State *L)
{
    struct handle *h = check_handle(L, 1);
    vks_secret_free(&h->s);
    h->closed = 1;
    return 0;
}

static int h_tostring(lua_State *L)
{
    struct handle *h = check_handle(L, 1);
    if (h->closed)
        lua_pushliteral(L, "vks.secret(closed)");
    else
        lua_pushfstring(L, "vks.secret(%d bytes)", (int)h->s.len);
    return 1;
}

static void handle_meta(lua_State *L)
{
    if (luaL_newmetatable(L, HANDLE_MT)) {
        static const luaL_Reg methods[] = {
            { "reveal", h_reveal }, { "len", h_len }, { "close", h_close }, { "closed", h_closed },
            { NULL, NULL },
        };
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, h_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, h_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, h_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, h_len);
        lua_setfield(L, -2, "__len");
        lua_pushliteral(L, "vks.secret");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

/* vks.resolve_handle(keysource [, ctx]) -> handle | nil, message, code */
static int l_resolve_handle(lua_State *L)
{
    lvks_check_keysource_arg(L, 1);
    lua_settop(L, 2);
    /* the handle is the box: if anything below raises, __gc wipes what it holds */
    struct handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->s = VKS_SECRET_EMPTY;
    h->closed = 0;
    luaL_setmetatable(L, HANDLE_MT);
    struct vks_err err;
    vks_err_clear(&err);
    h->gen = vks_secmem_generation();
    vks_status st = lvks_lookup(L, 1, 2, "resolve_handle", &h->s, NULL, &err);
    if (st != VKS_OK) {
        vks_secret_free(&h->s);
        h->closed = 1;
        return lvks_push_failure(L, st, &err);
    }
    return 1;
}

/* ------------------------------------------------------------------ invalidate, flush, stats */

/* vks.invalidate(keysource) -> number of entries dropped | nil, message, code */
static int l_invalidate(lua_State *L)
{
    lvks_check_keysource_arg(L, 1);
    lua_settop(L, 1);
    struct vks_keysource *ks = lvks_push_keysource_box(L);
    struct vks_err err;
    vks_err_clear(&err);
    vks_status st = lvks_to_keysource(L, 1, ks, &err);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &err);
    if (ks->kind != VKS_KS_VAULT) {
        lua_pushinteger(L, 0); /* files (re-read every time), key_data and events are never cached */
        return 1;
    }
    char id[4096 + 64];
    st = vks_resolver_identity(ks, id, sizeof id, &err);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &err);
    lua_pushinteger(L, (lua_Integer)vks_cache_invalidate(id));
    return 1;
}

/* vks.flush() -> number of entries dropped */
static int l_flush(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)vks_cache_flush());
    return 1;
}

static void set_int(lua_State *L, const char *k, unsigned long long v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

/* vks.stats() -> table (counters, sizes, configuration and the arena's protection status) */
static int l_stats(lua_State *L)
{
    struct vks_cache_stats s;
    struct vks_cache_config c;
    struct vks_secmem_status m;
    vks_cache_get_stats(&s);
    vks_cache_get_config(&c);
    vks_secmem_get_status(&m);
    if (!m.initialised) {
        /* report the protections the arena really gets: initialise it (defaults + environment,
         * as the first lookup would) */
        vks_secret probe = VKS_SECRET_EMPTY;
        if (vks_secret_alloc(1, &probe, NULL) == VKS_OK)
            vks_secret_free(&probe);
        vks_secmem_get_status(&m);
    }
    lua_createtable(L, 0, 32);
    set_int(L, "hits", s.hits);
    set_int(L, "misses", s.misses);
    set_int(L, "stale", s.stale);
    set_int(L, "negative", s.negative);
    set_int(L, "errors", s.errors);
    set_int(L, "refreshes", s.refreshes);
    set_int(L, "refresh_failures", s.refresh_failures);
    set_int(L, "fetches", s.fetches);
    set_int(L, "waits", s.waits);
    set_int(L, "coalesced", s.coalesced);
    set_int(L, "evictions", s.evictions);
    set_int(L, "expirations", s.expirations);
    set_int(L, "revocations", s.revocations);
    set_int(L, "invalidations", s.invalidations);
    set_int(L, "refused", s.refused);
    set_int(L, "refused_wipes", s.refused_wipes);
    set_int(L, "entries", s.entries);
    set_int(L, "values", s.values);
    set_int(L, "value_bytes", s.value_bytes);
    set_int(L, "capacity", s.capacity);
    set_int(L, "locked_bytes", m.locked ? m.capacity : 0);
    set_int(L, "arena_bytes", m.capacity);
    set_int(L, "arena_in_use", m.in_use);
    set_bool(L, "require_locked", m.require_locked);
    lua_pushnumber(L, c.ttl_s);
    lua_setfield(L, -2, "ttl");
    lua_pushnumber(L, c.max_stale_s);
    lua_setfield(L, -2, "max_stale");
    lua_pushnumber(L, c.neg_ttl_s);
    lua_setfield(L, -2, "neg_ttl");
    lua_pushnumber(L, c.refresh_fraction);
    lua_setfield(L, -2, "refresh");
    lua_createtable(L, 0, 4);
    set_bool(L, "locked", m.locked);
    set_bool(L, "dontdump", m.dontdump);
    set_bool(L, "guard_pages", m.guard_pages);
    set_bool(L, "wipe_on_fork", m.wipe_on_fork);
    lua_setfield(L, -2, "protection");
    struct vks_fork_status fs; /* credentials kept across fork (vks_fork) */
    vks_fork_get_status(&fs);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, vks_fork_mode_name(fs.mode));
    lua_setfield(L, -2, "mode");
    set_int(L, "generation", fs.generation);
    set_bool(L, "kept_locked", fs.kept_locked);
    set_int(L, "kept_bytes", fs.kept_capacity);
    set_int(L, "kept_in_use", fs.kept_in_use);
    set_int(L, "kept_fallbacks", fs.kept_fallbacks);
    lua_setfield(L, -2, "fork");
    return 1;
}

/* ------------------------------------------------------------------ setup{cache = {...}} */

struct prepared {
    struct vks_cache_config cfg;
};

static const char *const cache_opts[] = {
    "ttl", "max_stale", "neg_ttl", "refresh", "capacity", "locked_bytes", "require_locked", NULL,
};

static vks_status seconds_opt(lua_State *L, int t, const char *name, double *out, struct vks_err *err)
{
    int ty = lua_getfield(L, t, name);
    vks_status st = VKS_OK;
    if (ty != LUA_TNIL) {
        char what[64];
        snprintf(what, sizeof what, "setup option cache.%s", name);
        struct vks_field f;
        lvks_to_field(L, -1, name, &f);
        long ms = 0;
        if (ty == LUA_TNUMBER) {
            double d = lua_tonumber(L, -1); /* plain numbers are seconds, fractions allowed */
            if (!isfinite(d) || d < 0 || d > 1e9)
                st = vks_err_set(err, VKS_E_CONFIG, "%s must be from 0 to 1e9 seconds", what);
            else
                *out = d;
        } else if ((st = vks_parse_duration_ms(&f, what, &ms, err)) == VKS_OK) {
            *out = (double)ms / 1000.0;
        }
    }
    lua_pop(L, 1);
    return st;
}

static vks_status cache_names(lua_State *L, int idx, struct vks_err *err)
{
    /* unknown names are typos */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lvks_cstring(L, -2, "setup option cache: a name", NULL, VKS_E_CONFIG, err);
        if (k == NULL) {
            lua_pop(L, 2);
            return VKS_E_CONFIG;
        }
        bool known = false;
        for (int i = 0; cache_opts[i] != NULL; i++)
            known = known || strcmp(k, cache_opts[i]) == 0;
        if (!known) {
            vks_status st = vks_err_set(err, VKS_E_CONFIG, "unknown setup option cache.%s", k);
            lua_pop(L, 2);
            return st;
        }
        lua_pop(L, 1);
    }
    return VKS_OK;
}

/* cache.locked_bytes / cache.require_locked: the same meaning as the top-level options; the
 * binding applies them once (they must agree with the top-level ones when both are given). */
static vks_status cache_memory(lua_State *L, int idx, struct lvks_memory *mem, struct vks_err *err)
{
    vks_status st = VKS_OK;
    struct vks_field f;
    if (lua_getfield(L, idx, "locked_bytes") != LUA_TNIL) {
        lvks_to_field(L, -1, "locked_bytes", &f);
        size_t n = 0;
        st = vks_parse_size(&f, "setup option cache.locked_bytes", &n, err);
        if (st == VKS_OK && mem->bytes_given && mem->locked_bytes != n)
            st = vks_err_set(err, VKS_E_CONFIG, "setup options locked_bytes and cache.locked_bytes disagree");
        mem->locked_bytes = n;
        mem->bytes_given = true;
    }
    lua_pop(L, 1);
    if (st != VKS_OK)
        return st;
    if (lua_getfield(L, idx, "require_locked") != LUA_TNIL) {
        lvks_to_field(L, -1, "require_locked", &f);
        bool r = false;
        st = vks_parse_bool(&f, "setup option cache.require_locked", &r, err);
        if (st == VKS_OK && mem->require_given && mem->require_locked != r)
            st = vks_err_set(err, VKS_E_CONFIG,
                             "setup options require_locked and cache.require_locked disagree");
        mem->require_locked = r;
        mem->require_given = true;
    }
    lua_pop(L, 1);
    return st;
}

static vks_status cache_prepare(lua_State *L, int idx, void **prepared, struct lvks_memory *mem,
                                struct vks_err *err)
{
    /* owned by the setup box from here on: any Lua call below may raise */
    struct prepared *p = calloc(1, sizeof *p);
    if (p == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    *prepared = p;
    /* no cache table: setup declares the whole configuration, so back to defaults + env */
    vks_cache_config_defaults(&p->cfg);
    vks_status st = vks_cache_config_from_env(&p->cfg, err);
    if (st != VKS_OK || lua_isnil(L, idx))
        return st;
    if ((st = cache_names(L, idx, err)) != VKS_OK)
        return st;
    if ((st = seconds_opt(L, idx, "ttl", &p->cfg.ttl_s, err)) != VKS_OK ||
        (st = seconds_opt(L, idx, "max_stale", &p->cfg.max_stale_s, err)) != VKS_OK ||
        (st = seconds_opt(L, idx, "neg_ttl", &p->cfg.neg_ttl_s, err)) != VKS_OK)
        return st;
    if (lua_getfield(L, idx, "refresh") != LUA_TNIL) {
        int isnum = 0;
        double d = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(d > 0 && d <= 1))
            st = vks_err_set(err, VKS_E_CONFIG,
                             "setup option cache.refresh must be a number in (0, 1] (a fraction of ttl)");
        else
            p->cfg.refresh_fraction = d;
    }
    lua_pop(L, 1);
    if (st != VKS_OK)
        return st;
    if (lua_getfield(L, idx, "capacity") != LUA_TNIL) {
        struct vks_field f;
        lvks_to_field(L, -1, "capacity", &f);
        size_t n = 0;
        if ((st = vks_parse_size(&f, "setup option cache.capacity", &n, err)) == VKS_OK)
            p->cfg.capacity = n;
    }
    lua_pop(L, 1);
    if (st == VKS_OK)
        st = cache_memory(L, idx, mem, err);
    /* validated now, so that commit cannot fail and setup raises before anything is applied */
    if (st == VKS_OK)
        st = vks_cache_config_check(&p->cfg, err);
    return st;
}

static void cache_commit(void *prepared, int changed)
{
    struct prepared *p = prepared;
    struct vks_err err;
    vks_err_clear(&err);
    /* validated by prepare (vks_cache_config_check): cannot fail */
    (void)vks_cache_configure(&p->cfg, &err);
    free(p);
    /* a changed core configuration already flushed the cache (vks_resolver_setup) */
    (void)changed;
}

static void cache_discard(void *prepared) { free(prepared); }

static void cache_open(lua_State *L, int mod)
{
    handle_meta(L);
    static const luaL_Reg funcs[] = {
        { "resolve_handle", l_resolve_handle },
        { "invalidate", l_invalidate },
        { "flush", l_flush },
        { "stats", l_stats },
        { NULL, NULL },
    };
    lua_pushvalue(L, mod);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

static const struct lvks_extension cache_ext = {
    .name = "cache",
    .open = cache_open,
    .prepare = cache_prepare,
    .commit = cache_commit,
    .discard = cache_discard,
};

__attribute__((constructor)) static void cache_register(void)
{
    lvks_register_extension(&cache_ext);
}
