#!/usr/bin/env bash
# A process that resolved secrets through the Lua module's handles (Vault keysources, served from
# the cache: an ENC: value and a plaintext one, 3 handles each) and then aborts leaves a core file
# that contains none of the ENC: value's bytes, and no copy of the plaintext value made by the
# cache or the handles, and no copy at all of the plaintext value: libcurl's buffers are wiped or
# kept out of dumps (vks_curlmem), OpenSSL cleanses decrypted records, and the vector registers
# that carried the body are zeroed (docs/internals/curlmem.md). The plaintext value is fetched
# last, so every transport buffer would still hold it. The positive control reveals the ENC:
# handle into a Lua string: its core must contain that secret, so the check can fail. Cores are deleted once checked (the secret scan reads core* files).
#
# core_pattern: used as it is when it names a plain file; when it is a pipe or an absolute path
# and we are root, it points at this suite's directory for the test and is restored on exit.
set -u
H="$ROOT/$BUILD/tests/helpers/cache_threads"
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

if ldd "$H" 2>/dev/null | grep -qE 'libasan|libtsan'; then
  echo "sanitizer build: core files are not comparable here, skipped"; finish
fi

PW_PLAIN=cache-core-PW-plain-31d7a0
PW_ENC=cache-core-PW-enc-94b2e6

