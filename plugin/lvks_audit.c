/*
 * lvks_audit: the `audit = {...}` subtable of vks.setup, the per-Lua-state callback sink, and
 * vks.set_audit_callback / vks.audit_stats / vks.audit_flush / vks.audit_reopen.
 *
 * The callback sink: each Lua state may register one function (setup{audit={callback=fn}} or
 * vks.set_audit_callback(fn)). Around every lookup made from that state the binding asks the core
 * to capture the lines it writes in this thread (vks_audit_capture_begin); after the core call
 * returned and no lock is held, each line is passed to the function with lua_pcall. A raising
 * callback never fails the lookup: it is counted (audit_stats().callback_errors) and warned once.
 * Design notes: docs/internals/audit.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdatomic.h>
#include <time.h>

#include "lvks.h"
#include "vks_audit.h"

static const char cb_key = 'a';      /* registry[&cb_key] = this state's callback        */
static const char active_key = 'b';  /* registry[&active_key] = capture started (boolean) */
/* Set once any Lua state registers a callback (never cleared): until then the lookup hooks do
 * nothing, not even a registry read. */
static atomic_bool any_callback;
static atomic_ulong callback_errors;
static atomic_bool callback_warned;

static const char *const audit_opts[] = {
    "file", "syslog", "stderr", "callback", "mode", "on_failure", "queue_size",
    "reopen_check_ms", "timeout_ms", "key_file", "require_key", "required", NULL,
};

struct prepared {
    struct vks_audit_config cfg;
    char *file, *syslog_socket, *syslog_ident, *key_file;
};

static void prepared_free(struct prepared *p)
{
    if (p == NULL)
        return;
    free(p->file);
    free(p->syslog_socket);
    free(p->syslog_ident);
    free(p->key_file);
    free(p);
}

/* opt[name] as a heap copy; the value is read with its length (a NUL byte is an error naming
 * the option, never a shorter path). `what` is the option's full name for messages. */
static vks_status opt_string(lua_State *L, int idx, const char *name, const char *what, char **out,
                             struct vks_err *err)
{
    int ty = lua_getfield(L, idx, name);
    vks_status st = VKS_OK;
    if (ty != LUA_TNIL) {
        char w[96];
        snprintf(w, sizeof w, "setup option %s", what);
        size_t len = 0;
        const char *s = lvks_cstring(L, -1, w, &len, VKS_E_CONFIG, err);
        if (s == NULL)
            st = VKS_E_CONFIG;
        else {
            free(*out); /* replaces the environment's value */
            if ((*out = strndup(s, len)) == NULL)
                st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
        }
    }
    lua_pop(L, 1);
    return st;
}

/* opt[name] is one of `names` (NULL-terminated): its index in *out. */
static vks_status opt_choice(lua_State *L, int idx, const char *name, const char *const *names,
                             int *out, struct vks_err *err)
{
    vks_status st = VKS_OK;
    if (lua_getfield(L, idx, name) != LUA_TNIL) {
        struct vks_err e;
        const char *v = lvks_cstring(L, -1, name, NULL, VKS_E_CONFIG, &e);
        int found = -1;
        for (int i = 0; v != NULL && names[i] != NULL; i++)
            if (strcmp(v, names[i]) == 0)
                found = i;
        if (found < 0 && names[2] != NULL)
            st = vks_err_set(err, VKS_E_CONFIG, "setup option audit.%s must be '%s', '%s' or '%s'", name,
                             names[0], names[1], names[2]);
        else if (found < 0)
            st = vks_err_set(err, VKS_E_CONFIG, "setup option audit.%s must be '%s' or '%s'", name,
                             names[0], names[1]);
        else
            *out = found;
    }
    lua_pop(L, 1);
    return st;
}

static vks_status opt_bool(lua_State *L, int idx, const char *name, bool *out, bool *given,
                           struct vks_err *err)
{
    int ty = lua_getfield(L, idx, name);
    vks_status st = VKS_OK;
    if (given)
        *given = ty != LUA_TNIL;
    if (ty == LUA_TBOOLEAN)
        *out = lua_toboolean(L, -1);
    else if (ty != LUA_TNIL)
        st = vks_err_set(err, VKS_E_CONFIG, "setup option audit.%s must be a boolean", name);
    lua_pop(L, 1);
    return st;
}

