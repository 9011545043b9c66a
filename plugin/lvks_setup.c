/*
 * lvks_setup: vault_keysource.setup{...}: reads every option first (core and extensions), prepares
 * all, then applies all or nothing (docs/lua-api.md "setup", docs/internals/lua-module.md).
 * Everything it holds while Lua code may raise is owned by a to-be-closed setup box.
 */
#include "lvks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_cache.h"
#include "vks_config.h"

#define SETUP_BOX "vault_keysource.setup_box"

#define MAX_SETUP_OPTS 64

/* Everything one vks.setup call holds while Lua code may still raise: owned by a to-be-closed
 * userdata, so an error anywhere (an __index that raises, out of memory) releases it at once. */
struct setup_box {
    struct vks_config cfg;
    struct vks_field fields[MAX_SETUP_OPTS]; /* the top-level options, read before any is applied */
    size_t nfields;
    struct lvks_memory mem;
    void *prepared[LVKS_EXT_MAX];
    bool done[LVKS_EXT_MAX]; /* committed or discarded */
};

static int setup_box_gc(lua_State *L)
{
    struct setup_box *b = luaL_checkudata(L, 1, SETUP_BOX);
    vks_config_clear(&b->cfg);
    for (int i = 0, n_ext = lvks_extension_count(); i < n_ext; i++) {
        if (!b->done[i] && b->prepared[i] != NULL && lvks_extension_at(i)->discard != NULL)
            lvks_extension_at(i)->discard(b->prepared[i]);
        b->prepared[i] = NULL;
        b->done[i] = true;
    }
    b->nfields = 0;
    return 0;
}

static void raise_err(lua_State *L, const struct vks_err *err)
{
    lua_pushfstring(L, "vault_keysource.setup: %s", err->msg);
    lua_error(L);
}

static bool is_ext_name(const char *name)
{
    for (int i = 0, n_ext = lvks_extension_count(); i < n_ext; i++)
        if (lvks_extension_at(i)->name != NULL && strcmp(lvks_extension_at(i)->name, name) == 0)
            return true;
    return false;
}

/* Phase 1, top level: every option name is a string without NUL bytes; the memory options are
 * parsed into b->mem; the others are kept as fields for phase 2 (their strings stay alive: the
 * options table holds them). Raw iteration: no metamethod runs here. */
static void read_top_level(lua_State *L, int opts, struct setup_box *b)
{
    struct vks_err err;
    vks_err_clear(&err);
    lua_pushnil(L);
    while (lua_next(L, opts) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, 1, "setup option names must be strings");
        const char *name = lvks_cstring(L, -2, "setup option name", NULL, VKS_E_CONFIG, &err);
        if (name == NULL)
            raise_err(L, &err);
        if (is_ext_name(name)) {
            lua_pop(L, 1);
            continue;
        }
        if (b->nfields == MAX_SETUP_OPTS) {
            vks_err_set(&err, VKS_E_CONFIG, "more than %d setup options", MAX_SETUP_OPTS);
            raise_err(L, &err);
        }
        struct vks_field *f = &b->fields[b->nfields++];
        lvks_to_field(L, -1, name, f);
        if (strcmp(name, "locked_bytes") == 0) {
            if (vks_parse_size(f, "setup option locked_bytes", &b->mem.locked_bytes, &err) != VKS_OK)
                raise_err(L, &err);
            b->mem.bytes_given = true;
        } else if (strcmp(name, "require_locked") == 0) {
            if (vks_parse_bool(f, "setup option require_locked", &b->mem.require_locked, &err) != VKS_OK)
                raise_err(L, &err);
            b->mem.require_given = true;
        }
        lua_pop(L, 1);
    }
}

/* Phase 1, extensions: each reads and validates its subtable into a slot of the box. */
static void prepare_extensions(lua_State *L, int opts, struct setup_box *b)
{
    struct vks_err err;
    vks_err_clear(&err);
    for (int i = 0, n_ext = lvks_extension_count(); i < n_ext; i++) {
        if (lvks_extension_at(i)->prepare == NULL)
            continue;
        const char *name = lvks_extension_at(i)->name != NULL ? lvks_extension_at(i)->name : "?";
        if (opts)
            lua_getfield(L, opts, name);
        else
            lua_pushnil(L);
        int top = lua_gettop(L);
        if (!lua_isnil(L, top) && !lua_istable(L, top))
            luaL_argerror(L, 1, lua_pushfstring(L, "setup option %s must be a table", name));
        b->prepared[i] = NULL;
        b->done[i] = false; /* from now on the box discards whatever prepare stores */
        vks_status st = lvks_extension_at(i)->prepare(L, top, &b->prepared[i], &b->mem, &err);
        lua_settop(L, top - 1);
        if (st != VKS_OK)
            raise_err(L, &err);
    }
}

/* Phase 2: the memory options, applied first because reading the configuration may put a token
 * into the arena, whose size cannot change under live secrets. *before is what to restore. */
