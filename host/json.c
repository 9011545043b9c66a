/*
 * vks_host.json: strict JSON parsing for the policy host (json-c, JSON_TOKENER_STRICT, so no
 * comments or trailing commas, like serde_json in KumoMTA). parse(text [, source]) returns a Lua
 * value or nil and "source: message at offset N". JSON null becomes nil (absent in tables), which is
 * how an Option field reads an explicit null. Nesting is limited to 64 levels. A key repeated in
 * one object is refused (serde refuses a repeated field; json-c alone would keep the last).
 * Shaping and policy data only: never feed it a Vault response or anything secret-bearing.
 */
#include <json-c/json.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "host.h"

#define MAX_DEPTH 64

static int push_value(lua_State *L, json_object *o, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return 0;
    switch (json_object_get_type(o)) {
    case json_type_null:
        lua_pushnil(L);
        return 1;
    case json_type_boolean:
        lua_pushboolean(L, json_object_get_boolean(o));
        return 1;
    case json_type_int:
        lua_pushinteger(L, (lua_Integer)json_object_get_int64(o));
        return 1;
    case json_type_double:
        lua_pushnumber(L, json_object_get_double(o));
        return 1;
    case json_type_string:
        lua_pushlstring(L, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        return 1;
    case json_type_array: {
        size_t n = json_object_array_length(o);
        lua_createtable(L, (int)(n > 1000000 ? 0 : n), 0);
        for (size_t i = 0; i < n; i++) {
            if (!push_value(L, json_object_array_get_idx(o, i), depth + 1))
                return 0;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return 1;
    }
    case json_type_object: {
        lua_newtable(L);
        json_object_object_foreach(o, key, val)
        {
            if (!push_value(L, val, depth + 1))
                return 0;
            lua_setfield(L, -2, key);
        }
        return 1;
    }
    }
    return 0;
}

/*
 * Repeated keys. json-c keeps the last of a repeated key without a word; serde (KumoMTA) refuses a
 * repeated struct field; every JSON reader of this project refuses a repeated key
 * (docs/internals/json.md). One pass over the (already validated) text counts the keys of each
 * object in document order; a pre-order walk of json-c's tree must find the same counts, and the
 * first object where it keeps fewer holds a repeated key.
 */
struct objcount {
    size_t keys, off;
};

static struct objcount *text_key_counts(const char *t, size_t len, size_t *nobj)
{
    struct objcount *c = NULL;
    size_t n = 0, cap = 0, stack[MAX_DEPTH + 2];
    int sp = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if ((ch == '{' || ch == '[') && sp < MAX_DEPTH + 2) {
            if (ch == '{' && n == cap) {
                cap = cap ? cap * 2 : 16;
                struct objcount *g = realloc(c, cap * sizeof *c);
                if (!g) {
                    free(c);
                    return NULL;
                }
                c = g;
            }
            if (ch == '{')
                c[n] = (struct objcount){ 0, i };
            stack[sp++] = ch == '{' ? n++ : SIZE_MAX;
        } else if ((ch == '}' || ch == ']') && sp > 0) {
            sp--;
        } else if (ch == ':' && sp > 0 && stack[sp - 1] != SIZE_MAX) {
            c[stack[sp - 1]].keys++;
        }
    }
    *nobj = n;
    return c ? c : calloc(1, sizeof *c);
}

/* The first object (pre-order) where json-c kept fewer keys than the text has; NULL when none. */
static const struct objcount *first_repeat(json_object *o, const struct objcount *c, size_t n, size_t *idx)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            const struct objcount *r = first_repeat(json_object_array_get_idx(o, i), c, n, idx);
            if (r)
                return r;
        }
    } else if (json_object_is_type(o, json_type_object)) {
        if (*idx >= n)
            return NULL;
        const struct objcount *me = &c[(*idx)++];
        if (me->keys != (size_t)json_object_object_length(o))
            return me;
        json_object_object_foreach(o, key, val)
        {
            (void)key;
            const struct objcount *r = first_repeat(val, c, n, idx);
            if (r)
                return r;
        }
    }
    return NULL;
}

static int l_parse(lua_State *L)
{
    size_t len = 0;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *source = lua_isnoneornil(L, 2) ? "json" : vksh_cstring(L, 2, "json.parse: source", NULL);
    if (len > 64u * 1024 * 1024) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: larger than 64 MiB", source);
        return 2;
    }
    json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    if (tok == NULL)
        return luaL_error(L, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (o == NULL && jerr == json_tokener_continue && end == len) {
        o = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_free(tok);
    if (jerr != json_tokener_success) {
        json_object_put(o);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: invalid JSON: %s at offset %d", source,
                        jerr == json_tokener_continue ? "unexpected end of input"
                                                      : json_tokener_error_desc(jerr),
                        (int)end);
        return 2;
    }
    for (size_t i = end; i < len; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_object_put(o);
            lua_pushnil(L);
            lua_pushfstring(L, "%s: invalid JSON: trailing data at offset %d", source, (int)i);
            return 2;
        }
    }
    size_t nobj = 0, idx = 0;
    struct objcount *counts = text_key_counts(text, len, &nobj);
    if (!counts) {
        json_object_put(o);
        return luaL_error(L, "out of memory");
    }
    const struct objcount *rep = first_repeat(o, counts, nobj, &idx);
    if (rep) {
        size_t off = rep->off;
        free(counts);
        json_object_put(o);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: invalid JSON: a key is repeated in the object at offset %d", source, (int)off);
        return 2;
    }
    free(counts);
    int top = lua_gettop(L);
    if (!push_value(L, o, 0)) {
        json_object_put(o);
        lua_settop(L, top);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: nested deeper than %d levels", source, MAX_DEPTH);
        return 2;
    }
    json_object_put(o);
    return 1;
}

static const luaL_Reg funcs[] = {
    { "parse", l_parse },
    { NULL, NULL },
};

int vksh_open_json(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
