/*
 * lvks: the Lua binding's shared helpers (plugin/lvks.c) for the other plugin files
 * (lvks_cache.c, lvks_audit.c, ...). Design: docs/internals/lua-module.md.
 *
 * Rules every plugin file follows (docs/architecture.md):
 *  - type checks and conversion only; the work is in src/;
 *  - misuse (wrong argument types) raises with luaL_argerror/luaL_typeerror BEFORE anything is
 *    allocated or locked; runtime failures return nil, message, code (lvks_push_failure);
 *  - anything that holds a secret or C memory while a Lua call could raise lives in a box (a
 *    userdata whose __gc/__close releases it): lvks_push_secret_box, lvks_push_keysource_box;
 *  - no Lua call while a lock is held.
 *
 * Thread-safety: every function here works on one lua_State, which Lua requires to be used by
 * one thread at a time; the C state behind them is process-wide and thread-safe (src/).
 */
#ifndef LVKS_H
#define LVKS_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"
#include "vks_keysource.h"
#include "vks_resolver.h"
#include "vks_secmem.h"

#define LVKS_MODNAME "vault_keysource"

/* ------------------------------------------------------------------ extensions */

/*
 * A plugin file adds functions and setup options to the module by registering an extension from
 * a constructor:
 *
 *     static const struct lvks_extension ext = { .name = "cache", .open = ..., ... };
 *     __attribute__((constructor)) static void reg(void) { lvks_register_extension(&ext); }
 *
 * Every hook is optional (NULL).
 */
/* The memory options of one vks.setup call (locked_bytes, require_locked): given at the top level
 * or by an extension's subtable (cache.locked_bytes, ...). The binding applies them once. */
struct lvks_memory {
    size_t locked_bytes;
    bool bytes_given;
    bool require_locked;
    bool require_given;
};

struct lvks_extension {
    /* The vks.setup{} subtable this extension owns (e.g. "cache"), or NULL. */
    const char *name;

    /* Adds functions to the module table (at stack index `mod`); run by every luaopen. */
    void (*open)(lua_State *L, int mod);

    /* setup, phase 1 (Lua reads; nothing applied): validates opts[name] at stack index `idx` (nil
     * when absent: then the environment rules) and prepares what phase 2 will apply. *prepared is
     * a slot of the binding's setup box: store an allocation there at once, before any Lua call,
     * because Lua calls may raise (an __index that errors, out of memory) and then the box
     * discards whatever *prepared holds. Returns VKS_OK, or an error with err filled (the binding
     * raises it). May record memory options in *mem. Leaves the stack as it found it. */
    vks_status (*prepare)(lua_State *L, int idx, void **prepared, struct lvks_memory *mem,
                          struct vks_err *err);

    /* setup, phase 2 (C only), the one step that may still fail: runs after every option of every
     * module was validated and the core runtime was built, before anything is applied; must
     * change nothing when it fails. At most one registered extension has it. */
    vks_status (*apply)(void *prepared, struct vks_err *err);

    /* setup, phase 2, after the core runtime was swapped: applies what is left and frees
     * `prepared`. Cannot fail (prepare validated everything). No Lua calls. `changed` says
     * whether the core options changed. */
    void (*commit)(void *prepared, int changed);

    /* Frees `prepared` when setup fails before commit. */
    void (*discard)(void *prepared);

    /* After a setup that succeeded: the Lua side of the new configuration (per-state values). */
    void (*after_setup)(lua_State *L);

    /* Around every lookup (resolve, resolve_handle, ...): before_lookup right before the core is
     * called, after_lookup right after it returned (the value, if any, is in a box; no lock is
     * held). after_lookup may call Lua (it must use lua_pcall for user callbacks) and must leave
     * the stack as it found it. It returns VKS_OK, or an error (err filled) that fails a lookup
     * that had succeeded: the value is then wiped (e.g. the audit callback sink missed its
     * deadline under on_failure = deny). */
    void (*before_lookup)(lua_State *L);
    vks_status (*after_lookup)(lua_State *L, struct vks_err *err);
};

#define LVKS_EXT_MAX 8
/* Registers an extension (up to LVKS_EXT_MAX; called from constructors, before any luaopen). */
void lvks_register_extension(const struct lvks_extension *ext);

