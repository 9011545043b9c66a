-- The Lua binding's keysource memo (plugin/lvks.c, docs/internals/lua-module.md): a Vault keysource
-- table passed again is not parsed again, but the memo must never change an answer. Every lookup
-- of a reused table answers exactly as a fresh copy of the table would, after any change to it
-- (values, added and removed fields, numbers, another kind, another token); restrictions are
-- checked against each call's ctx; every lookup is audited; a setup change re-identifies; a
-- nested lookup from an audit callback and an error raised inside vks.resolve keep no value.
local T = require 'testlib'
T.reexec { VKS_CACHE_TTL = '300', VAULT_ADDR = false, VAULT_TOKEN = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW_A = 'memo-pw-LUA32M-aaaa-0c1d2e'
local PW_B = 'memo-pw-LUA32M-bbbb-3f4a5b'
local PW_O = 'memo-pw-LUA32M-other-6c7d8e'
local PW_V1 = 'memo-pw-LUA32M-ver1-9f0a1b'
local PW_V2 = 'memo-pw-LUA32M-ver2-2c3d4e'
local PW_R = 'memo-pw-LUA32M-restr-5f6a7b'
local PW_2ND = 'memo-pw-LUA32M-second-8c9d0e'
local PW_DATA = 'memo-pw-LUA32M-data-1f2a3b'
local LONG = 'smtp-auth/' .. string.rep('long-path-segment-', 4) .. 'example.com'

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- the same table and a fresh copy of it answer alike (value, or code and message)
local function same_answer(k, label)
  local v1, m1, c1 = vks.resolve(k)
  local v2, m2, c2 = vks.resolve(copy(k))
  T.eq(c1, c2, label .. ': code')
  T.eq(m1, m2, label .. ': message')
  T.same_secret(v1, v2, label .. ': value')
  return v1, c1
end

local vd = vaultdev.start { tls = true }
local vd2 = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local cb_lines = {}
  local nested = nil -- set by a test: the callback resolves it
  local nested_got = {}
  local opts = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
                 audit = { callback = function(line)
                   cb_lines[#cb_lines + 1] = line
                   local n = nested
                   nested = nil -- the nested lookup's own event calls back here: no recursion
                   if n then nested_got[#nested_got + 1] = vks.resolve(n) or false end
                 end } }
  vks.setup(opts)
  vd:kv2_put('smtp-auth/a.example', { key = PW_A })
  vd:kv2_put('smtp-auth/b.example', { key = PW_B, other = PW_O })
  vd:kv2_put('smtp-auth/v.example', { key = PW_V1 })
  vd:kv2_put('smtp-auth/v.example', { key = PW_V2 })
  vd:kv2_put(LONG, { key = PW_A })
  vd:policy('nothing', 'path "secret/data/other/*" { capabilities = ["read"] }')
  local weak = vd:create_token { policies = { 'nothing' }, ttl = '1h' }

  T.test('a reused table answers like a fresh copy after every change', function()
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example' }
    local steps = {
      { 'first', function() end, PW_A },
      { 'again (memo)', function() end, PW_A },
      { 'path changed', function() k.vault_path = 'smtp-auth/b.example' end, PW_B },
      { 'key added', function() k.vault_key = 'other' end, PW_O },
      { 'key removed', function() k.vault_key = nil end, PW_B },
      { 'key set to the default', function() k.vault_key = 'key' end, PW_B },
      { 'version pinned (integer)', function() k.vault_path = 'smtp-auth/v.example'; k.vault_version = 1 end, PW_V1 },
      { 'version 2', function() k.vault_version = 2 end, PW_V2 },
      { 'version as a float', function() k.vault_version = 1.0 end, PW_V1 },
      { 'version removed', function() k.vault_version = nil end, PW_V2 },
      { 'kv_version given', function() k.vault_kv_version = 2 end, PW_V2 },
      { 'kv_version 1 on a v2 mount', function() k.vault_kv_version = 1 end, nil },
      { 'kv_version removed', function() k.vault_kv_version = nil end, PW_V2 },
      { 'own token that may not read', function() k.vault_token = weak end, nil, 'permission_denied' },
      { 'own token removed', function() k.vault_token = nil end, PW_V2 },
      { 'own token that may read', function() k.vault_token = vd.root_token end, PW_V2 },
      { 'unknown field added', function() k.vault_token = nil; k.comment = 'x' end, nil },
      { 'unknown field removed', function() k.comment = nil end, PW_V2 },
      { 'mount of a wrong type', function() k.vault_mount = 7 end, nil, 'bad_keysource' },
      { 'mount restored', function() k.vault_mount = 'secret' end, PW_V2 },
      { 'becomes key_data', function() k.key_data = PW_DATA end, nil },
      { 'back to Vault', function() k.key_data = nil end, PW_V2 },
      { 'long path (a string that is not interned)', function() k.vault_path = LONG end, PW_A },
      { 'the same long text, another string object',
        function() k.vault_path = 'smtp-auth/' .. string.rep('long-path-segment-', 4) .. 'example' .. '.com' end, PW_A },
      { 'address of another server', function() k.vault_address = vd2.addr end, nil },
      { 'address removed', function() k.vault_address = nil end, PW_A },
    }
    for _, s in ipairs(steps) do
      s[2]()
      local v, code = same_answer(k, s[1])
      if s[3] then T.same_secret(v, s[3], s[1]) end
      if s[4] then T.eq(code, s[4], s[1] .. ': code') end
    end
  end)

  T.test('restrictions are checked against each call ctx on a reused table', function()
    vd:kv2_put('smtp-auth/r.example', { key = PW_R })
    vd:call('POST', '/v1/secret/metadata/smtp-auth/r.example', { custom_metadata = { allowed_domains = 'r.example' } })
    local r = { vault_mount = 'secret', vault_path = 'smtp-auth/r.example' }
    for i = 1, 4 do
      T.same_secret(vks.resolve(r, { domain = 'r.example' }), PW_R, 'allowed ' .. i)
      T.fails('restricted', { 'smtp-auth/r.example' }, vks.resolve, r, { domain = 'other.example' })
      T.fails('restricted', { 'smtp-auth/r.example' }, vks.resolve, r)
      local h = vks.resolve_handle(r, { domain = 'r.example' })
      T.same_secret(h:reveal(), PW_R, 'handle ' .. i)
      h:close()
      T.fails('restricted', { 'smtp-auth/r.example' }, vks.resolve_handle, r, { domain = 'x.example' })
    end
  end)

  T.test('every lookup of a reused table writes its own audit event', function()
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example' }
    T.same_secret(vks.resolve(k), PW_A, 'warm')
    local n0 = #cb_lines
    for _ = 1, 7 do T.same_secret(vks.resolve(k, { domain = 'audit.example' }), PW_A, 'hit') end
    T.eq(#cb_lines - n0, 7, 'events')
    for i = n0 + 1, #cb_lines do
      T.contains(cb_lines[i], '"outcome":"hit"', 'event ' .. i)
      T.contains(cb_lines[i], 'audit.example', 'event ' .. i .. ' ctx')
      T.not_contains(cb_lines[i], PW_A, 'event ' .. i)
    end
  end)

  T.test('a lookup nested in an audit callback has a value of its own', function()
    vd:kv2_put('smtp-auth/second.example', { key = PW_2ND })
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example' }
    nested = { vault_mount = 'secret', vault_path = 'smtp-auth/second.example' }
    local errs = vks.audit_stats().callback_errors
    local ok2, v = pcall(vks.resolve, k)
    nested = nil
    T.ok(ok2, 'no error')
    T.eq(vks.audit_stats().callback_errors, errs, 'callback errors')
    T.same_secret(v, PW_A, 'outer value')
    T.eq(#nested_got, 1, 'the callback ran one lookup')
    for i, got in ipairs(nested_got) do T.same_secret(got, PW_2ND, 'nested value ' .. i) end
    T.same_secret(vks.resolve(k), PW_A, 'outer again')
  end)

  T.test('an error raised inside resolve leaves no value behind', function()
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example' }
    T.same_secret(vks.resolve(k), PW_A, 'warm')
    local before = vks.stats().arena_in_use
    for _ = 1, 5 do
      T.raises('ctx', vks.resolve, k, 42)
      T.raises('ctx', vks.resolve, k, { domain = {} })
    end
    T.eq(vks.stats().arena_in_use, before, 'arena bytes in use')
    T.same_secret(vks.resolve(k), PW_A, 'resolve works after the errors')
    T.eq(vks.stats().arena_in_use, before, 'arena bytes in use after a hit')
  end)

  T.test('a setup change is seen by a reused table (the identity follows the configuration)', function()
    vd2:kv2_put('smtp-auth/a.example', { key = PW_B })
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example' }
    T.same_secret(vks.resolve(k), PW_A, 'first server')
    local o2 = copy(opts)
    o2.address, o2.ca_cert, o2.token = vd2.addr, vd2.cacert, vd2.root_token
    local _, changed = vks.setup(o2)
    T.eq(changed, true, 'changed')
    T.same_secret(vks.resolve(k), PW_B, 'second server')
    T.same_secret(vks.resolve(k), PW_B, 'second server, hit')
    _, changed = vks.setup(opts)
    T.eq(changed, true, 'changed back')
    T.same_secret(vks.resolve(k), PW_A, 'first server again')
  end)

  T.test('values of every size come back whole through the reused value box', function()
    local sizes = { 1, 15, 16, 17, 31, 32, 33, 100, 200, 1000, 4000 }
    local tables = {}
    for i, n in ipairs(sizes) do
      local v = string.rep(string.char(64 + i), n - 1) .. 'Z'
      vd:kv2_put('smtp-auth/size' .. n, { key = v })
      tables[i] = { t = { vault_mount = 'secret', vault_path = 'smtp-auth/size' .. n }, v = v }
    end
    for _, x in ipairs(tables) do T.same_secret(vks.resolve(x.t), x.v, 'warm') end
    local before = vks.stats().arena_in_use
    for round = 1, 3 do
      for i = #tables, 1, -1 do T.same_secret(vks.resolve(tables[i].t), tables[i].v, 'down ' .. round) end
      for i = 1, #tables do T.same_secret(vks.resolve(tables[i].t), tables[i].v, 'up ' .. round) end
    end
    -- the box keeps one slot of the size it last needed: at most the largest class more or less
    local after = vks.stats().arena_in_use
    T.ok(math.abs(after - before) <= 4096, 'arena bytes in use stay put (' .. before .. ' -> ' .. after .. ')')
    for _ = 1, 3 do
      for i = 1, #tables do T.same_secret(vks.resolve(tables[i].t), tables[i].v, 'again') end
    end
    T.eq(vks.stats().arena_in_use, after, 'no growth over more rounds')
  end)

  T.test('collected keysource tables release what their memo held', function()
    local before
    for round = 1, 2 do
      for _ = 1, 200 do
        local k = { vault_mount = 'secret', vault_path = 'smtp-auth/a.example', vault_token = vd.root_token }
        T.same_secret(vks.resolve(k), PW_A, 'value')
        T.same_secret(vks.resolve(k), PW_A, 'value, memo')
      end
      collectgarbage(); collectgarbage()
      if round == 1 then before = vks.stats().arena_in_use end
    end
    T.eq(vks.stats().arena_in_use, before, 'arena bytes in use after two rounds')
  end)
end)
vd:stop()
vd2:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
