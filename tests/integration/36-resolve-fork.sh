#!/usr/bin/env bash
# fork(): a Lua host (tests/helpers/fork_host) sets the module up, looks secrets up (so the pool
# holds a live TLS connection and the cache holds values), then forks children that each do many
# lookups while the parent keeps looking up, and each child forks a grandchild. Covered:
#  - token auth (token from setup, from ~/.vault-token), AppRole (secret_id from setup, from a
#    secret_id_file) and ENC: values (Vault, and
#    key_data opened with the keys alone): every child and grandchild gets every value right;
#  - the child's cache starts empty (its first lookup is a miss) and its fork generation moved;
#    a value handle made in the parent raises in the child instead of revealing zeros;
#  - no child keeps a socket of its parent after its lookups, and the parent's own connection is
#    the same socket before and after the children ran (nobody wrote on it: max_retries = 0);
#  - background threads of the parent look up while the main thread forks (TSan: tsan-suites);
#  - fork = 'strict' (setup option) and VKS_FORK=strict: a child's lookup through the inherited
#    client is auth_failed and an ENC: value is decrypt_failed, both naming fork = 'strict';
#    vks.setup in the child makes it work again; the parent is unaffected.
set -u
cd "$VKS_SUITE_WORK" || exit 1
H="$ROOT/$BUILD/tests/helpers/fork_host"
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
N=${VKS_FORK_CHILDREN:-4}; M=${VKS_FORK_LOOKUPS:-25}
case "$BUILD" in *tsan*|*asan*) N=3; M=10 ;; esac

SECRETS="$ROOT/tests/test-secrets.d/forkfiles.txt"
sec() { grep -m1 "$1" "$SECRETS"; }
export PW=$(sec 'relay-pw-FORK36-plain') PW_ENC=$(sec 'relay-pw-FORK36-encrypted')
export PW_AR=$(sec 'relay-pw-FORK36-approle') SECRET_ID=$(sec 'secret-id-FORK36')
export ROLE_ID=relay-role-FORK36
export VKS_ENCRYPTION_KEY=$(printf '%s' "$(sec 'fork-test-key-FORK36')" | base64)
unset VKS_ENCRYPTION_KEY_FILE VKS_ENCRYPTION_KEYS VKS_ENCRYPTION_KEYRING_FILE VKS_FORK
export HOME=$VKS_SUITE_WORK

VD_WORK=$(mktemp -d "$VKS_SUITE_WORK/vd-XXXXXX")
ROOT_TOKEN=$(grep -m1 '^vault-dev-root-TEST' "$ROOT/tests/test-secrets.d/dev.txt")
"$ROOT/$BUILD/vault-dev" --addr 127.0.0.1:0 --tls-dir "$VD_WORK/tls" --root-token "$ROOT_TOKEN" \
    > "$VD_WORK/vault-dev.out" 2> "$VD_WORK/vault-dev.err" < /dev/null &
VD_PID=$!
trap 'kill $VD_PID 2>/dev/null; wait $VD_PID 2>/dev/null' EXIT
for _ in $(seq 200); do grep -q '^VAULT_CACERT=' "$VD_WORK/vault-dev.out" 2>/dev/null && break; sleep 0.05; done
export VAULT_ADDR=$(sed -n 's/^VAULT_ADDR=//p' "$VD_WORK/vault-dev.out")
export VAULT_CACERT=$(sed -n 's/^VAULT_CACERT=//p' "$VD_WORK/vault-dev.out")
export TOKEN=$ROOT_TOKEN
unset VAULT_TOKEN
[ -n "$VAULT_ADDR" ] || { bad "vault-dev did not start"; echo "$pass passed, $fail failed"; exit 1; }
vd() { # METHOD PATH [JSON]: a request to vault-dev with the root token (body from stdin)
  curl -sf --cacert "$VAULT_CACERT" -H @<(printf 'X-Vault-Token: %s\n' "$ROOT_TOKEN") -X "$1" \
       ${3:+--data @-} "$VAULT_ADDR/v1/$2" <<< "${3:-}" > /dev/null
}
env_tool() { "$ROOT/$BUILD/tests/helpers/envelope_tool" "$@"; }
ENC_VAULT=$(printf '%s' "$PW_ENC" | env_tool encrypt --mount secret --path smtp-auth/fork-enc --key key)
export ENC_KD=$(printf '%s' "$PW_ENC" | env_tool encrypt)
vd POST secret/data/smtp-auth/fork-plain "{\"data\":{\"key\":\"$PW\"}}" || bad "seeding the plain secret"
vd POST secret/data/smtp-auth/fork-enc "{\"data\":{\"key\":\"$ENC_VAULT\"}}" || bad "seeding the ENC: secret"
vd POST secret/data/smtp-auth/fork-approle "{\"data\":{\"key\":\"$PW_AR\"}}" || bad "seeding the approle secret"
vd POST sys/auth/approle '{"type":"approle"}'
vd POST sys/policies/acl/relay '{"policy":"path \"secret/data/smtp-auth/*\" { capabilities = [\"read\"] }"}'
vd POST auth/approle/role/relay '{"token_policies":["relay"],"token_ttl":"1h"}'
vd POST auth/approle/role/relay/role-id "{\"role_id\":\"$ROLE_ID\"}"
vd POST auth/approle/role/relay/custom-secret-id "{\"secret_id\":\"$SECRET_ID\"}" || bad "AppRole setup"

