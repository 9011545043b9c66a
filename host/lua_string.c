/*
 * vks-policy: reading a Lua string argument for C (see host.h). In a file of its own (it once let the
 * SMTP fuzz target link it without the whole host; that target now fuzzes src/vks_smtp.c).
 */
#include <lauxlib.h>
#include <string.h>

#include "host.h"

const char *vksh_cstring(lua_State *L, int idx, const char *what, size_t *len)
{
    size_t n = 0;
    const char *s = luaL_checklstring(L, idx, &n);
    if (memchr(s, '\0', n) != NULL)
        luaL_error(L, "%s contains a NUL byte", what);
    if (len != NULL)
        *len = n;
    return s;
}
