/*
 * lvks: the vault_keysource Lua module: luaopen_vault_keysource, setup, resolve,
 * set_event_handler, and the helpers of lvks.h. A thin binding: type checks and conversion only
 * (docs/lua-api.md, docs/internals/lua-module.md).
 */
#include "lvks.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_config.h"

#define KS_BOX "vault_keysource.keysource_box"
#define SECRET_BOX "vault_keysource.secret_box"
#define SETUP_BOX "vault_keysource.setup_box"
#define EVENT_HANDLER_KEY "vault_keysource.event_handler"

/* ------------------------------------------------------------------ extensions */

/* Extensions register from constructors while the module is being loaded; Lua states on other
 * threads read the table afterwards. The count is published with release/acquire ordering so that
 * a reader that sees N entries also sees their pointers (the loader's own lock makes this true in
 * practice, but ThreadSanitizer cannot see that lock). */
static const struct lvks_extension *exts[LVKS_EXT_MAX];
static _Atomic int ext_count;

void lvks_register_extension(const struct lvks_extension *ext)
{
    int n = atomic_load_explicit(&ext_count, memory_order_relaxed);
    for (int i = 0; ext != NULL && ext->apply != NULL && i < n; i++)
        if (exts[i]->apply != NULL) {
            /* setup is all or nothing only with one fallible step (lvks.h): a programming error */
            fprintf(stderr, "vault_keysource: extensions %s and %s both have an apply step\n",
                    exts[i]->name ? exts[i]->name : "?", ext->name ? ext->name : "?");
            abort();
        }
    if (ext != NULL && n < LVKS_EXT_MAX) {
        exts[n] = ext;
        atomic_store_explicit(&ext_count, n + 1, memory_order_release);
    }
}

static inline int extensions(void)
{
    return atomic_load_explicit(&ext_count, memory_order_acquire);
}

/* ------------------------------------------------------------------ codes and failures */

const char *lvks_code(vks_status st)
{
    switch (st) {
    case VKS_E_INVALID_ARG:
    case VKS_E_INTERNAL:
        return "internal";
    default:
        return vks_status_code(st);
    }
}

int lvks_push_failure(lua_State *L, vks_status st, const struct vks_err *err)
{
    lua_pushnil(L);
    if (err != NULL && err->msg[0] != '\0')
        lua_pushstring(L, err->msg);
    else
        lua_pushstring(L, vks_status_code(st));
    lua_pushstring(L, lvks_code(st));
    return 3;
}

/* ------------------------------------------------------------------ boxes */

static int ks_box_gc(lua_State *L)
{
    struct vks_keysource *ks = luaL_checkudata(L, 1, KS_BOX);
    vks_keysource_clear(ks);
    return 0;
}

static int secret_box_gc(lua_State *L)
{
    vks_secret *s = luaL_checkudata(L, 1, SECRET_BOX);
    vks_secret_free(s);
    return 0;
}

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
    for (int i = 0, n_ext = extensions(); i < n_ext; i++) {
        if (!b->done[i] && b->prepared[i] != NULL && exts[i]->discard != NULL)
            exts[i]->discard(b->prepared[i]);
        b->prepared[i] = NULL;
        b->done[i] = true;
    }
    b->nfields = 0;
    return 0;
}

static void new_box_meta(lua_State *L, const char *name, lua_CFunction gc)
{
    if (luaL_newmetatable(L, name)) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__close");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

struct vks_keysource *lvks_push_keysource_box(lua_State *L)
{
    struct vks_keysource *ks = lua_newuserdatauv(L, sizeof *ks, 0);
    memset(ks, 0, sizeof *ks);
    ks->kv_version = VKS_KV_UNSET;
    luaL_setmetatable(L, KS_BOX);
    return ks;
}

vks_secret *lvks_push_secret_box(lua_State *L)
{
    vks_secret *s = lua_newuserdatauv(L, sizeof *s, 0);
    *s = VKS_SECRET_EMPTY;
    luaL_setmetatable(L, SECRET_BOX);
    return s;
}

/* ------------------------------------------------------------------ conversions */

const char *lvks_cstring(lua_State *L, int idx, const char *what, size_t *len, vks_status code,
                         struct vks_err *err)
{
    size_t n = 0;
    if (len != NULL)
        *len = 0;
    if (lua_type(L, idx) != LUA_TSTRING) {
        vks_err_set(err, code, "%s must be a string, not a %s", what, luaL_typename(L, idx));
        return NULL;
    }
    const char *s = lua_tolstring(L, idx, &n);
    const char *nul = memchr(s, '\0', n);
    if (nul == NULL) {
        if (len != NULL)
            *len = n;
        return s;
    }
    size_t pre = (size_t)(nul - s);
    if (pre > 0 && pre <= 64 && !vks_has_control(s, pre))
        vks_err_set(err, code, "%s contains a NUL byte (after \"%.*s\")", what, (int)pre, s);
    else
        vks_err_set(err, code, "%s contains a NUL byte", what);
    return NULL;
}

void lvks_to_field(lua_State *L, int idx, const char *name, struct vks_field *f)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        f->type = VKS_FT_STRING;
        f->str = lua_tolstring(L, idx, &f->len);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            f->type = VKS_FT_INTEGER;
            f->ival = (long long)lua_tointeger(L, idx);
        } else {
            lua_Number d = lua_tonumber(L, idx);
            f->dval = (double)d;
            f->type = VKS_FT_NUMBER;
            if (d >= -9.0e15 && d <= 9.0e15 && d == (lua_Number)(long long)d) {
                f->type = VKS_FT_INTEGER; /* 2.0 counts as 2 */
                f->ival = (long long)d;
            }
        }
        break;
    case LUA_TBOOLEAN:
        f->type = VKS_FT_BOOLEAN;
        f->bval = lua_toboolean(L, idx);
        break;
    case LUA_TTABLE:
        f->type = VKS_FT_TABLE;
        f->ival = (long long)lua_rawlen(L, idx);
        break;
    default:
        f->type = VKS_FT_OTHER;
        f->type_name = luaL_typename(L, idx);
        break;
    }
}