static vks_status opt_int(lua_State *L, int idx, const char *name, long min, long max, long *out,
                          struct vks_err *err)
{
    int ty = lua_getfield(L, idx, name);
    vks_status st = VKS_OK;
    if (ty != LUA_TNIL) {
        int isint = 0;
        lua_Integer n = lua_tointegerx(L, -1, &isint);
        if (!isint || n < min || n > max)
            st = vks_err_set(err, VKS_E_CONFIG,
                             "setup option audit.%s must be an integer from %ld to %ld", name, min,
                             max);
        else
            *out = (long)n;
    }
    lua_pop(L, 1);
    return st;
}

static vks_status parse_syslog(lua_State *L, int idx, struct prepared *p, struct vks_err *err)
{
    int ty = lua_getfield(L, idx, "syslog");
    vks_status st = VKS_OK;
    int t = lua_gettop(L);
    if (ty == LUA_TBOOLEAN) {
        p->cfg.syslog = lua_toboolean(L, t);
    } else if (ty == LUA_TTABLE) {
        p->cfg.syslog = true;
        lua_pushnil(L);
        while (st == VKS_OK && lua_next(L, t) != 0) {
            const char *k = lvks_cstring(L, -2, "setup option audit.syslog: a name", NULL, VKS_E_CONFIG, err);
            if (k == NULL)
                st = VKS_E_CONFIG;
            else if (strcmp(k, "socket") && strcmp(k, "ident") && strcmp(k, "facility"))
                st = vks_err_set(err, VKS_E_CONFIG, "unknown setup option audit.syslog.%s", k);
            lua_pop(L, 1);
        }
        if (st == VKS_OK) {
            /* opt_string reads fields of the table at t */
            if ((st = opt_string(L, t, "socket", "audit.syslog.socket", &p->syslog_socket, err)) == VKS_OK)
                st = opt_string(L, t, "ident", "audit.syslog.ident", &p->syslog_ident, err);
        }
        if (st == VKS_OK) {
            char *fac = NULL;
            st = opt_string(L, t, "facility", "audit.syslog.facility", &fac, err);
            if (st == VKS_OK && fac != NULL) {
                int f = vks_audit_facility_from_name(fac);
                if (f < 0)
                    st = vks_err_set(err, VKS_E_CONFIG,
                                     "setup option audit.syslog.facility: unknown facility "
                                     "(auth, authpriv, daemon, mail, user, local0..local7)");
                else
                    p->cfg.syslog_facility = f;
            }
            free(fac);
        }
    } else if (ty != LUA_TNIL) {
        st = vks_err_set(err, VKS_E_CONFIG,
                         "setup option audit.syslog must be a boolean or a table "
                         "{ socket = PATH, ident = NAME, facility = NAME }");
    }
    lua_settop(L, t - 1);
    return st;
}

static vks_status audit_names(lua_State *L, int idx, struct vks_err *err)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lvks_cstring(L, -2, "setup option audit: a name", NULL, VKS_E_CONFIG, err);
        bool known = false;
        for (int i = 0; k != NULL && audit_opts[i] != NULL; i++)
            known = known || strcmp(k, audit_opts[i]) == 0;
        if (!known) {
            vks_status st = k == NULL ? VKS_E_CONFIG
                                      : vks_err_set(err, VKS_E_CONFIG, "unknown setup option audit.%s", k);
            lua_pop(L, 2);
            return st;
        }
        lua_pop(L, 1);
    }
    return VKS_OK;
}

/* audit.file: a path, or false (no file sink even if VKS_AUDIT_FILE is set) */
static vks_status opt_file(lua_State *L, int idx, struct prepared *p, struct vks_err *err)
{
    int ty = lua_getfield(L, idx, "file");
    lua_pop(L, 1);
    if (ty == LUA_TNIL)
        return VKS_OK;
    free(p->file);
    p->file = NULL;
    if (ty == LUA_TBOOLEAN) {
        lua_getfield(L, idx, "file");
        bool on = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return on ? vks_err_set(err, VKS_E_CONFIG, "setup option audit.file must be a path or false")
                  : VKS_OK;
    }
    return opt_string(L, idx, "file", "audit.file", &p->file, err);
}

