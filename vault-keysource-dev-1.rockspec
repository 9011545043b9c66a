-- LuaRocks build of the vault_keysource module (Lua 5.4) from this checkout:
--   luarocks --lua-version 5.4 make [--tree DIR]
-- builds the module with the project's Makefile (its own flags, warnings and hidden visibility)
-- into build/rock/ and installs it into the tree's lib/lua/5.4. Nothing is downloaded: the C
-- libraries are Debian's (scripts/bootstrap installs them; the rock does not run it).
-- The programs (vks, vks-policy), man pages and docs come from `make install`.
rockspec_format = "3.0"
package = "vault-keysource"
version = "dev-1"
source = {
   url = "git+file:///dev/null", -- built from a checkout with `luarocks make`; never fetched
}
description = {
   summary = "Resolve KumoMTA-style keysources (HashiCorp Vault KV, files, inline data) from Lua",
   detailed = [[
vault_keysource resolves the keysources of KumoMTA policies -- Vault KV v1/v2 secrets over
HTTPS with token/AppRole auth, files, inline key_data, event handlers, ENC: envelopes -- with a
cache in locked memory, restrictions, stale-if-error and an HMAC-chained audit trail.
]],
   license = "see the project's repository",
   labels = { "vault", "secrets", "kumomta", "smtp" },
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   OPENSSL = { header = "openssl/evp.h" },
   CURL = { library = "curl" }, -- Debian keeps curl/curl.h in a multiarch include directory
   JSONC = { header = "json-c/json.h" },
}
build = {
   type = "command",
   build_command = "$(MAKE) VKS_BOOTSTRAPPED=1 BUILD=build/rock LUA_CFLAGS=-I$(LUA_INCDIR) build/rock/vault_keysource.so",
   install_command = "$(MAKE) VKS_BOOTSTRAPPED=1 BUILD=build/rock LUA_CMODDIR=$(LIBDIR) install-module",
}