cat > main.lua <<'LUA'
local vks = require 'vault_keysource'
local N, M = tonumber(os.getenv('N')), tonumber(os.getenv('M'))
local MODE, DEPTH = os.getenv('MODE'), tonumber(os.getenv('DEPTH') or '1')
local PW, PW_ENC, PW_AR = os.getenv('PW'), os.getenv('PW_ENC'), os.getenv('PW_AR')
local K = { vault_mount = 'secret', vault_path = 'smtp-auth/fork-plain' }
local KE = { vault_mount = 'secret', vault_path = 'smtp-auth/fork-enc' }
local KA = { vault_mount = 'secret', vault_path = 'smtp-auth/fork-approle' }
local KD = { key_data = os.getenv('ENC_KD') }
local opts = { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'), timeout = '20s',
               max_retries = 0, cache = { ttl = tonumber(os.getenv('TTL')) } }
if MODE == 'approle' then
  opts.role_id, opts.secret_id = os.getenv('ROLE_ID'), os.getenv('SECRET_ID')
elseif MODE == 'approle_file' then
  opts.role_id, opts.secret_id_file = os.getenv('ROLE_ID'), os.getenv('SECRET_ID_FILE')
elseif MODE ~= 'tokenfile' then -- tokenfile: the token comes from ~/.vault-token
  opts.token = os.getenv('TOKEN')
end
if MODE == 'strict' then opts.fork = 'strict' end
vks.setup(opts)

local function say(...) io.stderr:write(string.format(...), '\n') end
local function expect(key, want, tag)
  local v, msg, code = vks.resolve(key, { domain = 'fork.example' })
  if v == want then return 0 end
  say('%s (pid %d): %s %s', tag, host.getpid(), tostring(code), tostring(msg))
  return 1
end
local function lookups(tag, m)
  local f = 0
  for _ = 1, m do
    if MODE == 'approle' or MODE == 'approle_file' then
      f = f + expect(KA, PW_AR, tag)
    else
      f = f + expect(K, PW, tag) + expect(KE, PW_ENC, tag)
    end
    f = f + expect(KD, PW_ENC, tag)
  end
  return f
end
local VPORT = tonumber(os.getenv('VAULT_ADDR'):match(':(%d+)$'))
local function sockets(pid) -- the inodes of the TCP connections to Vault a process holds
  local to_vault = {}
  for _, f in ipairs { '/proc/net/tcp', '/proc/net/tcp6' } do
    local fh = io.open(f, 'r')
    if fh then
      for line in fh:lines() do
        local rport, inode = line:match('^%s*%d+: %x+:%x+ %x+:(%x+) %x+ %S+ %S+ %S+ +%d+ +%d+ (%d+)')
        if rport and tonumber(rport, 16) == VPORT then to_vault[inode] = true end
      end
      fh:close()
    end
  end
  local set, n = {}, 0
  local p = io.popen('ls -l /proc/' .. pid .. '/fd 2>/dev/null')
  for inode in p:read('a'):gmatch('socket:%[(%d+)%]') do
    if to_vault[inode] then set[inode] = true; n = n + 1 end
  end
  p:close()
  return set, n
end