/* audit.callback: a function (this state's callback, registered when setup succeeds) or a
 * boolean (the sink exists; states register with vks.set_audit_callback). */
static const char pending_key = 'p'; /* registry[&pending_key]: the callback setup will register */

static vks_status opt_callback(lua_State *L, int idx, struct prepared *p, struct vks_err *err)
{
    vks_status st = VKS_OK;
    int ty = lua_getfield(L, idx, "callback");
    if (ty == LUA_TFUNCTION) {
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &pending_key);
        p->cfg.callback = true;
    } else if (ty == LUA_TBOOLEAN) {
        p->cfg.callback = lua_toboolean(L, -1);
    } else if (ty != LUA_TNIL) {
        st = vks_err_set(err, VKS_E_CONFIG, "setup option audit.callback must be a function (or a boolean)");
    }
    lua_pop(L, 1);
    return st;
}

static vks_status audit_prepare(lua_State *L, int idx, void **prepared, struct lvks_memory *mem,
                                struct vks_err *err)
{
    (void)mem;
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pending_key);
    /* owned by the setup box from here on: any Lua call below may raise */
    struct prepared *p = calloc(1, sizeof *p);
    if (p == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    *prepared = p;
    /* the environment first, the table overrides it; no table: the environment rules */
    vks_status st = vks_audit_config_from_env(&p->cfg, err);
    if (st == VKS_OK && p->cfg.file != NULL && (p->file = strdup(p->cfg.file)) == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    if (st == VKS_OK && p->cfg.syslog_socket != NULL &&
        (p->syslog_socket = strdup(p->cfg.syslog_socket)) == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    if (st == VKS_OK && p->cfg.syslog_ident != NULL &&
        (p->syslog_ident = strdup(p->cfg.syslog_ident)) == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    if (st == VKS_OK && p->cfg.key_file != NULL && (p->key_file = strdup(p->cfg.key_file)) == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    /* from here on the strings of p->cfg are p's own copies */
    p->cfg.file = NULL;
    p->cfg.syslog_socket = NULL;
    p->cfg.syslog_ident = NULL;
    p->cfg.key_file = NULL;
    if (st != VKS_OK || lua_isnil(L, idx))
        goto out;
    if ((st = audit_names(L, idx, err)) != VKS_OK || (st = opt_file(L, idx, p, err)) != VKS_OK ||
        (st = parse_syslog(L, idx, p, err)) != VKS_OK ||
        (st = opt_bool(L, idx, "stderr", &p->cfg.stderr_sink, NULL, err)) != VKS_OK)
        goto out;
    if ((st = opt_string(L, idx, "key_file", "audit.key_file", &p->key_file, err)) != VKS_OK ||
        (st = opt_bool(L, idx, "require_key", &p->cfg.require_key, NULL, err)) != VKS_OK ||
        (st = opt_bool(L, idx, "required", &p->cfg.required, NULL, err)) != VKS_OK)
        goto out;
    long q = (long)p->cfg.queue_size;
    if ((st = opt_int(L, idx, "queue_size", 1, 1L << 20, &q, err)) != VKS_OK)
        goto out;
    p->cfg.queue_size = (size_t)q;
    if ((st = opt_int(L, idx, "reopen_check_ms", 0, 3600000, &p->cfg.reopen_check_ms, err)) != VKS_OK ||
        (st = opt_int(L, idx, "timeout_ms", 0, 600000, &p->cfg.timeout_ms, err)) != VKS_OK)
        goto out;
    static const char *const modes[] = { "sync", "fsync", "async", NULL };
    static const enum vks_audit_mode mode_v[] = { VKS_AUDIT_SYNC, VKS_AUDIT_FSYNC, VKS_AUDIT_ASYNC };
    static const char *const failures[] = { "deny", "allow", NULL };
    static const enum vks_audit_on_failure failure_v[] = { VKS_AUDIT_DENY, VKS_AUDIT_ALLOW };
    int m = -1, f = -1;
    if ((st = opt_choice(L, idx, "mode", modes, &m, err)) != VKS_OK ||
        (st = opt_choice(L, idx, "on_failure", failures, &f, err)) != VKS_OK)
        goto out;
    if (m >= 0)
        p->cfg.mode = mode_v[m];
    if (f >= 0)
        p->cfg.on_failure = failure_v[f];
    st = opt_callback(L, idx, p, err);
out:
    p->cfg.file = p->file;
    p->cfg.syslog_socket = p->syslog_socket;
    p->cfg.syslog_ident = p->syslog_ident;
    p->cfg.key_file = p->key_file;
    return st;
}

/* The one fallible step of setup: opens the sinks, loads the key and swaps, or changes nothing. */
static vks_status audit_apply(void *prepared, struct vks_err *err)
{
    struct prepared *p = prepared;
    return vks_audit_configure(&p->cfg, err);
}

static void audit_commit(void *prepared, int changed)
{
    (void)changed;
    prepared_free(prepared);
}

static void audit_discard(void *prepared)
{
    prepared_free(prepared);
}

/* setup succeeded: a callback given in audit = { callback = fn } becomes this state's */
static void audit_after_setup(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pending_key) == LUA_TFUNCTION) {
        atomic_store(&any_callback, true);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &cb_key);
    } else {
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pending_key);
}

/* ------------------------------------------------------------------ the callback sink */

static void audit_before_lookup(lua_State *L)
{
    if (!atomic_load_explicit(&any_callback, memory_order_relaxed))
        return; /* no state ever set a callback: nothing to look up on every lookup */
    int ty = lua_rawgetp(L, LUA_REGISTRYINDEX, &cb_key);
    lua_pop(L, 1);
    /* active_key is true only between a before and an after with a callback (after_lookup
     * resets it): without a callback nothing is written (this runs on every lookup) */
    if (ty == LUA_TFUNCTION) {
        lua_pushboolean(L, 1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &active_key);
        vks_audit_capture_begin();
    }
}

/* The callback's deadline (this thread): a count hook raises inside the pcall once it passed. */
static __thread struct timespec cb_deadline;
static __thread bool cb_late;

static bool past(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

static void cb_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (past(&cb_deadline)) {
        cb_late = true;
        luaL_error(L, "the audit callback passed its deadline (audit.timeout_ms)");
    }
}

static void count_callback_error(const char *what)
{
    unsigned long k = atomic_fetch_add(&callback_errors, 1) + 1;
    if (!atomic_exchange(&callback_warned, true)) {
        char msg[200];
        int m = snprintf(msg, sizeof msg,
                         "vks: audit: the Lua audit callback %s (%lu so far; counted in "
                         "vks.audit_stats().callback_errors)\n", what, k);
        if (m > 0)
            vks_audit_warn_raw(msg, (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1);
    }
}

/* Calls the callback once per line (s[0..n), newline separated) under the deadline. */
static void deliver_lines(lua_State *L, const char *s, size_t n, long timeout_ms)
{
    lua_Hook old_hook = lua_gethook(L);
    int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
    clock_gettime(CLOCK_MONOTONIC, &cb_deadline);
    cb_deadline.tv_sec += timeout_ms / 1000;
    cb_deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (cb_deadline.tv_nsec >= 1000000000L) {
        cb_deadline.tv_sec++;
        cb_deadline.tv_nsec -= 1000000000L;
    }
    cb_late = false;
    lua_sethook(L, cb_hook, LUA_MASKCOUNT, 1000);
    size_t at = 0;
    while (at < n && !cb_late) {
        const char *nl = memchr(s + at, '\n', n - at);
        size_t len = nl ? (size_t)(nl - (s + at)) : n - at;
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cb_key) == LUA_TFUNCTION) {
            lua_pushlstring(L, s + at, len);
            if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
                lua_pop(L, 1);
                count_callback_error(cb_late ? "passed its deadline" : "raised an error");
            }
        } else {
            lua_pop(L, 1);
        }
        at += len + 1;
    }
    lua_sethook(L, old_hook, old_mask, old_count);
}