void lvks_check_keysource_arg(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TTABLE)
        luaL_typeerror(L, idx, "keysource (a file path string or a table)");
}

#define MAX_KS_FIELDS 64

vks_status lvks_to_keysource(lua_State *L, int idx, struct vks_keysource *ks, struct vks_err *err)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *p = lua_tolstring(L, idx, &len);
        return vks_keysource_from_path(p, len, ks, err);
    }
    struct vks_field fields[MAX_KS_FIELDS];
    size_t n = 0;
    luaL_checkstack(L, 2 * MAX_KS_FIELDS + 4, "keysource table");
    int base = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) { /* non-string keys are ignored like unknown keys */
            lua_pop(L, 1);
            continue;
        }
        if (n == MAX_KS_FIELDS) {
            lua_settop(L, base);
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource table has more than %d fields",
                               MAX_KS_FIELDS);
        }
        /* a name with a NUL byte would reach C cut short ("vault_path\0x" as vault_path) */
        const char *name = lvks_cstring(L, -2, "keysource field name", NULL, VKS_E_BAD_KEYSOURCE, err);
        if (name == NULL) {
            lua_settop(L, base);
            return VKS_E_BAD_KEYSOURCE;
        }
        /* keep key and value on the stack (strings stay alive); push a copy of the key for next */
        lvks_to_field(L, -1, name, &fields[n++]);
        lua_pushvalue(L, -2);
    }
    vks_status st = vks_keysource_from_fields(fields, n, ks, err);
    lua_settop(L, base);
    return st;
}

static const char *const ctx_fields[] = { "domain", "site_name", "username", "destination", "tag" };
static const char *const ctx_what[] = { "ctx.domain", "ctx.site_name", "ctx.username", "ctx.destination",
                                        "ctx.tag" };

vks_status lvks_check_ctx(lua_State *L, int idx, struct vks_ctx *ctx, struct vks_err *err)
{
    memset(ctx, 0, sizeof *ctx);
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    luaL_checkstack(L, 6, "ctx");
    if (t == LUA_TNONE || t == LUA_TNIL) {
        for (int i = 0; i < 5; i++)
            lua_pushnil(L);
        return VKS_OK;
    }
    if (t != LUA_TTABLE)
        luaL_typeerror(L, idx, "nil or table (ctx)");
    const char **dst[] = { &ctx->domain, &ctx->site_name, &ctx->username, &ctx->destination, &ctx->tag };
    for (int i = 0; i < 5; i++) {
        int ft = lua_getfield(L, idx, ctx_fields[i]);
        if (ft != LUA_TSTRING && ft != LUA_TNIL)
            luaL_argerror(L, idx, lua_pushfstring(L, "ctx.%s must be a string, not a %s", ctx_fields[i],
                                                  luaL_typename(L, -1)));
    }
    /* all types checked (misuse raised above); now the contents, the first bad one reported */
    vks_status st = VKS_OK;
    for (int i = 0; i < 5; i++) {
        int at = lua_gettop(L) - 4 + i;
        if (lua_isnil(L, at))
            continue;
        struct vks_err e;
        vks_err_clear(&e);
        *dst[i] = lvks_cstring(L, at, ctx_what[i], NULL, VKS_E_BAD_KEYSOURCE, &e);
        if (*dst[i] == NULL && st == VKS_OK) {
            st = VKS_E_BAD_KEYSOURCE;
            if (err != NULL)
                *err = e;
        }
    }
    return st;
}

