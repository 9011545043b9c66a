/*
 * lvks: the vault_keysource Lua module: luaopen_vault_keysource, resolve, set_event_handler,
 * and the helpers of lvks.h (setup is in lvks_setup.c). A thin binding: type checks and conversion only
 * (docs/lua-api.md, docs/internals/lua-module.md).
 */
#include "lvks.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_cache.h"
#include "vks_config.h"

#define KS_BOX "vault_keysource.keysource_box"
#define SECRET_BOX "vault_keysource.secret_box"
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

int lvks_extension_count(void) { return extensions(); }

const struct lvks_extension *lvks_extension_at(int i) { return exts[i]; }

/* ------------------------------------------------------------------ codes and failures */

const char *lvks_code(vks_status st)
{
    switch (st) {
    case VKS_E_INVALID_ARG:
    case VKS_E_INTERNAL:
    case VKS_E_NOT_CACHED: /* never reaches Lua (no hit-only lookups there) */
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

void lvks_new_box_meta(lua_State *L, const char *name, lua_CFunction gc)
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

/* ------------------------------------------------------------------ parsed keysource memo */

/*
 * The hit path's shortcut (docs/internals/lua-module.md, "Keysource memo"): a Vault keysource
 * table that is passed again, unchanged, is not parsed again. Each lua_State keeps a weak-keyed
 * table (registry, MEMO_KEY): keysource table -> memo box, a userdata holding the parsed
 * keysource, its cache identity with the runtime generation it was built under, and a snapshot
 * of the table's raw contents in lua_next order. A lookup uses the box only when a raw traversal
 * of the table finds exactly the same keys and values in the same order: the same string objects
 * (lua_topointer; the box anchors every snapshot string in its user values, so no other string
 * can take that address while the box lives), equal numbers and booleans. Any change (a value
 * set, a field added or removed, another string object even with the same text) parses the table
 * again and replaces the box; a box is never changed once published, so one still on the stack
 * of an outer call stays valid. The parsed token lives in the arena: after fork() (wipe-on-fork)
 * every box is stale (fork_gen). Restrictions, ctx and audit are per lookup as before: only the
 * parse and the identity are remembered.
 */
#define MEMO_KEY "vault_keysource.ks_memo"
#define MEMO_BOX "vault_keysource.memo_box"
#define MEMO_FIELDS 16

struct memo_val {
    int type;                /* LUA_TSTRING, LUA_TNUMBER, LUA_TBOOLEAN */
    int isint;
    const void *p;           /* string object */
    lua_Integer i;
    lua_Number d;
};

struct memo_box {
    struct vks_keysource ks; /* first: parsed into while the box is the lookup's keysource box */
    bool published;          /* complete and in the memo table                                 */
    unsigned long fork_gen;
    unsigned long id_gen;
    char *identity;          /* malloc'ed                                                      */
    size_t id_len;
    uint64_t id_hash;        /* vks_cache_identity_hash(identity)                              */
    int n;
    const void *key[MEMO_FIELDS];
    struct memo_val val[MEMO_FIELDS];
};

static atomic_ulong fork_gen;
static void memo_atfork_child(void) { atomic_fetch_add(&fork_gen, 1); }
static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static void memo_init(void) { pthread_atfork(NULL, NULL, memo_atfork_child); }

static int memo_box_gc(lua_State *L)
{
    struct memo_box *m = luaL_checkudata(L, 1, MEMO_BOX);
    vks_keysource_clear(&m->ks);
    free(m->identity);
    m->identity = NULL;
    m->published = false;
    return 0;
}

/* Pushes a new memo box (unpublished, empty keysource) with room to anchor the snapshot. */
static struct memo_box *push_memo_box(lua_State *L)
{
    struct memo_box *m = lua_newuserdatauv(L, sizeof *m, 2 * MEMO_FIELDS);
    memset(m, 0, sizeof *m);
    m->ks.kv_version = VKS_KV_UNSET;
    luaL_setmetatable(L, MEMO_BOX);
    return m;
}

static void memo_read_val(lua_State *L, int idx, struct memo_val *v)
{
    memset(v, 0, sizeof *v);
    v->type = lua_type(L, idx);
    if (v->type == LUA_TSTRING) {
        v->p = lua_topointer(L, idx);
    } else if (v->type == LUA_TNUMBER) {
        v->isint = lua_isinteger(L, idx);
        if (v->isint)
            v->i = lua_tointeger(L, idx);
        else
            v->d = lua_tonumber(L, idx);
    } else if (v->type == LUA_TBOOLEAN) {
        v->i = lua_toboolean(L, idx);
    }
}

static bool memo_same_val(const struct memo_val *a, const struct memo_val *b)
{
    if (a->type != b->type)
        return false;
    if (a->type == LUA_TSTRING)
        return a->p == b->p;
    if (a->type == LUA_TNUMBER)
        return a->isint == b->isint && (a->isint ? a->i == b->i : a->d == b->d);
    return a->type == LUA_TBOOLEAN && a->i == b->i;
}

/* True when the table at t holds exactly m's snapshot (raw traversal, same order). */
static bool memo_matches(lua_State *L, int t, const struct memo_box *m)
{
    int n = 0;
    bool same = true;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        /* an anchored string lives at key[n] (and at val[n].p): the same address is the same
         * string; numbers and booleans have no address and are compared by value */
        bool ok = n < m->n && lua_topointer(L, -2) == m->key[n];
        if (ok && m->val[n].type == LUA_TSTRING) {
            ok = lua_topointer(L, -1) == m->val[n].p;
        } else if (ok) {
            struct memo_val v;
            memo_read_val(L, -1, &v);
            ok = memo_same_val(&v, &m->val[n]);
        }
        if (!ok) {
            lua_pop(L, 2);
            same = false;
            break;
        }
        n++;
        lua_pop(L, 1);
    }
    return same && n == m->n;
}

/* The published box for the keysource table at t when it is still valid: pushed and returned.
 * Otherwise pushes nothing and returns NULL. */
static struct memo_box *memo_find(lua_State *L, int t)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, MEMO_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pushvalue(L, t);
    lua_rawget(L, -2);
    /* the memo table holds only memo boxes (it is private to this file) */
    struct memo_box *m = lua_touserdata(L, -1);
    if (m != NULL && lua_rawlen(L, -1) != sizeof(struct memo_box))
        m = NULL;
    if (m != NULL && m->published && m->fork_gen == atomic_load_explicit(&fork_gen, memory_order_relaxed) &&
        m->id_gen == vks_resolver_generation() && memo_matches(L, t, m)) {
        lua_remove(L, -2);
        return m;
    }
    lua_pop(L, 2);
    return NULL;
}

