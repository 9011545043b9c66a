// vks_host.toml: TOML for the policy host. parse(text [, source]) -> Lua table, or nil and
// "source:line:col: message". The parsing itself is the shared C API over toml++
// (common/vks_toml.h, also used by vks-agent); this file only turns its tree into Lua values.
//
// Mapping: tables -> Lua tables, arrays -> sequences (1-based), strings -> strings, integers ->
// Lua integers, floats -> numbers, booleans -> booleans, dates/times -> their TOML text form.
// The whole document is parsed first and converted afterwards; nothing raises a Lua error while
// the parser runs. Nesting is limited to VKS_TOML_MAX_DEPTH (64) by the parser.
extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include "host.h"
#include "vks_toml.h"

namespace {

bool push_node(lua_State *L, const vks_toml_node &n)
{
    if (!lua_checkstack(L, 4))
        return false;
    switch (n.type) {
    case VKS_TOML_TABLE:
        lua_createtable(L, 0, static_cast<int>(n.n));
        for (size_t i = 0; i < n.n; i++) {
            const vks_toml_node &c = n.items[i];
            lua_pushstring(L, c.key);
            if (!push_node(L, c))
                return false;
            lua_rawset(L, -3);
        }
        return true;
    case VKS_TOML_ARRAY:
        lua_createtable(L, static_cast<int>(n.n), 0);
        for (size_t i = 0; i < n.n; i++) {
            if (!push_node(L, n.items[i]))
                return false;
            lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
        }
        return true;
    case VKS_TOML_STRING:
    case VKS_TOML_DATETIME:
        lua_pushlstring(L, n.str, n.len);
        return true;
    case VKS_TOML_INTEGER:
        lua_pushinteger(L, static_cast<lua_Integer>(n.ival));
        return true;
    case VKS_TOML_FLOAT:
        lua_pushnumber(L, static_cast<lua_Number>(n.dval));
        return true;
    case VKS_TOML_BOOL:
        lua_pushboolean(L, n.bval);
        return true;
    }
    lua_pushnil(L);
    return true;
}

int l_parse(lua_State *L)
{
    size_t len = 0;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *source = lua_isnoneornil(L, 2) ? "toml" : vksh_cstring(L, 2, "toml.parse: source", NULL);
    int top = lua_gettop(L);
    char err[512];
    vks_toml_node *doc = nullptr;
    if (vks_toml_parse(text, len, source, &doc, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    bool ok = push_node(L, *doc);
    vks_toml_free(doc); /* before any Lua error can be raised below */
    if (!ok) {
        lua_settop(L, top);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: out of Lua stack space", source);
        return 2;
    }
    return 1;
}

const luaL_Reg kFuncs[] = {
    { "parse", l_parse },
    { nullptr, nullptr },
};

} // namespace

extern "C" int vksh_open_toml(lua_State *L)
{
    luaL_newlib(L, kFuncs);
    return 1;
}