static vks_status apply_memory(const struct lvks_memory *m, struct vks_secmem_status *before,
                               bool *changed, struct vks_err *err)
{
    *changed = false;
    vks_secmem_get_status(before);
    if (!m->bytes_given && !m->require_given)
        return VKS_OK;
    struct vks_secmem_config sm = { m->locked_bytes, m->require_locked };
    if (!m->require_given) {
        const char *env = getenv("VKS_REQUIRE_LOCKED");
        sm.require_locked = false;
        if (env != NULL && env[0] != '\0') {
            struct vks_field ef = { .name = "VKS_REQUIRE_LOCKED", .type = VKS_FT_STRING, .str = env,
                                    .len = strlen(env) };
            vks_status st = vks_parse_bool(&ef, "VKS_REQUIRE_LOCKED", &sm.require_locked, err);
            if (st != VKS_OK)
                return st;
        }
    }
    if (!m->bytes_given)
        sm.locked_bytes = before->initialised ? before->capacity : 0;
    else if (before->initialised && sm.locked_bytes <= before->capacity &&
             before->capacity - sm.locked_bytes < 4096)
        sm.locked_bytes = before->capacity; /* the same size once rounded to whole units */
    *changed = !before->initialised || sm.locked_bytes != before->capacity ||
               sm.require_locked != before->require_locked;
    vks_status st = vks_secmem_init(&sm, err);
    if (st == VKS_E_CONFIG && before->initialised && sm.locked_bytes != before->capacity)
        st = vks_err_set(err, VKS_E_CONFIG,
                         "setup option locked_bytes cannot resize the arena once secrets are stored "
                         "(set it in the first setup, or VKS_LOCKED_BYTES)");
    return st;
}

static void restore_memory(const struct vks_secmem_status *before)
{
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_secmem_config sm = { before->capacity, before->require_locked };
    /* back to what was in force (or what the first lookup would have chosen) */
    (void)vks_secmem_init(before->initialised ? &sm : NULL, &e);
}

/* Phase 2, C only: validate and build everything, then apply it in one step. On error nothing
 * was applied (the memory options are put back) and err says why. */
static vks_status setup_apply(struct setup_box *b, bool *changed, struct vks_err *err)
{
    int n_ext = lvks_extension_count();
    struct vks_secmem_status before;
    bool mem_changed = false;
    struct vks_resolver_prep *prep = NULL;
    vks_status st = apply_memory(&b->mem, &before, &mem_changed, err);
    if (st == VKS_OK)
        st = vks_config_from_env(&b->cfg, err);
    for (size_t i = 0; st == VKS_OK && i < b->nfields; i++)
        st = vks_config_set(&b->cfg, &b->fields[i], err);
    if (st == VKS_OK)
        st = vks_config_finish(&b->cfg, err);
    if (st == VKS_OK)
        st = vks_resolver_prepare(&b->cfg, &prep, err);
    /* the one step that may fail after this point changes nothing when it does */
    for (int i = 0; st == VKS_OK && i < n_ext; i++)
        if (lvks_extension_at(i)->apply != NULL && !b->done[i])
            st = lvks_extension_at(i)->apply(b->prepared[i], err);
    if (st != VKS_OK) {
        vks_resolver_discard(prep);
        vks_config_clear(&b->cfg); /* frees the token slots before the arena is put back */
        if (mem_changed)
            restore_memory(&before);
        return st;
    }
    *changed = vks_resolver_commit(prep);
    for (int i = 0; i < n_ext; i++) {
        if (b->done[i])
            continue;
        b->done[i] = true;
        void *p = b->prepared[i];
        b->prepared[i] = NULL;
        if (lvks_extension_at(i)->commit != NULL)
            lvks_extension_at(i)->commit(p, *changed);
        else if (p != NULL && lvks_extension_at(i)->discard != NULL)
            lvks_extension_at(i)->discard(p);
    }
    vks_config_clear(&b->cfg);
    return VKS_OK;
}

/*
 * vks.setup(opts) -> true, changed. Raises on any invalid option (a policy with a broken setup
 * should fail loudly at load time), and then nothing changed. Same options as the ones in force:
 * a no-op (changed=false). Phase 1 reads every option from Lua (Lua may raise: what it built is
 * in the to-be-closed setup box); phase 2 is C only: validates, builds, applies in one step.
 */
int lvks_setup(lua_State *L)
{
    int t = lua_type(L, 1);
    if (t != LUA_TTABLE && t != LUA_TNIL && t != LUA_TNONE)
        luaL_typeerror(L, 1, "table or nil (setup options)");
    lua_settop(L, 1);
    int opts = t == LUA_TTABLE ? 1 : 0;

    struct setup_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    for (int i = 0; i < LVKS_EXT_MAX; i++)
        b->done[i] = true;
    luaL_setmetatable(L, SETUP_BOX);
    int box = lua_gettop(L);
    lua_toclose(L, box);

    if (opts)
        read_top_level(L, opts, b);
    prepare_extensions(L, opts, b);

    struct vks_err err;
    vks_err_clear(&err);
    bool changed = false;
    if (setup_apply(b, &changed, &err) != VKS_OK)
        raise_err(L, &err);
    /* close the (now empty) box with lua_closeslot, not lua_settop: Lua 5.4.4's settop keeps a
     * stale stack pointer when __close reallocates the stack (fixed in 5.4.5) */
    lua_closeslot(L, box);
    lua_settop(L, box - 1);
    for (int i = 0, n_ext = lvks_extension_count(); i < n_ext; i++)
        if (lvks_extension_at(i)->after_setup != NULL)
            lvks_extension_at(i)->after_setup(L);
    lua_pushboolean(L, 1);
    lua_pushboolean(L, changed);
    return 2;
}

void lvks_setup_open(lua_State *L) { lvks_new_box_meta(L, SETUP_BOX, setup_box_gc); }