/* Snapshots the table at t into the box at box_idx (whose ks was just parsed from it), builds the
 * identity and publishes the box as t's memo. Does nothing when the keysource cannot be
 * remembered (not Vault, too many fields, a value of another type, no identity). */
static void memo_publish(lua_State *L, int t, int box_idx, struct memo_box *m)
{
    if (m->ks.kind != VKS_KS_VAULT)
        return;
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        int vt = lua_type(L, -1);
        if (n == MEMO_FIELDS || lua_type(L, -2) != LUA_TSTRING ||
            (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)) {
            lua_pop(L, 2);
            return;
        }
        m->key[n] = lua_topointer(L, -2);
        memo_read_val(L, -1, &m->val[n]);
        lua_setiuservalue(L, box_idx, 2 * n + 2); /* anchors the value */
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, box_idx, 2 * n + 1); /* anchors the key */
        n++;
    }
    m->n = n;
    char id[3 * VKS_NAME_MAX + VKS_ADDRESS_MAX + 128];
    struct vks_err e;
    vks_err_clear(&e);
    if (vks_resolver_identity_gen(&m->ks, id, sizeof id, &m->id_gen, &e) != VKS_OK ||
        (m->identity = strdup(id)) == NULL)
        return;
    m->id_len = strlen(id);
    m->id_hash = vks_cache_identity_hash(id, m->id_len);
    m->fork_gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
    m->published = true;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, MEMO_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 4);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, MEMO_KEY);
    }
    lua_pushvalue(L, t);
    lua_pushvalue(L, box_idx);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------------ lookups */