static vks_status audit_after_lookup(lua_State *L, struct vks_err *err)
{
    if (!atomic_load_explicit(&any_callback, memory_order_relaxed))
        return VKS_OK;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &active_key);
    bool active = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!active)
        return VKS_OK;
    lua_pushboolean(L, 0);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &active_key);
    char *lines = vks_audit_capture_end();
    if (lines == NULL)
        return VKS_OK;
    long timeout_ms;
    bool must_fail;
    vks_audit_callback_policy(&timeout_ms, &must_fail);
    /* the lines hold no secret; copied into Lua once, then split */
    size_t n = strlen(lines);
    lua_pushlstring(L, lines, n);
    free(lines);
    int all = lua_gettop(L);
    deliver_lines(L, lua_tolstring(L, all, NULL), n, timeout_ms);
    lua_settop(L, all - 1);
    if (!cb_late)
        return VKS_OK;
    vks_audit_note_timeout();
    if (!must_fail)
        return VKS_OK;
    return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE,
                       "audit: the Lua audit callback, the only sink, passed its deadline "
                       "(audit.timeout_ms %ld); lookup refused (on_failure=deny)", timeout_ms);
}

/* ------------------------------------------------------------------ functions */

/* vks.set_audit_callback(fn | nil): this Lua state's audit callback. */
static int l_set_audit_callback(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    if (lua_isnone(L, 1))
        lua_pushnil(L);
    if (!lua_isnil(L, 1))
        atomic_store(&any_callback, true);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cb_key);
    return 0;
}