/* ------------------------------------------------------------------ event handler */

static int l_set_event_handler(lua_State *L)
{
    int t = lua_type(L, 1);
    if (t != LUA_TFUNCTION && t != LUA_TNIL && t != LUA_TNONE)
        luaL_typeerror(L, 1, "function or nil");
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, EVENT_HANDLER_KEY);
    return 0;
}

/*
 * Runs this state's event handler for an EVENT keysource: handler(event_name, event_args).
 * It returns the secret as a string, or nil [, message [, code]]. Its error text is never used
 * (it could hold anything); a raised error counts as unavailable.
 */
static void run_event_handler(lua_State *L, int ks_idx, const struct vks_keysource *ks,
                              struct vks_event_result *ev)
{
    memset(ev, 0, sizeof *ev);
    int top = lua_gettop(L);
    luaL_checkstack(L, 4, "event handler");
    if (lua_getfield(L, LUA_REGISTRYINDEX, EVENT_HANDLER_KEY) != LUA_TFUNCTION) {
        ev->status = VKS_E_BAD_KEYSOURCE;
        snprintf(ev->msg, sizeof ev->msg,
                 "no event handler is registered in this Lua state (vks.set_event_handler)");
        goto out;
    }
    lua_pushstring(L, ks->event_name);
    lua_getfield(L, ks_idx, "event_args");
    if (lua_pcall(L, 2, 3, 0) != LUA_OK) {
        ev->status = VKS_E_UNAVAILABLE;
        snprintf(ev->msg, sizeof ev->msg, "the event handler raised an error (its text is not shown)");
        goto out;
    }
    if (lua_type(L, -3) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -3, &len);
        struct vks_err e;
        vks_err_clear(&e);
        if (len > VKS_SECRET_MAX) {
            ev->status = VKS_E_BAD_RESPONSE;
            snprintf(ev->msg, sizeof ev->msg, "the event handler returned more than %d bytes", VKS_SECRET_MAX);
        } else if ((ev->status = vks_secret_dup(s, len, &ev->value, &e)) != VKS_OK) {
            snprintf(ev->msg, sizeof ev->msg, "no locked memory for the event handler's value");
        }
    } else if (lua_isnil(L, -3)) {
        vks_status code = VKS_E_NOT_FOUND;
        struct vks_err ce;
        const char *name = lvks_cstring(L, -1, "code", NULL, VKS_E_NOT_FOUND, &ce);
        if (name != NULL) { /* "not_found\0x" is no code */
            vks_status c = vks_status_from_code(name);
            if (c != VKS_STATUS_COUNT && c != VKS_OK && c < VKS_E_INVALID_ARG)
                code = c;
        }
        ev->status = code;
        snprintf(ev->msg, sizeof ev->msg, "the event handler returned no value");
    } else {
        ev->status = VKS_E_BAD_RESPONSE;
        snprintf(ev->msg, sizeof ev->msg, "the event handler returned a %s, not a string",
                 luaL_typename(L, -3));
    }
out:
    lua_settop(L, top);
}

/* ------------------------------------------------------------------ lookups */

vks_status lvks_lookup(lua_State *L, int ks_idx, int ctx_idx, const char *api, vks_secret *out,
                       struct vks_resolve_info *info, struct vks_err *err)
{
    ks_idx = lua_absindex(L, ks_idx);
    ctx_idx = lua_absindex(L, ctx_idx);
    int top = lua_gettop(L);
    /* misuse first: nothing allocated yet */
    lvks_check_keysource_arg(L, ks_idx);
    struct vks_ctx ctx;
    vks_err_clear(err);
    vks_status cst = lvks_check_ctx(L, ctx_idx, &ctx, err);

    struct vks_keysource *ks = lvks_push_keysource_box(L);
    /* a ctx that cannot be read fails the lookup like a malformed keysource (audited as such) */
    vks_status pst = cst != VKS_OK ? cst : lvks_to_keysource(L, ks_idx, ks, err);

    /* the event handler runs before the core (the core never calls Lua); its value is boxed */
    struct vks_event_result ev;
    memset(&ev, 0, sizeof ev);
    vks_secret *evbox = NULL;
    if (pst == VKS_OK && ks->kind == VKS_KS_EVENT) {
        evbox = lvks_push_secret_box(L);
        run_event_handler(L, ks_idx, ks, &ev);
        *evbox = ev.value; /* owned by the box until vks_resolve takes it */
    }

    for (int i = 0, n_ext = extensions(); i < n_ext; i++)
        if (exts[i]->before_lookup != NULL)
            exts[i]->before_lookup(L);

