#!/usr/bin/env bash
# No credential in any output: every URL a tool prints goes through the core's redaction
# (src/vks_redact.c): user information, query and fragment. Addresses carrying a password or a
# token are put into every place a user could put them, and every output is scanned for them
# (the runner's secret scan also checks these logs: tests/test-secrets.d/luastr.txt).
#   vks-policy: the egress path description, a lookup failure, an init error, a load error, a
#               --script error escaping to the C host;
#   the module: setup errors (address with user info / query), a keysource vault_address, the
#               audit event of that lookup, VAULT_ADDR from the environment.
set -u
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
POLICY="$ROOT/$BUILD/vks-policy"
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
SECRETS=$(grep -v '^#' "$ROOT/tests/test-secrets.d/luastr.txt")

# clean <label> <file>: none of the secrets occurs in the file
clean() {
  local s hit=0
  for s in $SECRETS; do
    if grep -qaF -- "$s" "$2"; then hit=1; fi
  done
  if [ $hit -eq 0 ]; then ok "$1: no credential in the output"; else bad "$1: a credential is printed"; fi
}
# shows <label> <file> <text>: the output still names the address (redacted), so the check can fail
shows() {
  if grep -qaF -- "$3" "$2"; then ok "$1: shows $3"; else bad "$1: does not show $3: $(head -c 600 "$2")"; fi
}

# --- vks-policy ------------------------------------------------------------------------------
cat > pol.lua <<'LUA'
local kumo = require 'kumo'
kumo.on('get_egress_path_config', function(domain)
  return kumo.make_egress_path { smtp_auth_plain_username = 'relay',
    ehlo_domain = 'https://ehlo:url-pw-LUASTR-policy-7c1e@mx.example',
    smtp_auth_plain_password = { vault_mount = 'secret', vault_path = 'smtp-auth/' .. domain,
      vault_address = 'https://relay-admin:url-pw-LUASTR-policy-7c1e@127.0.0.1:8200/?token=url-tok-LUASTR-query-52d0' } }
end)
LUA
"$POLICY" pol.lua --domain example.com > p1.out 2>&1
clean "vks-policy egress path and lookup failure" p1.out
shows "vks-policy egress path" p1.out 'vault_address = "https://<redacted>@127.0.0.1:8200/?<redacted>"'
shows "vks-policy other parameters" p1.out 'https://<redacted>@mx.example'
shows "vks-policy lookup failure (core message)" p1.out 'FAILED bad_keysource'

cat > pol-init.lua <<'LUA'
local kumo = require 'kumo'
kumo.on('init', function()
  error('cannot reach https://ops:url-pw-LUASTR-init-9a4f3b@vault.internal:8200/v1?x=url-tok-LUASTR-query-52d0')
end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path {} end)
LUA
"$POLICY" pol-init.lua --domain example.com > p2.out 2>&1
clean "vks-policy init error" p2.out
shows "vks-policy init error" p2.out 'https://<redacted>@vault.internal:8200/v1?<redacted>'

cat > pol-load.lua <<'LUA'
error('policy needs https://ops:url-pw-LUASTR-init-9a4f3b@vault.internal')
LUA
"$POLICY" pol-load.lua --domain example.com > p3.out 2>&1
clean "vks-policy load error" p3.out
shows "vks-policy load error" p3.out 'https://<redacted>@vault.internal'

cat > pol-setup.lua <<'LUA'
local kumo = require 'kumo'
kumo.on('init', function()
  require('vault_keysource').setup { address = 'https://ops:url-pw-LUASTR-setup-0b7d2e@127.0.0.1:8200' }
end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path {} end)
LUA
"$POLICY" pol-setup.lua --domain example.com > p4.out 2>&1
clean "vks-policy setup error from the core" p4.out
shows "vks-policy setup error from the core" p4.out '<redacted>@127.0.0.1:8200'

cat > script.lua <<'LUA'
error('script failed at https://s:url-pw-LUASTR-script-e81c@h.example/x#frag', 0)
LUA
"$POLICY" --script script.lua > p5.out 2>&1
clean "vks-policy error escaping to the C host" p5.out
shows "vks-policy error escaping to the C host" p5.out 'https://<redacted>@h.example/x#<redacted>'

# --- the module, from plain lua5.4 -------------------------------------------------------------
cat > mod.lua <<'LUA'
local vks = require 'vault_keysource'
local function try(label, f, ...)
  local okk, e = pcall(f, ...)
  print(label .. ': ' .. (okk and 'no error' or tostring(e)))
end
try('setup userinfo', vks.setup, { address = 'https://ops:url-pw-LUASTR-setup-0b7d2e@127.0.0.1:8200' })
try('setup query', vks.setup, { address = 'https://127.0.0.1:8200/?token=url-tok-LUASTR-setup-q-4f19' })
try('setup scheme', vks.setup, { address = 'ftp://ops:url-pw-LUASTR-setup-0b7d2e@127.0.0.1' })
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = 'a',
  vault_address = 'https://u:url-pw-LUASTR-ks-66c2a0d1@127.0.0.1:8200' }, { domain = 'example.com' })
print('resolve userinfo: ' .. tostring(code) .. ' ' .. tostring(msg))
v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = 'a',
  vault_address = 'https://127.0.0.1:8200/v1?token=url-tok-LUASTR-ks-q-1d8e9b' })
print('resolve query: ' .. tostring(code) .. ' ' .. tostring(msg))
vks.audit_flush()
LUA
VKS_AUDIT_FILE="$W/audit39.jsonl" lua5.4 mod.lua > m1.out 2>&1
clean "module setup and resolve messages" m1.out
shows "setup error names the address" m1.out 'setup userinfo: vault_keysource.setup: '
shows "setup error with user info" m1.out '<redacted>@127.0.0.1:8200'
shows "setup error with a query" m1.out '127.0.0.1:8200/?<redacted>'
shows "keysource vault_address with user info" m1.out 'resolve userinfo: bad_keysource'
shows "keysource vault_address with a query" m1.out 'https://127.0.0.1:8200/v1?<redacted>'
clean "audit events of those lookups" audit39.jsonl
shows "audit events of those lookups" audit39.jsonl 'bad_keysource'

cat > env.lua <<'LUA'
local vks = require 'vault_keysource'
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = 'a' })
print('env: ' .. tostring(code) .. ' ' .. tostring(msg))
LUA
VAULT_ADDR='https://env:url-pw-LUASTR-env-3b5a71c9@127.0.0.1:8200' lua5.4 env.lua > m2.out 2>&1
clean "VAULT_ADDR with user info" m2.out
shows "VAULT_ADDR with user info" m2.out 'env: config'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
