-- The cache's Lua surface without Vault: vks.stats() shape and protection flags, secret handles
-- (reveal, len, redacted tostring, idempotent close / __close / __gc), vks.flush, vks.invalidate,
-- and the setup{cache = {...}} options (applied, validated, typos refused).
local T = require 'testlib'
local vks = require 'vault_keysource'

local work = T.workdir()
local HANDLE_SECRET = 'cache-lua-handle-PW-61c0e2'
local FILE_SECRET = 'cache-lua-file-PW-a83b5d'

T.test('stats has the counters, sizes and protection flags', function()
  local s = vks.stats()
  for _, k in ipairs { 'hits', 'misses', 'stale', 'refreshes', 'evictions', 'entries', 'locked_bytes',
                       'negative', 'errors', 'fetches', 'waits', 'coalesced', 'capacity' } do
    T.eq(math.type(s[k]), 'integer', 'stats.' .. k)
  end
  T.eq(type(s.protection), 'table', 'stats.protection')
  for _, k in ipairs { 'locked', 'dontdump', 'guard_pages', 'wipe_on_fork' } do
    T.eq(type(s.protection[k]), 'boolean', 'protection.' .. k)
  end
  -- run as root with the default 7 MiB arena: every protection is in force and reported
  T.eq(s.protection.dontdump, true, 'dontdump')
  T.eq(s.protection.guard_pages, true, 'guard_pages')
  T.ok(s.arena_bytes >= 7 * 1024 * 1024, 'arena size reported')
  if s.protection.locked then T.eq(s.locked_bytes, s.arena_bytes, 'locked bytes') end
  T.eq(s.ttl, 300.0, 'default ttl')
  T.eq(s.max_stale, 900.0, 'default max_stale')
  T.eq(s.neg_ttl, 5.0, 'default neg_ttl')
end)

T.test('a handle holds the value without a Lua string until reveal', function()
  local h = vks.resolve_handle({ key_data = HANDLE_SECRET })
  T.eq(type(h), 'userdata', 'handle type')
  T.eq(h:len(), #HANDLE_SECRET, 'len')
  T.eq(#h, #HANDLE_SECRET, '# operator')
  T.eq(tostring(h), 'vks.secret(' .. #HANDLE_SECRET .. ' bytes)', 'redacted tostring')
  T.not_contains(tostring(h), HANDLE_SECRET, 'tostring')
  T.eq(getmetatable(h), 'vks.secret', 'metatable is protected')
  T.same_secret(h:reveal(), HANDLE_SECRET, 'reveal')
  T.eq(h:closed(), false, 'open')
  h:close()
  h:close() -- idempotent
  T.eq(h:closed(), true, 'closed')
  T.eq(tostring(h), 'vks.secret(closed)', 'tostring when closed')
  T.raises('closed', h.reveal, h)
  T.raises('closed', h.len, h)
end)

T.test('to-be-closed handles and garbage-collected handles wipe their slot', function()
  local before = vks.stats().arena_in_use
  do
    local h <close> = vks.resolve_handle({ key_data = HANDLE_SECRET })
    T.ok(vks.stats().arena_in_use > before, 'the handle holds an arena slot')
  end
  T.eq(vks.stats().arena_in_use, before, '__close released the slot')
  for _ = 1, 50 do vks.resolve_handle({ key_data = HANDLE_SECRET }) end
  collectgarbage(); collectgarbage()
  T.eq(vks.stats().arena_in_use, before, '__gc released every slot')
  local h = vks.resolve_handle({ key_data = HANDLE_SECRET })
  h:close()
  h = nil
  collectgarbage(); collectgarbage() -- __gc after close: no double free (the arena aborts on one)
  T.eq(vks.stats().arena_in_use, before, 'no slot left')
end)

T.test('resolve_handle follows the failure convention and raises on misuse', function()
  T.fails('file_error', { work .. '/nope.pw' }, vks.resolve_handle, work .. '/nope.pw')
  T.fails('bad_keysource', { 'vault_mont' }, vks.resolve_handle, { vault_mont = 'secret', vault_path = 'x' })
  T.raises('bad argument #1', vks.resolve_handle, 42)
  T.raises('bad argument', vks.resolve_handle, { key_data = HANDLE_SECRET }, 'not a table')
  T.raises(nil, vks.resolve_handle)
end)

T.test('handles of file keysources, invalidate and flush', function()
  local path = T.write_file(work .. '/relay.pw', FILE_SECRET)
  local h <close> = vks.resolve_handle(path)
  T.same_secret(h:reveal(), FILE_SECRET, 'file through a handle')
  T.eq(math.type(vks.invalidate(path)), 'integer', 'invalidate returns a count')
  T.eq(vks.invalidate({ key_data = HANDLE_SECRET }), 0, 'key_data is never cached')
  T.fails('bad_keysource', { 'vault_pth' }, vks.invalidate, { vault_mount = 'm', vault_pth = 'p' })
  T.raises('bad argument #1', vks.invalidate, 12)
  T.eq(math.type(vks.flush()), 'integer', 'flush returns a count')
  T.eq(vks.stats().entries, 0, 'nothing cached after flush')
end)

T.test('setup{cache = ...} applies, validates and refuses typos', function()
  T.ok(vks.setup { cache = { ttl = 10, max_stale = '2m', neg_ttl = 0.5, capacity = 64, refresh = 0.5 } }, 'setup')
  local s = vks.stats()
  T.eq(s.ttl, 10.0, 'ttl')
  T.eq(s.max_stale, 120.0, 'max_stale from a duration string')
  T.eq(s.neg_ttl, 0.5, 'neg_ttl')
  T.eq(s.capacity, 64, 'capacity')
  T.eq(s.refresh, 0.5, 'refresh')
  T.raises('cache.tll', vks.setup, { cache = { tll = 3 } })
  T.raises('cache.ttl', vks.setup, { cache = { ttl = -1 } })
  T.raises('cache.refresh', vks.setup, { cache = { refresh = 2 } })
  T.raises('cache.max_stale', vks.setup, { cache = { max_stale = 'soon' } })
  T.raises('must be a table', vks.setup, { cache = 5 })
  T.eq(vks.stats().ttl, 10.0, 'a failed setup changed nothing')
  T.ok(vks.setup { cache = { require_locked = false, locked_bytes = s.arena_bytes } }, 'arena options')
  T.ok(vks.setup {}, 'setup without cache')
  T.eq(vks.stats().ttl, 300.0, 'back to the defaults')
end)

os.exit(T.done())
