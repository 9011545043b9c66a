/*
 * vks_host.smtp: the Lua binding of the core's SMTP AUTH probe (src/vks_smtp.h): connect,
 * greeting, EHLO, STARTTLS (OpenSSL), EHLO again, AUTH PLAIN, QUIT. No message is ever sent.
 *
 * check_auth{ host=, port=, ehlo_name=, enable_tls=, username=, password=, cafile=,
 *             allow_smtp_auth_plain_without_tls=, allow_smtp_auth_plain_without_valid_certificate=,
 *             timeout_ms= }
 *   -> { ok=bool, stage=, code=, reply=, error=, tls=bool, tls_verified=bool, tls_version=,
 *        verify_error=, auth_attempted=bool, peer=, transcript=string }
 *
 * enable_tls follows KumoMTA: Opportunistic (default; STARTTLS when offered, invalid certificate
 * fails), OpportunisticInsecure, Required, RequiredInsecure, Disabled. timeout_ms bounds the whole
 * session (vks_smtp.h). Misuse (a wrong type, an unknown mode, an out-of-range port, a bad
 * ehlo_name) raises; every runtime outcome is the result table.
 *
 * The password: every option is read from the table first; then the Lua password string is copied
 * into an arena slot (vks_secret_dup), the session runs without any Lua call, the slot is freed
 * (wiped), and only then is the result table built, so no Lua error can unwind past live secret
 * bytes. (The password also exists as the Lua string the caller passed in; the policy host drops
 * its reference right after this call.)
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "vks_secmem.h"
#include "vks_smtp.h"

#define PASSWORD_MAX VKS_SECRET_MAX
#define USERNAME_MAX 1024

static const char *field_str(lua_State *L, int idx, const char *name, size_t *len)
{
    lua_getfield(L, idx, name);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "smtp.check_auth: %s must be a string", name);
        char what[64];
        snprintf(what, sizeof what, "smtp.check_auth: %s", name);
        s = vksh_cstring(L, -1, what, len); /* the host name, cafile, ... are used as C strings */
    }
    lua_pop(L, 1); /* the string stays alive: the options table at idx references it */
    return s;
}

static bool field_bool(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

static void push_result(lua_State *L, const struct vks_smtp_result *r)
{
    lua_createtable(L, 0, 13);
    lua_pushboolean(L, r->ok);
    lua_setfield(L, -2, "ok");
    lua_pushstring(L, r->stage ? r->stage : "connect");
    lua_setfield(L, -2, "stage");
    lua_pushinteger(L, r->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, r->reply);
    lua_setfield(L, -2, "reply");
    if (r->error[0]) {
        lua_pushstring(L, r->error);
        lua_setfield(L, -2, "error");
    }
    lua_pushboolean(L, r->tls);
    lua_setfield(L, -2, "tls");
    lua_pushboolean(L, r->tls_verified);
    lua_setfield(L, -2, "tls_verified");
    lua_pushboolean(L, r->auth_attempted);
    lua_setfield(L, -2, "auth_attempted");
    if (r->tls_version[0]) {
        lua_pushstring(L, r->tls_version);
        lua_setfield(L, -2, "tls_version");
    }
    if (r->verify_error[0]) {
        lua_pushstring(L, r->verify_error);
        lua_setfield(L, -2, "verify_error");
    }
    if (r->peer[0]) {
        lua_pushstring(L, r->peer);
        lua_setfield(L, -2, "peer");
    }
    lua_pushstring(L, r->transcript ? r->transcript : "");
    lua_setfield(L, -2, "transcript");
}

static enum vks_smtp_tls tls_mode(lua_State *L)
{
    size_t dummy;
    const char *tls = field_str(L, 1, "enable_tls", &dummy);
    static const char *const modes[] = { "Opportunistic", "OpportunisticInsecure", "Required",
                                         "RequiredInsecure", "Disabled" };
    if (tls == NULL)
        return VKS_SMTP_TLS_OPPORTUNISTIC;
    for (int i = 0; i < 5; i++)
        if (strcmp(tls, modes[i]) == 0)
            return (enum vks_smtp_tls)i;
    luaL_error(L, "smtp.check_auth: unknown enable_tls value");
    return VKS_SMTP_TLS_OPPORTUNISTIC;
}

static int l_check_auth(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct vks_smtp_opts o;
    memset(&o, 0, sizeof o);
    size_t dummy, pwlen = 0;
    o.host = field_str(L, 1, "host", &dummy);
    if (o.host == NULL)
        return luaL_error(L, "smtp.check_auth: host is required");
    lua_getfield(L, 1, "port");
    lua_Integer port = luaL_optinteger(L, -1, 25);
    lua_pop(L, 1);
    if (port < 1 || port > 65535)
        return luaL_error(L, "smtp.check_auth: port out of range");
    o.port = (int)port;
    o.ehlo_name = field_str(L, 1, "ehlo_name", &dummy);
    o.tls = tls_mode(L);
    o.username = field_str(L, 1, "username", &o.username_len);
    const char *pw = field_str(L, 1, "password", &pwlen);
    if (o.username_len > USERNAME_MAX || pwlen > PASSWORD_MAX)
        return luaL_error(L, "smtp.check_auth: username or password too long");
    /* (username and password cannot hold a NUL: field_str refused it) */
    o.cafile = field_str(L, 1, "cafile", &dummy);
    o.allow_without_tls = field_bool(L, 1, "allow_smtp_auth_plain_without_tls");
    o.allow_invalid_cert = field_bool(L, 1, "allow_smtp_auth_plain_without_valid_certificate");
    lua_getfield(L, 1, "timeout_ms");
    lua_Integer tmo = luaL_optinteger(L, -1, 30000);
    lua_pop(L, 1);
    o.timeout_ms = tmo < 1 ? 1 : tmo > 24 * 3600 * 1000 ? 24 * 3600 * 1000 : (int)tmo;
    struct vks_smtp_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return luaL_error(L, "out of memory");

    /* from here to vks_secret_free: no Lua call */
    vks_secret secret = VKS_SECRET_EMPTY;
    struct vks_err err;
    vks_status st = vks_secret_dup(pw ? pw : "", pw ? pwlen : 0, &secret, &err);
    if (st == VKS_OK)
        st = vks_smtp_check_auth(&o, &secret, r, &err);
    vks_secret_free(&secret);

    if (st != VKS_OK && r->stage != NULL && strcmp(r->stage, "options") == 0) {
        vks_smtp_result_free(r);
        free(r);
        return luaL_error(L, "smtp.check_auth: %s", err.msg); /* misuse: no secret is live */
    }
    if (st != VKS_OK && r->stage == NULL) { /* the password could not be copied to the arena */
        r->stage = "connect";
        snprintf(r->error, sizeof r->error, "%s", err.msg);
    }
    push_result(L, r); /* (a memory error here leaks r: lua_createtable raises) */
    vks_smtp_result_free(r);
    free(r);
    return 1;
}

static const luaL_Reg funcs[] = {
    { "check_auth", l_check_auth },
    { NULL, NULL },
};

int vksh_open_smtp(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