pattern_file=/proc/sys/kernel/core_pattern
orig_pattern=$(cat "$pattern_file")
restore() { [ -n "${changed:-}" ] && printf '%s\n' "$orig_pattern" > "$pattern_file"; }
trap restore EXIT
case "$orig_pattern" in
  '|'* | /*)
    if [ "$(id -u)" -eq 0 ] && printf '%s\n' "$W/core.%p" > "$pattern_file" 2>/dev/null; then
      changed=1; echo "core_pattern temporarily set to $W/core.%p (was: $orig_pattern)"
    else
      bad "core_pattern is '$orig_pattern' and cannot be pointed at a file here"; finish
    fi ;;
  *) echo "core_pattern: '$orig_pattern' (a file in the working directory)" ;;
esac
ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)"
[ "$(ulimit -c)" != 0 ] || { bad "core files are disabled here (hard RLIMIT_CORE is 0)"; finish; }

# the encryption key in a file (not in the environment, which every core contains)
head -c 32 /dev/urandom > enc.key; chmod 600 enc.key
export VKS_ENCRYPTION_KEY_FILE="$W/enc.key"

cat > hold.lua <<'LUA'
-- resolves through handles only (the values never become Lua strings), keeps them open
local vks = require 'vault_keysource'
HANDLES = {}
for _, p in ipairs { 'enc', 'plain' } do -- plain last: the transport's buffers hold it
  for i = 1, 3 do -- a miss, then hits from the cache
    local h, msg, code = vks.resolve_handle({ vault_mount = 'secret', vault_path = 'cache-core/' .. p })
    if not h then error('resolve_handle ' .. p .. ': ' .. tostring(code) .. ' ' .. tostring(msg)) end
    HANDLES[#HANDLES + 1] = h
  end
end
if os.getenv('CACHE_REVEAL') then KEPT = HANDLES[1]:reveal() end -- the positive control (ENC: value)
collectgarbage()
LUA

cat > orchestrate.lua <<'LUA'
local vaultdev = require 'vaultdev'
local W, H, TOOL = arg[1], arg[2], arg[3]
local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  vd:kv2_put('cache-core/plain', { key = os.getenv('PW_PLAIN') })
  local p = io.popen(string.format("printf '%%s' '%s' | '%s' encrypt --mount secret --path cache-core/enc --key key",
    os.getenv('PW_ENC'), TOOL))
  local env = p:read('a'):gsub('%s+$', '')
  p:close()
  assert(env:sub(1, 4) == 'ENC:', 'envelope_tool did not encrypt')
  vd:kv2_put('cache-core/enc', { key = env })
  -- the token from ~/.vault-token, not the environment
  local f = assert(io.open(W .. '/.vault-token', 'w')); f:write(vd.root_token); f:close()
  for _, run in ipairs { 'held', 'control' } do
    os.execute(string.format("mkdir -p '%s/%s'", W, run))
    local cmd = string.format("cd '%s/%s' && env -u VAULT_TOKEN -u PW_PLAIN -u PW_ENC HOME='%s' VAULT_ADDR='%s' VAULT_CACERT='%s' %s " ..
      "sh -c 'ulimit -c unlimited; exec \"%s\" abort \"%s/hold.lua\"' > '%s/%s.out' 2> '%s/%s.err'",
      W, run, W, vd.addr, vd.cacert, run == 'control' and 'CACHE_REVEAL=1' or '', H, W, W, run, W, run)
    local _, how, code = os.execute(cmd)
    print(run .. ': ' .. tostring(how) .. ' ' .. tostring(code))
  end
end)
vd:stop()
if not ok then print('orchestrator failed: ' .. tostring(err)); os.exit(1) end
LUA

PW_PLAIN=$PW_PLAIN PW_ENC=$PW_ENC lua5.4 orchestrate.lua "$W" "$H" "$ROOT/$BUILD/tests/helpers/envelope_tool" > orchestrate.out 2>&1
cat orchestrate.out
rm -f "$W/.vault-token"

core_of() { ls -t "$W/$1"/core* "$W"/core.* 2>/dev/null | head -n 1; }
held=$(core_of held)
if [ -n "$held" ] && [ -s "$held" ] && grep -q 'aborting with the state alive' held.out; then
  ok "the process holding 6 handles aborted and left a core ($(stat -c %s "$held") bytes)"
  # ENC: values: only ciphertext crosses libcurl/OpenSSL; the plaintext exists only in the arena
  if grep -aqF "$PW_ENC" "$held"; then bad "the core contains the decrypted ENC: value"; else ok "the core contains no decrypted ENC: value (3 handles and the cache entry held it)"; fi
  piece=${PW_ENC:9:14}
  if grep -aqF "$piece" "$held"; then bad "the core contains a 14-byte piece of the ENC: value"; else ok "the core contains no 14-byte piece of the ENC: value"; fi
  # plaintext Vault values: the HTTP body crosses libcurl's and OpenSSL's buffers and the CPU's
  # vector registers; none of those may keep a copy, and neither may the cache or the handles.
  n=$(/usr/bin/python3 -c 'import sys; print(open(sys.argv[1],"rb").read().count(sys.argv[2].encode()))' "$held" "$PW_PLAIN")
  if [ "$n" -eq 0 ]; then
    ok "the core contains no copy of the plaintext Vault value (fetched last; libcurl, OpenSSL, registers, cache, handles)"
  else
    bad "the plaintext Vault value appears $n time(s) in the core"
  fi
  piece=${PW_PLAIN:9:14}
  if grep -aqF "$piece" "$held"; then bad "the core contains a 14-byte piece of the plaintext value"; else ok "the core contains no 14-byte piece of the plaintext value"; fi
  if /usr/bin/python3 -c 'import sys; sys.exit(0 if open(sys.argv[2],"rb").read() in open(sys.argv[1],"rb").read() else 1)' "$held" enc.key; then
    bad "the core contains the encryption key"
  else
    ok "the core contains no encryption key bytes"
  fi
else
  bad "no core from the holding process: $(head -c 300 held.out 2>/dev/null) $(head -c 300 held.err 2>/dev/null)"
fi
[ -n "${KEEP_CORE:-}" ] || rm -f "$held"

control=$(core_of control)
if [ -n "$control" ] && [ -s "$control" ]; then
  if grep -aqF "$PW_ENC" "$control"; then ok "positive control: the same ENC: value revealed into a Lua string is in the core"; else bad "positive control: the revealed value is not in the core (check is blind)"; fi
else
  bad "no core from the control process: $(head -c 300 control.out 2>/dev/null)"
fi
rm -f "$control"
finish