/* ------------------------------------------------------------------ conversions */

/*
 * Checks the ctx argument at `idx` (nil/none or a table whose fields domain, site_name, username,
 * destination, tag are nil or strings) and fills *ctx with pointers to the strings. Raises
 * (argument error) on misuse (a field that is not a string). A field holding a NUL byte is a
 * runtime failure: VKS_E_BAD_KEYSOURCE with err naming the field, and that field is left NULL
 * in *ctx (the others are filled, for the audit event). Pushes the 5 field values on the stack
 * (keeping the strings alive): the caller pops them when done (lua_pop(L, 5)) or lets the call
 * return.
 */
vks_status lvks_check_ctx(lua_State *L, int idx, struct vks_ctx *ctx, struct vks_err *err);

/*
 * THE way a Lua string reaches C code that needs a C string: the string at `idx` with its length
 * (*len, may be NULL). C would silently cut a string at its first NUL byte, so a string holding
 * one is refused: returns NULL and sets err to `code` with "<what> contains a NUL byte" (and the
 * printable part before it). A value that is not a string: NULL, "<what> must be a string, not a
 * <type>". `what` names the field ("ctx.domain", "setup option audit.file"); never pass a secret
 * value (the message shows the part before the NUL). Binary values (key_data, secrets) are read
 * with lua_tolstring and their length instead, and never as C strings.
 */
const char *lvks_cstring(lua_State *L, int idx, const char *what, size_t *len, vks_status code,
                         struct vks_err *err);

/* Raises an argument error unless the value at `idx` is a string or a table (a keysource). */
void lvks_check_keysource_arg(lua_State *L, int idx);

/*
 * Pushes a new box holding an empty keysource, released (wiped) by __gc/__close. Returns it.
 */
struct vks_keysource *lvks_push_keysource_box(lua_State *L);

/*
 * Converts the keysource at `idx` (already checked by lvks_check_keysource_arg) into *ks, which
 * must be an empty keysource inside a box. Returns VKS_E_BAD_KEYSOURCE (err filled, naming the
 * field) for a malformed table: never raises for that.
 */
vks_status lvks_to_keysource(lua_State *L, int idx, struct vks_keysource *ks, struct vks_err *err);

/* Pushes a new box holding an empty vks_secret, wiped and freed by __gc/__close. Returns it. */
vks_secret *lvks_push_secret_box(lua_State *L);

/*
 * The whole lookup as vks.resolve does it, for any entry point: checks the keysource at ks_idx
 * and the ctx at ctx_idx (raising on misuse), runs the event handler for EVENT keysources, calls
 * the extensions' before_lookup, vks_resolve (api "resolve" or "resolve_handle"), then
 * after_lookup. `out` must be inside a box (lvks_push_secret_box) created by the caller.
 * Returns the status with err filled on failure; `info` may be NULL. Leaves the stack as it
 * found it.
 */
vks_status lvks_lookup(lua_State *L, int ks_idx, int ctx_idx, const char *api, vks_secret *out,
                       struct vks_resolve_info *info, struct vks_err *err);

/* Pushes nil, message, code and returns 3 (the runtime-failure convention). */
int lvks_push_failure(lua_State *L, vks_status st, const struct vks_err *err);

/* The Lua code for a status ("not_found", ...); internal codes map to "internal" / "config". */
const char *lvks_code(vks_status st);

/* Reads a Lua value at idx into a field (no copy: pointers into Lua strings, valid while the
 * value is reachable). Used for setup subtables. */
void lvks_to_field(lua_State *L, int idx, const char *name, struct vks_field *f);

/* ---- shared by the module's own files (lvks.c, lvks_setup.c) ---- */
/* The registered extensions (count published with release/acquire; entries never change). */
int lvks_extension_count(void);
const struct lvks_extension *lvks_extension_at(int i);
/* A userdata metatable `name` whose __gc and __close are gc, locked against getmetatable. */
void lvks_new_box_meta(lua_State *L, const char *name, lua_CFunction gc);
/* vault_keysource.setup (the Lua function) and its box's metatable (called from luaopen). */
int lvks_setup(lua_State *L);
void lvks_setup_open(lua_State *L);

#endif