/*
 * The keysource of a lookup, pushed on the stack in a box: a still-valid memo box of the table at
 * ks_idx (*memo), else a new box parsed from it (*fresh, published as the table's memo when it is
 * a Vault keysource), else (a path string) a plain keysource box. *ks is always set.
 */
static vks_status keysource_for_lookup(lua_State *L, int ks_idx, struct vks_keysource **ks,
                                       struct memo_box **memo, struct memo_box **fresh, struct vks_err *err)
{
    if (lua_type(L, ks_idx) != LUA_TTABLE) {
        *ks = lvks_push_keysource_box(L);
        return lvks_to_keysource(L, ks_idx, *ks, err);
    }
    luaL_checkstack(L, 8, "keysource memo");
    if ((*memo = memo_find(L, ks_idx)) != NULL) {
        *ks = &(*memo)->ks;
        return VKS_OK;
    }
    *fresh = push_memo_box(L);
    *ks = &(*fresh)->ks;
    vks_status st = lvks_to_keysource(L, ks_idx, *ks, err);
    if (st == VKS_OK)
        memo_publish(L, ks_idx, lua_gettop(L), *fresh);
    return st;
}

/* lvks_lookup; reuse_out: *out may hold this caller's own slot (vks_resolve_req.reuse_out). */
static vks_status lvks_lookup_ex(lua_State *L, int ks_idx, int ctx_idx, const char *api, vks_secret *out,
                                 bool reuse_out, struct vks_resolve_info *info, struct vks_err *err)
{
    ks_idx = lua_absindex(L, ks_idx);
    ctx_idx = lua_absindex(L, ctx_idx);
    int top = lua_gettop(L);
    /* misuse first: nothing allocated yet */
    lvks_check_keysource_arg(L, ks_idx);
    struct vks_ctx ctx;
    vks_err_clear(err);
    vks_status cst = lvks_check_ctx(L, ctx_idx, &ctx, err);

    struct memo_box *m = NULL, *fresh = NULL;
    struct vks_keysource *ks;
    vks_status pst;
    if (cst != VKS_OK) {
        /* a ctx that cannot be read fails the lookup like a malformed keysource (audited as such) */
        ks = lvks_push_keysource_box(L);
        pst = cst;
    } else {
        /* a Vault keysource table seen before and unchanged: its parse and identity are reused */
        pst = keysource_for_lookup(L, ks_idx, &ks, &m, &fresh, err);
    }
    const struct memo_box *memo = m != NULL ? m : fresh != NULL && fresh->published ? fresh : NULL;

    /* the event handler runs before the core (the core never calls Lua); its value is boxed */
    struct vks_event_result ev; /* zeroed by run_event_handler, used only for EVENT keysources */
    ev.value = VKS_SECRET_EMPTY;
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
                                   .event = pst == VKS_OK && ks->kind == VKS_KS_EVENT ? &ev : NULL,
                                   .identity = memo != NULL ? memo->identity : NULL,
                                   .identity_gen = memo != NULL ? memo->id_gen : 0,
                                   .identity_len = memo != NULL ? memo->id_len : 0,
                                   .identity_hash = memo != NULL ? memo->id_hash : 0,
                                   .reuse_out = reuse_out };
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

    /* a published box keeps its keysource (the memo); any other is cleared now, not at GC */
    if (m == NULL && (fresh == NULL || !fresh->published))
        vks_keysource_clear(ks);
    if (evbox != NULL)
        vks_secret_free(evbox);
    lua_settop(L, top);
    return st;
}

vks_status lvks_lookup(lua_State *L, int ks_idx, int ctx_idx, const char *api, vks_secret *out,
                       struct vks_resolve_info *info, struct vks_err *err)
{
    return lvks_lookup_ex(L, ks_idx, ctx_idx, api, out, false, info, err);
}