static int l_audit_stats(lua_State *L)
{
    struct vks_audit_stats s;
    vks_audit_get_stats(&s);
    lua_createtable(L, 0, 19);
    lua_pushboolean(L, s.enabled);
    lua_setfield(L, -2, "enabled");
    lua_pushboolean(L, s.ephemeral_key);
    lua_setfield(L, -2, "ephemeral_key");
    lua_pushinteger(L, s.sinks);
    lua_setfield(L, -2, "sinks");
    lua_pushstring(L, vks_audit_mode_name(s.mode));
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, s.on_failure == VKS_AUDIT_ALLOW ? "allow" : "deny");
    lua_setfield(L, -2, "on_failure");
#define INT_FIELD(name) \
    lua_pushinteger(L, (lua_Integer)s.name); \
    lua_setfield(L, -2, #name)
    INT_FIELD(emitted);
    INT_FIELD(written);
    INT_FIELD(dropped);
    INT_FIELD(failures);
    INT_FIELD(sink_errors);
    INT_FIELD(unaudited);
    INT_FIELD(reopens);
    INT_FIELD(timeouts);
    INT_FIELD(queue_depth);
    INT_FIELD(seq);
#undef INT_FIELD
    lua_pushinteger(L, (lua_Integer)atomic_load(&callback_errors));
    lua_setfield(L, -2, "callback_errors");
    lua_pushstring(L, s.chain);
    lua_setfield(L, -2, "chain");
    lua_pushstring(L, s.key_id);
    lua_setfield(L, -2, "key_id");
    return 1;
}

static int l_audit_flush(lua_State *L)
{
    (void)L;
    vks_audit_flush();
    return 0;
}

static int l_audit_reopen(lua_State *L)
{
    (void)L;
    vks_audit_reopen();
    return 0;
}

static void audit_open(lua_State *L, int mod)
{
    static const luaL_Reg funcs[] = {
        { "set_audit_callback", l_set_audit_callback },
        { "audit_stats", l_audit_stats },
        { "audit_flush", l_audit_flush },
        { "audit_reopen", l_audit_reopen },
        { NULL, NULL },
    };
    lua_pushvalue(L, mod);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

static const struct lvks_extension audit_ext = {
    .name = "audit",
    .open = audit_open,
    .prepare = audit_prepare,
    .apply = audit_apply,
    .commit = audit_commit,
    .discard = audit_discard,
    .after_setup = audit_after_setup,
    .before_lookup = audit_before_lookup,
    .after_lookup = audit_after_lookup,
};

__attribute__((constructor)) static void audit_register(void)
{
    lvks_register_extension(&audit_ext);
}
