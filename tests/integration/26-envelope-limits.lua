-- Envelope size limits agree (issue 10, item 12; docs/internals/envelope.md "Size limits"): the
-- longest plaintext `vks envelope encrypt` accepts gives an envelope that every keysource form
-- takes (key_data, a file holding the CLI's output with its newline, a Vault value), in the
-- versioned and the legacy form; one byte more is refused by the CLI naming the limit; a value
-- over 4096 bytes is refused by every form with its own code.
local T = require 'testlib'
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
T.reexec {
  VKS_CACHE_TTL = '0', VAULT_ADDR = false, VAULT_TOKEN = false, HOME = WORK,
  VKS_ENCRYPTION_KEY = 'ZW52ZWxvcGUtbGltaXRzLXRlc3Qta2V5LTAxMjM0NTY=', -- envelope-limits-test-key-0123456
  VKS_ENCRYPTION_KEY_FILE = false, VKS_ENCRYPTION_KEYS = false, MAIL_PROXY_ENCRYPTION_KEY = false,
  VKS_ENCRYPTION_KEYRING_FILE = false,
}
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local ROOT = os.getenv('ROOT') or '.'
local BUILD = os.getenv('BUILD') or 'build'
local VKS = (BUILD:sub(1, 1) == '/' and BUILD or ROOT .. '/' .. BUILD) .. '/vks'
local MARK = 'envelope-limit-TEST-9f3a'
local MAX = { v2 = 3032, legacy = 3038 } -- under key id "default" (VKS_ENCRYPTION_KEY), and legacy

local function plain(n) return MARK .. string.rep('p', n - #MARK) end

-- Runs `vks envelope encrypt` on n plaintext bytes; returns exit status, stdout, stderr.
local function encrypt(n, mount, path, key, legacy)
  local pf = T.write_file(WORK .. '/plain.tmp', plain(n))
  local out, errf = WORK .. '/enc.out', WORK .. '/enc.err'
  local cmd = string.format('%s envelope encrypt --mount %s --path %s --key %s %s < %s > %s 2> %s', T.shq(VKS),
    T.shq(mount), T.shq(path), T.shq(key), legacy and '--legacy' or '', T.shq(pf), T.shq(out), T.shq(errf))
  local ok, how, code = os.execute(cmd)
  os.remove(pf)
  local function slurp(p) local f = io.open(p, 'rb'); local d = f:read('a'); f:close(); return d end
  return (ok and 0 or (how == 'exit' and code or 128)), slurp(out), slurp(errf)
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
    min_retry_wait = '10ms', max_retry_wait = '20ms' }

  for _, form in ipairs { 'v2', 'legacy' } do
    local legacy = form == 'legacy'
    local max = MAX[form]

    T.test(form .. ': the longest plaintext (' .. max .. ' bytes) reads through key_data, a file and Vault', function()
      local rc, env, e = encrypt(max, '', '', '', legacy)
      T.eq(rc, 0, 'encrypt at the limit: ' .. e)
      T.eq(env:sub(-1), '\n', 'the CLI ends its envelope with a newline')
      T.ok(#env <= 4096, 'envelope plus newline fits 4096 bytes: ' .. #env)
      local bare = env:gsub('%s+$', '')
      T.same_secret(vks.resolve { key_data = bare }, plain(max), 'key_data')
      local f = T.write_file(WORK .. '/limit-' .. form .. '.enc', env)
      T.same_secret(vks.resolve(f), plain(max), 'file as the CLI wrote it')
      local rc2, venv, e2 = encrypt(max, 'secret', 'limits/' .. form, 'key', legacy)
      T.eq(rc2, 0, 'encrypt for Vault: ' .. e2)
      vd:kv2_put('limits/' .. form, { key = venv:gsub('%s+$', '') })
      T.same_secret(vks.resolve { vault_mount = 'secret', vault_path = 'limits/' .. form }, plain(max), 'Vault')
    end)

    T.test(form .. ': one byte more is refused by vks envelope encrypt, naming the limit', function()
      local rc, env, e = encrypt(max + 1, 'secret', 'limits/' .. form, 'key', legacy)
      T.eq(rc, 1, 'exit status')
      T.eq(env, '', 'no envelope printed')
      T.contains(e, 'at most ' .. max .. ' bytes', 'message')
      T.contains(e, '4096', 'message names the cap of the keysource forms')
      T.not_contains(e, MARK, 'no plaintext in the message')
    end)
  end

  T.test('a value over 4096 bytes is refused by every form, with its own code', function()
    local _, env = encrypt(MAX.v2, '', '', '')
    local long = env:gsub('%s+$', '') .. string.rep('A', 4)  -- 4099 bytes
    T.fails('bad_keysource', { 'key_data', '4096' }, vks.resolve, { key_data = long })
    local f = T.write_file(WORK .. '/limit-long.enc', long)
    T.fails('file_error', { 'larger than 4096' }, vks.resolve, f)
    vd:kv2_put('limits/long', { key = long })
    T.fails('bad_response', { 'larger than 4096' }, vks.resolve, { vault_mount = 'secret', vault_path = 'limits/long' })
  end)
end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