local fails = lookups('parent warm-up', 2)
local parent_socks, nps = sockets(host.getpid())
if nps == 0 then say('the parent holds no connection to reuse'); fails = fails + 1 end
local parent_gen = vks.stats().fork.generation
local handle = assert(vks.resolve_handle(KD)) -- a value in the parent's (wipe-on-fork) memory

local function strict_child()
  local f = 0
  for _, c in ipairs { { K, 'auth_failed' }, { KD, 'decrypt_failed' } } do
    local v, msg, code = vks.resolve(c[1])
    if v ~= nil or code ~= c[2] or not tostring(msg):find("fork = 'strict'", 1, true) then
      say('strict child: want %s naming fork = strict, got %s %s', c[2], tostring(code), tostring(msg)); f = f + 1
    end
  end
  vks.setup(opts) -- configuring the child again makes it work
  return f + lookups('strict child after setup', M)
end

local function child(depth)
  local f = 0
  local st = vks.stats()
  if st.fork.generation == parent_gen then say('the fork generation did not move'); f = f + 1 end
  if st.entries ~= 0 then say('the child inherited %d cache entries', st.entries); f = f + 1 end
  -- the parent's handle reads zeros here: revealing it raises instead of returning them
  if depth == 1 then
    local hok, herr = pcall(handle.reveal, handle)
    if hok or not tostring(herr):find('wiped by fork', 1, true) then
      say('a parent handle revealed in the child: %s', tostring(herr)); f = f + 1
    end
    handle:close()
  end
  if MODE == 'strict' then return f + strict_child() end
  local misses = st.misses
  f = f + lookups('child', 1)
  if vks.stats().misses == misses then say('the first lookup in the child was not a miss'); f = f + 1 end
  f = f + lookups('child', M - 1)
  local mine = sockets(host.getpid())
  for inode in pairs(parent_socks) do
    if mine[inode] then say('the child still holds the parent socket %s', inode); f = f + 1 end
  end
  if depth < DEPTH then
    local g = host.fork()
    if g == 0 then host.exit(child(depth + 1) == 0 and 0 or 1) end
    if host.wait(g) ~= 0 then say('a grandchild failed'); f = f + 1 end
  end
  return f
end