    struct vks_resolve_req req = { .api = api, .ks = pst == VKS_OK ? ks : NULL, .ctx = &ctx,
                                   .event = pst == VKS_OK && ks->kind == VKS_KS_EVENT ? &ev : NULL };
    vks_status st = vks_resolve(&req, out, info, err);
    if (evbox != NULL) {
        /* vks_resolve took the value (or it is still ours): the box must not free it twice */
        if (ev.value.data == NULL)
            *evbox = VKS_SECRET_EMPTY;
        else
            *evbox = ev.value;
    }

    for (int i = 0, n_ext = extensions(); i < n_ext; i++) {
        if (exts[i]->after_lookup == NULL)
            continue;
        struct vks_err aerr;
        vks_err_clear(&aerr);
        if (exts[i]->after_lookup(L, &aerr) != VKS_OK && st == VKS_OK) {
            vks_secret_free(out); /* refused after the fact: the value is wiped */
            *err = aerr;
            st = aerr.status;
        }
    }

    vks_keysource_clear(ks);
    if (evbox != NULL)
        vks_secret_free(evbox);
    lua_settop(L, top);
    return st;
}

/* vks.resolve(keysource [, ctx]) -> secret | nil, message, code */
static int l_resolve(lua_State *L)
{
    lvks_check_keysource_arg(L, 1);
    lua_settop(L, 2);
    vks_secret *box = lvks_push_secret_box(L);
    struct vks_err err;
    vks_status st = lvks_lookup(L, 1, 2, "resolve", box, NULL, &err);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &err);
    /* the one and only copy into a Lua string, then the slot is wiped */
    lua_pushlstring(L, (const char *)box->data, box->len);
    vks_secret_free(box);
    return 1;
}

/* ------------------------------------------------------------------ setup */

static void raise_err(lua_State *L, const struct vks_err *err)
{
    lua_pushfstring(L, "vault_keysource.setup: %s", err->msg);
    lua_error(L);
}

static bool is_ext_name(const char *name)
{
    for (int i = 0, n_ext = extensions(); i < n_ext; i++)
        if (exts[i]->name != NULL && strcmp(exts[i]->name, name) == 0)
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
    for (int i = 0, n_ext = extensions(); i < n_ext; i++) {
        if (exts[i]->prepare == NULL)
            continue;
        const char *name = exts[i]->name != NULL ? exts[i]->name : "?";
        if (opts)
            lua_getfield(L, opts, name);
        else
            lua_pushnil(L);
        int top = lua_gettop(L);
        if (!lua_isnil(L, top) && !lua_istable(L, top))
            luaL_argerror(L, 1, lua_pushfstring(L, "setup option %s must be a table", name));
        b->prepared[i] = NULL;
        b->done[i] = false; /* from now on the box discards whatever prepare stores */
        vks_status st = exts[i]->prepare(L, top, &b->prepared[i], &b->mem, &err);
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
    int n_ext = extensions();
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
        if (exts[i]->apply != NULL && !b->done[i])
            st = exts[i]->apply(b->prepared[i], err);
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
        if (exts[i]->commit != NULL)
            exts[i]->commit(p, *changed);
        else if (p != NULL && exts[i]->discard != NULL)
            exts[i]->discard(p);
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
static int l_setup(lua_State *L)
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
    for (int i = 0, n_ext = extensions(); i < n_ext; i++)
        if (exts[i]->after_setup != NULL)
            exts[i]->after_setup(L);
    lua_pushboolean(L, 1);
    lua_pushboolean(L, changed);
    return 2;
}

/* ------------------------------------------------------------------ module */

/*
 * The runtime, the arena and (later) background threads are process-wide and outlive any one
 * lua_State; Lua unloads C libraries when a state closes, so the module pins itself once.
 */
static const char pin_anchor = 0;

static void pin_module(void)
{
    Dl_info info;
    if (dladdr(&pin_anchor, &info) != 0 && info.dli_fname != NULL)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

static const luaL_Reg funcs[] = {
    { "setup", l_setup },
    { "resolve", l_resolve },
    { "set_event_handler", l_set_event_handler },
    { NULL, NULL },
};

__attribute__((visibility("default"))) int luaopen_vault_keysource(lua_State *L)
{
    pthread_once(&pin_once, pin_module);
    new_box_meta(L, KS_BOX, ks_box_gc);
    new_box_meta(L, SECRET_BOX, secret_box_gc);
    new_box_meta(L, SETUP_BOX, setup_box_gc);
    luaL_newlib(L, funcs);
    int mod = lua_gettop(L);
    lua_pushliteral(L, "vault_keysource 0.1");
    lua_setfield(L, mod, "_VERSION");
    for (int i = 0, n_ext = extensions(); i < n_ext; i++)
        if (exts[i]->open != NULL) {
            exts[i]->open(L, mod);
            lua_settop(L, mod);
        }
    return 1;
}