/*
 * vks.resolve's box: one per module table (upvalue of resolve), reused by every lookup of that
 * state instead of a new userdata with a finalizer per call (which cost about a third of a cache
 * hit). While a lookup holds it, it is a to-be-closed value on resolve's stack: on return AND on
 * any error the value is wiped and the box released (__close). A nested resolve (from an event
 * handler or audit callback of an outer one) finds it busy and uses a box of its own.
 */
#define RESOLVE_BOX "vault_keysource.resolve_box"

struct resolve_box {
    vks_secret s; /* first: the layout of a secret box */
    int busy;
};

/* __close (every lookup): the value is wiped, the slot kept for the next lookup of this state. */
static int resolve_box_close(lua_State *L)
{
    /* only reachable through RESOLVE_BOX's metatable (protected): a size check is enough and
     * much cheaper than luaL_checkudata on every lookup */
    if (lua_type(L, 1) != LUA_TUSERDATA || lua_rawlen(L, 1) != sizeof(struct resolve_box))
        return luaL_argerror(L, 1, "not a resolve box");
    struct resolve_box *b = lua_touserdata(L, 1);
    if (b->s.data != NULL)
        vks_wipe(b->s.data, b->s.cap);
    b->s.len = 0;
    b->busy = 0;
    return 0;
}

/* __gc: the slot goes back to the arena (wiped). */
static int resolve_box_gc(lua_State *L)
{
    struct resolve_box *b = luaL_checkudata(L, 1, RESOLVE_BOX);
    vks_secret_free(&b->s);
    b->busy = 0;
    return 0;
}

/* vks.resolve(keysource [, ctx]) -> secret | nil, message, code */
static int l_resolve(lua_State *L)
{
    lvks_check_keysource_arg(L, 1);
    lua_settop(L, 2);
    struct resolve_box *rb = lua_touserdata(L, lua_upvalueindex(1));
    vks_secret *box;
    if (rb != NULL && !rb->busy) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_toclose(L, 3);
        rb->busy = 1;
        box = &rb->s;
    } else {
        box = lvks_push_secret_box(L);
    }
    struct vks_err err;
    vks_status st = lvks_lookup_ex(L, 1, 2, "resolve", box, box == &rb->s, NULL, &err);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &err);
    /* the one and only copy into a Lua string, then the slot is wiped (__close for the
     * module's box, which keeps its slot; freed for a box of a nested lookup) */
    lua_pushlstring(L, (const char *)box->data, box->len);
    if (box != &rb->s)
        vks_secret_free(box);
    return 1;
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
    { "setup", lvks_setup },
    { "set_event_handler", l_set_event_handler },
    { NULL, NULL },
};

__attribute__((visibility("default"))) int luaopen_vault_keysource(lua_State *L)
{
    pthread_once(&pin_once, pin_module);
    lvks_new_box_meta(L, KS_BOX, ks_box_gc);
    lvks_new_box_meta(L, SECRET_BOX, secret_box_gc);
    lvks_setup_open(L);
    lvks_new_box_meta(L, MEMO_BOX, memo_box_gc);
    pthread_once(&memo_once, memo_init);
    luaL_newlib(L, funcs);
    int mod = lua_gettop(L);
    if (luaL_newmetatable(L, RESOLVE_BOX)) {
        lua_pushcfunction(L, resolve_box_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, resolve_box_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    struct resolve_box *rb = lua_newuserdatauv(L, sizeof *rb, 0);
    rb->s = VKS_SECRET_EMPTY;
    rb->busy = 0;
    luaL_setmetatable(L, RESOLVE_BOX);
    lua_pushcclosure(L, l_resolve, 1);
    lua_setfield(L, mod, "resolve");
    lua_pushliteral(L, "vault_keysource 0.1");
    lua_setfield(L, mod, "_VERSION");
    for (int i = 0, n_ext = extensions(); i < n_ext; i++)
        if (exts[i]->open != NULL) {
            exts[i]->open(L, mod);
            lua_settop(L, mod);
        }
    return 1;
}