local pids = {}
for i = 1, N do
  local pid = host.fork()
  -- half the children end with exit() (atexit handlers, LeakSanitizer in ASan builds), half _exit()
  local how = (os.getenv('EXIT') or (i % 2 == 0 and 'exit' or '_exit'))
  if pid == 0 then host.exit(child(1) == 0 and 0 or 1, how) end
  pids[#pids + 1] = pid
end
fails = fails + lookups('parent while the children run', M)
for _, pid in ipairs(pids) do
  local rc = host.wait(pid)
  if rc ~= 0 then say('child %d ended with %d', pid, rc); fails = fails + 1 end
end
fails = fails + lookups('parent after the children', 3)
if handle:reveal() ~= PW_ENC then say('the parent lost its handle'); fails = fails + 1 end
if MODE ~= 'strict' and tonumber(os.getenv('TTL')) == 0 then
  local after = sockets(host.getpid())
  local kept = false
  for inode in pairs(parent_socks) do kept = kept or after[inode] end
  if not kept then say('the parent lost its connection while the children ran'); fails = fails + 1 end
end
return fails
LUA

cat > bg.lua <<'LUA'
local vks = require 'vault_keysource'
local K = { vault_mount = 'secret', vault_path = 'smtp-auth/fork-plain' }
local said = false
local function check(v, want, msg, code)
  if v == want then return 0 end
  if not said then io.stderr:write('background: ', tostring(code), ' ', tostring(msg), '\n'); said = true end
  return 1
end
return function(i)
  local v, msg, code = vks.resolve(K, { domain = 'bg' .. i })
  local f = check(v, os.getenv('PW'), msg, code)
  v, msg, code = vks.resolve({ key_data = os.getenv('ENC_KD') })
  return f + check(v, os.getenv('PW_ENC'), msg, code)
end
LUA

run() { # NAME, env assignments..., then optional -- BG
  local name=$1; shift
  local out rc
  out=$(env N="$N" M="$M" "$@" timeout 300 "$H" main.lua ${BGARGS:-} 2>&1); rc=$?
  if [ $rc -eq 0 ]; then ok "$name"; else bad "$name (rc=$rc): $(echo "$out" | grep -v "^ok" | head -40)"; fi
}

run "token: $N children x $M lookups (+ grandchildren), no cache, parent busy meanwhile" MODE=token TTL=0 DEPTH=2
# (not under ThreadSanitizer: the child starts its own cache refresh thread after a fork of a
# process that had one, which TSan refuses: "starting new threads after multi-threaded fork is not
# supported", and with die_after_fork=0 its thread registry fails "dup thread with used id")
if [ "${BUILD%tsan}" = "$BUILD" ]; then
  run "token: with the cache: children start empty and miss first" MODE=token TTL=300 DEPTH=2
fi
run "AppRole (secret_id from setup): children and grandchildren log in with kept credentials" MODE=approle TTL=0 DEPTH=2
printf '%s\n' "$SECRET_ID" > secret-id; chmod 600 secret-id
run "AppRole (secret_id_file): children and grandchildren" MODE=approle_file SECRET_ID_FILE="$PWD/secret-id" TTL=0 DEPTH=2
mkdir -p tokhome; printf '%s\n' "$ROOT_TOKEN" > tokhome/.vault-token; chmod 600 tokhome/.vault-token
run "token from ~/.vault-token: children and grandchildren" MODE=tokenfile HOME="$PWD/tokhome" TTL=0 DEPTH=2
# (the background threads may look up before main.lua's setup: the environment has the token too)
# (children _exit(): the Lua states and OpenSSL thread state of the parent's background threads
# are unreachable in a child, and LeakSanitizer would report them at exit().) Not under ASan: its
# allocator (gcc 12's libsanitizer) does not lock itself around fork(), so a child forked while
# another thread allocates hangs inside ASan's malloc (seen with gdb); glibc's malloc and TSan do.
if [ "${BUILD%asan}" = "$BUILD" ]; then
  BGARGS="bg.lua 3" run "token: 3 background threads look up while the main thread forks" MODE=token TTL=0 \
      DEPTH=1 VAULT_TOKEN="$ROOT_TOKEN" VKS_CACHE_TTL=0 EXIT=_exit
fi
# the audit log: every child starts its own chain in the same file; the whole file verifies
AKEY=$(printf '%s' 'audit-key-FORK36-0123456789abcdef' | head -c 32 | base64)
rm -f audit36.jsonl
run "audit file sink: parent and children log to one file" MODE=token TTL=0 DEPTH=2 N=2 M=3 \
    VKS_AUDIT_FILE="$PWD/audit36.jsonl" VKS_AUDIT_KEY="$AKEY"
out=$(VKS_AUDIT_KEY="$AKEY" "$ROOT/$BUILD/vks" audit verify audit36.jsonl 2>&1); rc=$?
chains=$(grep -c '"type":"audit.open"' audit36.jsonl 2>/dev/null)
if [ $rc -eq 0 ] && [ "${chains:-0}" -ge 5 ]; then ok "the audit log of parent, children and grandchildren verifies ($chains chains)"
else bad "audit verify after fork (rc=$rc, chains=$chains): $(echo "$out" | head -5)"; fi
run "fork = 'strict': inherited token auth_failed, ENC: decrypt_failed, setup in the child works" MODE=strict TTL=0 DEPTH=1
# VKS_FORK=strict from the environment: setup without the option keeps the environment's mode
out=$(env N=1 M=2 MODE=token TTL=0 DEPTH=1 VKS_FORK=strict timeout 120 "$H" main.lua 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ "$out" == *"fork = 'strict'"* ]]; then ok "VKS_FORK=strict: a child's inherited lookups are refused by name"
else bad "VKS_FORK=strict (rc=$rc): $(echo "$out" | head -5)"; fi
out=$(lua5.4 -e "print(pcall(require('vault_keysource').setup, { fork = 'sometimes' }))" 2>&1)
[[ "$out" == *'setup option fork must be "inherit" or "strict"'* ]] && ok "a bad fork option is refused by name" || bad "bad fork option: $out"
out=$(env VKS_FORK=sometimes lua5.4 -e "print(pcall(require('vault_keysource').setup, {}))" 2>&1)
[[ "$out" == *'VKS_FORK must be "inherit" or "strict"'* ]] && ok "a bad VKS_FORK is refused by name" || bad "bad VKS_FORK: $out"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
