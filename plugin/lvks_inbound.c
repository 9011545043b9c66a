/*
 * lvks_inbound: inbound SMTP credentials from Lua (issue 15; docs/inbound.md, docs/lua-api.md):
 *
 *   vks.inbound_verify(username, password [, source])  -> true, username | false, result, reason
 *   vks.inbound_sender(username, sender [, source])    -> true | false, result, reason
 *
 * The same core operation as vks-agent's [inbound] (vks_inbound_verify / _check_sender), on the
 * caller's thread (a cold verification costs the verifier's hash and two Vault reads). One
 * process-wide vks_inbound, made at the first call from the configuration in force (vks.setup or
 * the environment: Vault address, token, CA) and the environment's encryption keys (only
 * --retrievable credentials need them), with the core's defaults (cache_ttl 30 s, 10 failures per
 * username, 30 per address, 15 min window, 30 min lockout). The password is copied from the Lua
 * string into an arena slot for the call and wiped; the Lua string itself belongs to Lua.
 * Misuse (non-string arguments) raises; a credential store that cannot be asked returns
 * false, "temp", reason. Thread-safety: the object is made once (pthread_once-like under a mutex)
 * and is thread-safe; every lua_State may call these.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lvks.h"
#include "vks_config.h"
#include "vks_envelope.h"
#include "vks_inbound.h"
#include "vks_vault.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vks_inbound *g_ib;
static struct vks_vault *g_vault;
static struct vks_keyring *g_kr;

static vks_status get(struct vks_inbound **out, struct vks_err *err)
{
    pthread_mutex_lock(&g_mu);
    vks_status st = VKS_OK;
    if (g_ib == NULL) {
        struct vks_config cfg;
        memset(&cfg, 0, sizeof cfg);
        st = vks_resolver_get_config(&cfg, err);
        if (st == VKS_OK && g_vault == NULL)
            st = vks_vault_new(&cfg.vault, &g_vault, err);
        vks_config_clear(&cfg);
        if (st == VKS_OK && g_kr == NULL && vks_keyring_load_env(&g_kr, NULL) != VKS_OK)
            g_kr = NULL;
        struct vks_inbound_config ic = { .cache_ttl_ms = -1 };
        if (st == VKS_OK)
            st = vks_inbound_new(&ic, g_vault, g_kr, &g_ib, err);
    }
    *out = g_ib;
    pthread_mutex_unlock(&g_mu);
    return st;
}

static int answer(lua_State *L, const struct vks_inbound_answer *a, bool with_user)
{
    if (a->outcome == VKS_IN_OK) {
        lua_pushboolean(L, 1);
        if (!with_user)
            return 1;
        lua_pushstring(L, a->username);
        return 2;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, vks_inbound_outcome_name(a->outcome));
    lua_pushstring(L, a->reason);
    return 3;
}

static int l_inbound_verify(lua_State *L)
{
    size_t ul = 0, pl = 0;
    luaL_checktype(L, 1, LUA_TSTRING);
    luaL_checktype(L, 2, LUA_TSTRING);
    const char *user = lua_tolstring(L, 1, &ul);
    const char *pw = lua_tolstring(L, 2, &pl);
    const char *src = luaL_optstring(L, 3, NULL);
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_inbound *ib = NULL;
    vks_status st = get(&ib, &e);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &e);
    struct vks_inbound_answer a;
    if (strlen(user) != ul || (src && strlen(src) != lua_rawlen(L, 3))) {
        memset(&a, 0, sizeof a);
        a.outcome = VKS_IN_UNKNOWN_USER;
        snprintf(a.reason, sizeof a.reason, "the username or source contains a NUL byte");
        return answer(L, &a, true);
    }
    vks_secret *slot = lvks_push_secret_box(L); /* wiped by the box, also if anything raises */
    if (pl > 0 && (st = vks_secret_dup(pw, pl, slot, &e)) != VKS_OK)
        return lvks_push_failure(L, st, &e);
    st = vks_inbound_verify(ib, user, slot->data, slot->len, src, &a, &e);
    vks_secret_free(slot);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &e);
    return answer(L, &a, true);
}

static int l_inbound_sender(lua_State *L)
{
    const char *user = luaL_checkstring(L, 1);
    const char *sender = luaL_checkstring(L, 2);
    const char *src = luaL_optstring(L, 3, NULL);
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_inbound *ib = NULL;
    vks_status st = get(&ib, &e);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &e);
    struct vks_inbound_answer a;
    st = vks_inbound_check_sender(ib, user, sender, src, &a, &e);
    if (st != VKS_OK)
        return lvks_push_failure(L, st, &e);
    return answer(L, &a, false);
}

static void open_inbound(lua_State *L, int mod)
{
    lua_pushcfunction(L, l_inbound_verify);
    lua_setfield(L, mod, "inbound_verify");
    lua_pushcfunction(L, l_inbound_sender);
    lua_setfield(L, mod, "inbound_sender");
}

static const struct lvks_extension ext = { .name = NULL, .open = open_inbound };

__attribute__((constructor)) static void reg(void)
{
    lvks_register_extension(&ext);
}
