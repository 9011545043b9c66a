// vks_host.toml: TOML for the policy host through toml++ (Debian's libtomlplusplus-dev), used
// header-only. parse(text [, source]) -> Lua table, or nil and "source:line:col: message".
//
// Mapping: tables -> Lua tables, arrays -> sequences (1-based), strings -> strings, integers ->
// Lua integers, floats -> numbers, booleans -> booleans, dates/times -> their TOML text form.
// The whole document is parsed into toml++'s tree first and converted afterwards; nothing raises
// a Lua error while the parser runs. Conversion stops at a nesting depth of 64.
#define TOML_EXCEPTIONS 1
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

#include <sstream>
#include <string>
#include <string_view>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include "host.h"

namespace {

constexpr int kMaxDepth = 64;

bool push_node(lua_State *L, const toml::node &n, int depth);

bool push_table(lua_State *L, const toml::table &t, int depth)
{
    lua_createtable(L, 0, static_cast<int>(t.size()));
    for (auto &&[k, v] : t) {
        if (!push_node(L, v, depth + 1))
            return false;
        std::string_view key = k.str();
        lua_pushlstring(L, key.data(), key.size());
        lua_insert(L, -2);
        lua_rawset(L, -3);
    }
    return true;
}

bool push_array(lua_State *L, const toml::array &a, int depth)
{
    lua_createtable(L, static_cast<int>(a.size()), 0);
    lua_Integer i = 1;
    for (auto &&v : a) {
        if (!push_node(L, v, depth + 1))
            return false;
        lua_rawseti(L, -2, i++);
    }
    return true;
}

template <typename T> void push_text(lua_State *L, const T &v)
{
    std::ostringstream os;
    os << v;
    std::string s = os.str();
    lua_pushlstring(L, s.data(), s.size());
}

bool push_node(lua_State *L, const toml::node &n, int depth)
{
    if (depth > kMaxDepth || !lua_checkstack(L, 4))
        return false;
    switch (n.type()) {
    case toml::node_type::table:
        return push_table(L, *n.as_table(), depth);
    case toml::node_type::array:
        return push_array(L, *n.as_array(), depth);
    case toml::node_type::string: {
        const std::string &s = n.as_string()->get();
        lua_pushlstring(L, s.data(), s.size());
        return true;
    }
    case toml::node_type::integer:
        lua_pushinteger(L, static_cast<lua_Integer>(n.as_integer()->get()));
        return true;
    case toml::node_type::floating_point:
        lua_pushnumber(L, static_cast<lua_Number>(n.as_floating_point()->get()));
        return true;
    case toml::node_type::boolean:
        lua_pushboolean(L, n.as_boolean()->get());
        return true;
    case toml::node_type::date:
        push_text(L, n.as_date()->get());
        return true;
    case toml::node_type::time:
        push_text(L, n.as_time()->get());
        return true;
    case toml::node_type::date_time:
        push_text(L, n.as_date_time()->get());
        return true;
    default:
        lua_pushnil(L);
        return true;
    }
}

int l_parse(lua_State *L)
{
    size_t len = 0;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *source = lua_isnoneornil(L, 2) ? "toml" : vksh_cstring(L, 2, "toml.parse: source", NULL);
    int top = lua_gettop(L);
    std::string err;
    toml::table doc;
    try {
        doc = toml::parse(std::string_view(text, len), std::string_view(source));
    } catch (const toml::parse_error &e) {
        std::ostringstream os;
        const auto &b = e.source().begin;
        os << source << ":" << b.line << ":" << b.column << ": " << e.description();
        err = os.str();
    } catch (const std::exception &e) {
        err = std::string(source) + ": " + e.what();
    }
    if (!err.empty()) {
        lua_pushnil(L);
        lua_pushlstring(L, err.data(), err.size());
        return 2;
    }
    if (!push_table(L, doc, 0)) {
        lua_settop(L, top);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: nested deeper than %d levels", source, kMaxDepth);
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
