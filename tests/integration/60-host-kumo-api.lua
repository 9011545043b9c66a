-- The kumo API and the shaping helper of the policy host, run inside build/vks-policy (the TOML
-- and JSON parsers are builtins of that binary): started by tests/run with lua5.4, this file
-- re-runs itself with `vks-policy --script`.
if not package.preload['vks_host.toml'] then
  local root, build = os.getenv('ROOT'), os.getenv('BUILD') or 'build'
  local me = debug.getinfo(1, 'S').source:sub(2)
  local ok, how, code = os.execute(string.format('%q --script %q', root .. '/' .. build
    .. '/vks-policy', me))
  if not ok then
    print(string.format('vks-policy --script ended with %s %s', tostring(how), tostring(code)))
    print('0 passed, 1 failed')
    os.exit(1)
  end
  os.exit(0)
end

local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local ROOT = os.getenv('ROOT')
local SECRET = 'inline-secret-KUMO-5c1d8e' -- listed in tests/test-secrets.d/host.txt

local passed, failed = 0, 0
local function test(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
    print('ok   ' .. name)
  else
    failed = failed + 1
    print('FAIL ' .. name .. ': ' .. tostring(err))
  end
end
local function eq(a, b, what)
  if a ~= b then
    error(string.format('%s: expected %s, got %s', what or 'value', tostring(b), tostring(a)), 2)
  end
end
local function raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then
    error('expected an error matching ' .. pattern, 2)
  end
  if not tostring(err):find(pattern, 1, true) then
    error(string.format('error %q does not contain %q', tostring(err), pattern), 2)
  end
  return tostring(err)
end
local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
  return path
end

-- make_egress_path ---------------------------------------------------------------------------

test('make_egress_path accepts the AUTH fields and applies defaults', function()
  local p = kumo.make_egress_path {
    smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = { key_data = SECRET },
    allow_smtp_auth_plain_without_valid_certificate = true,
  }
  eq(kumo.is_egress_path(p), true, 'is_egress_path')
  eq(p.enable_tls, 'Opportunistic', 'default enable_tls')
  eq(p.smtp_port, 25, 'default smtp_port')
  eq(p.allow_smtp_auth_plain_without_tls, false, 'default allow_without_tls')
  eq(p.allow_smtp_auth_plain_without_valid_certificate, true, 'allow_without_valid_certificate')
  eq(p.smtp_auth_plain_password.key_data, SECRET, 'keysource kept for the resolver')
end)

test('make_egress_path rejects unknown fields like serde deny_unknown_fields', function()
  raises(function()
    kumo.make_egress_path { enable_tls = 'Required', smtp_auth_plain_usrname = 'daniel' }
  end, 'unknown field `smtp_auth_plain_usrname`')
end)

test('make_egress_path checks enable_tls, booleans and smtp_port', function()
  raises(function() kumo.make_egress_path { enable_tls = 'Yes' } end, 'enable_tls')
  raises(function() kumo.make_egress_path { allow_smtp_auth_plain_without_tls = 'true' } end,
    'allow_smtp_auth_plain_without_tls')
  raises(function() kumo.make_egress_path { smtp_port = 70000 } end, 'smtp_port')
end)

test('keysource shapes are checked when the path is made', function()
  raises(function() kumo.make_egress_path { smtp_auth_plain_password = 42 } end,
    'smtp_auth_plain_password')
  raises(function() kumo.make_egress_path { smtp_auth_plain_password = { vault_mount = 'secret' } } end,
    'vault_path')
  raises(function() kumo.make_egress_path { smtp_auth_plain_password = { event_name = 'x' } } end,
    'event_args')
  raises(function() kumo.make_egress_path { smtp_auth_plain_password = { nothing = 1 } } end,
    'did not match any variant of untagged enum KeySource')
  -- a plain string is a file path, key_data wins over vault fields (KumoMTA's variant order)
  kumo.make_egress_path { smtp_auth_plain_password = '/etc/relay-password' }
  eq(kumo._keysource_kind { key_data = 'x', vault_mount = 'a', vault_path = 'b' }, 'Data', 'order')
  eq(kumo._keysource_kind { vault_mount = 'a', vault_path = 'b' }, 'Vault', 'vault')
  eq(kumo._keysource_kind { event_name = 'e', event_args = { 1, 'two' } }, 'Event', 'event')
end)

test('keysource errors and descriptions never show secret fields', function()
  local err = raises(function()
    kumo.make_egress_path { smtp_auth_plain_password = { key_data = 7 } }
  end, 'key_data must be a string')
  local d = kumo.describe_keysource { vault_mount = 'secret', vault_path = 'a', vault_token = SECRET }
  eq(d:find(SECRET, 1, true), nil, 'token in description')
  eq(d:find('vault_token = <redacted>', 1, true) ~= nil, true, 'token redacted: ' .. d)
  local p = kumo.make_egress_path { smtp_auth_plain_password = { key_data = SECRET } }
  eq(tostring(p):find(SECRET, 1, true), nil, 'key_data in tostring(path)')
  eq(err:find(SECRET, 1, true), nil, 'secret in error')
end)

test('kumo.on: one handler per event, functions only', function()
  kumo.on('test_event_once', function() return 1 end)
  raises(function() kumo.on('test_event_once', function() end) end, 'already registered')
  raises(function() kumo.on('test_event_other', 'nope') end, 'must be a function')
  eq(kumo._fire('test_event_once'), 1, 'fire')
end)

test('kumo.secrets.load passes the lookup context, tagged for the audit trail', function()
  local seen
  kumo._host.resolve = function(ks, ctx)
    seen = ctx
    return ks.key_data
  end
  local ctx = { domain = 'example.com', site_name = 'mx.example.com' }
  kumo._host.ctx = ctx
  kumo.secrets.load { key_data = SECRET }
  eq(seen.domain, 'example.com', 'domain passed')
  eq(seen.tag, 'kumo.secrets.load', 'tag')
  eq(ctx.tag, nil, 'the host context is not modified')
  kumo._host.ctx = { domain = 'example.com', tag = 'smtp_auth_plain_password' }
  kumo.secrets.load { key_data = SECRET }
  eq(seen.tag, 'smtp_auth_plain_password', 'an existing tag is kept')
  kumo._host.ctx, kumo._host.resolve = nil, nil
end)

test('kumo.secrets.load returns the bytes and raises with the code on failure', function()
  kumo._host.resolve = function(ks)
    if ks.key_data then
      return ks.key_data
    end
    return nil, 'no secret at secret/missing', 'not_found'
  end
  eq(kumo.secrets.load { key_data = SECRET }, SECRET, 'key_data')
  raises(function() kumo.secrets.load { vault_mount = 'secret', vault_path = 'missing' } end,
    'not_found')
  raises(function() kumo.secrets.load(12) end, 'expected a file path')
  kumo._host.resolve = nil
end)

-- TOML and JSON ------------------------------------------------------------------------------

test('toml_parse maps types and reports line:column on errors', function()
  local t = kumo.toml_parse('a = 1\nb = "x"\nc = [1, 2]\n[d]\ne = true\nf = 1.5\n')
  eq(t.a, 1, 'integer')
  eq(math.type(t.a), 'integer', 'integer type')
  eq(t.b, 'x', 'string')
  eq(#t.c, 2, 'array')
  eq(t.d.e, true, 'bool')
  eq(t.d.f, 1.5, 'float')
  raises(function() kumo.toml_parse('a = \n', 'bad.toml') end, 'bad.toml:1:')
end)

test('json_parse is strict: no comments, no trailing commas', function()
  eq(kumo.json_parse('{"a": [1, 2, {"b": null}]}').a[2], 2, 'parse')
  raises(function() kumo.json_parse('{"a": 1 // comment\n}') end, 'invalid JSON')
  raises(function() kumo.json_parse('{"a": 1,}') end, 'invalid JSON')
  raises(function() kumo.json_parse('{"a": 1} x') end, 'invalid JSON')
  -- a repeated key, at any depth, is refused (json-c alone would keep the last)
  raises(function() kumo.json_parse('{"a": 1, "a": 2}') end, 'repeated')
  raises(function() kumo.json_parse('{"a": {"b": 1, "c": 2, "b": 3}}') end, 'repeated')
  raises(function() kumo.json_parse('[{"x": 1}, {"y": {"z": 1, "\\u007a": 2}}]') end, 'repeated')
  raises(function() kumo.json_parse('{"a": {"k": 1}, "a": {"k": 1}}') end, 'repeated')
  eq(kumo.json_parse('{"a": {"k": "{:}"}, "b": {"k": [":", {"k": 1}]}, "k": "\\"{"}').b.k[2].k, 1,
     'the same key in different objects, braces and colons inside strings')
end)

test('json_encode is deterministic and escapes control characters', function()
  eq(kumo.json_encode { b = 1, a = { 'x', true }, c = 'q"\n' }, '{"a":["x",true],"b":1,"c":"q\\"\\n"}',
    'encode')
end)

-- shaping ------------------------------------------------------------------------------------

local ex = ROOT .. '/policy-examples/'

test('seed shaping TOML and JSON give the same path for the literal IP (mx_rollup = false)', function()
  local t = shaping.load({ ex .. 'shaping-auth.toml' }):get_egress_path_config('192.168.1.10',
    'unspecified', '192.168.1.10')
  local j = shaping.load({ ex .. 'shaping-auth.json' }):get_egress_path_config('192.168.1.10',
    'unspecified', '192.168.1.10')
  eq(kumo.json_encode(t), kumo.json_encode(j), 'toml vs json')
  eq(t.smtp_auth_plain_username, 'daniel', 'username')
  eq(t.smtp_auth_plain_password.vault_path, 'smtp-auth/local', 'vault_path')
  eq(t.smtp_auth_plain_password.vault_key, 'password', 'vault_key')
  eq(t.mx_rollup, nil, 'mx_rollup is not a path field')
  local other = shaping.load({ ex .. 'shaping-auth.toml' }):get_egress_path_config('example.com',
    'unspecified', 'example.com')
  eq(other.smtp_auth_plain_username, nil, 'entry applies to its own key only')
end)

test('merge order: default < site < domain < site source < domain source', function()
  local f = write('order.toml', [[
[default]
connection_limit = 1
ehlo_domain = "default.example"
smtp_port = 2001

["relay.example.com"]
connection_limit = 2
smtp_port = 2002
sources."src-a" = { smtp_port = 2004 }

["10.0.0.5"]
mx_rollup = false
smtp_port = 2003
connection_limit = 3
sources."src-a" = { connection_limit = 5 }
]])
  local d = shaping.load { f }
  -- mx_rollup entry: stored by site (its own name here: no DNS)
  local p = d:get_egress_path_config('10.0.0.5', 'src-a', 'relay.example.com')
  eq(p.ehlo_domain, 'default.example', 'default applies')
  eq(p.smtp_port, 2004, 'site source beats domain')
  eq(p.connection_limit, 5, 'domain source last')
  local q = d:get_egress_path_config('10.0.0.5', 'other', 'relay.example.com')
  eq(q.smtp_port, 2003, 'domain beats site')
  eq(q.connection_limit, 3, 'domain beats site (limit)')
  local r = d:get_egress_path_config('nothing.example', 'other', 'nothing.example')
  eq(r.smtp_port, 2001, 'only default')
end)

test('later files merge field by field, replace_base replaces, tables are replaced whole', function()
  local a = write('a.toml', [[
["relay.example.com"]
mx_rollup = false
smtp_auth_plain_username = "first"
smtp_auth_plain_password = { vault_mount = "secret", vault_path = "a", vault_key = "password" }
additional_connection_limits = { one = 1 }
connection_limit = 4
]])
  local b = write('b.json', [[
{"relay.example.com": {"mx_rollup": false,
  "smtp_auth_plain_password": {"vault_mount": "secret", "vault_path": "b"},
  "additional_connection_limits": {"two": 2}}}
]])
  local p = shaping.load({ a, b }):get_egress_path_config('relay.example.com', 'x', 'relay.example.com')
  eq(p.smtp_auth_plain_username, 'first', 'untouched field kept')
  eq(p.smtp_auth_plain_password.vault_path, 'b', 'password replaced')
  eq(p.smtp_auth_plain_password.vault_key, nil, 'vault_key does not survive a later table')
  eq(p.additional_connection_limits.one, 1, 'mergeable table keeps earlier keys')
  eq(p.additional_connection_limits.two, 2, 'mergeable table gains later keys')
  local c = write('c.toml', [[
["relay.example.com"]
mx_rollup = false
replace_base = true
smtp_port = 587
]])
  local q = shaping.load({ a, c }):get_egress_path_config('relay.example.com', 'x', 'relay.example.com')
  eq(q.smtp_port, 587, 'replacement')
  eq(q.smtp_auth_plain_username, nil, 'replace_base drops earlier fields')
  eq(q.connection_limit, nil, 'replace_base drops earlier fields (2)')
end)

test('provider DomainSuffix rules apply after default and set provider_name', function()
  local f = write('prov.toml', [[
[provider."bigmail"]
match = [{ DomainSuffix = ".bigmail.example" }]
connection_limit = 9
provider_connection_limit = 20
]])
  local p = shaping.load({ f }):get_egress_path_config('eu.bigmail.example', 'src', 'eu.bigmail.example')
  eq(p.connection_limit, 9, 'provider params')
  eq(p.provider_name, 'bigmail', 'provider_name')
  eq(p.additional_connection_limits['shaping-provider-bigmail-src-limit'], '20', 'implied limit')
  local q = shaping.load({ f }):get_egress_path_config('other.example', 'src', 'other.example')
  eq(q.provider_name, nil, 'no match')
end)

test('an unknown field fails the load with the entry as context', function()
  local f = write('bad.toml', '["relay.example.com"]\nmx_rollup = false\nsmtp_auth_plain_pasword = "x"\n')
  raises(function() shaping.load { f } end, 'domain: relay.example.com: unknown field `smtp_auth_plain_pasword`')
  local g = write('badsrc.toml', '["relay.example.com"]\nmx_rollup = false\nsources.s1 = { bogus = 1 }\n')
  raises(function() shaping.load { g } end, 'source s1')
end)

test('shaping files: missing file, JSON comments, TOML syntax are errors naming the file', function()
  raises(function() shaping.load { 'does-not-exist.toml' } end, 'does-not-exist.toml')
  local j = write('comment.json', '{\n // no comments in JSON\n "a.example": {}\n}\n')
  raises(function() shaping.load { j } end, 'parsing json from file comment.json')
  local t = write('syntax.toml', '["a.example"\nx = 1\n')
  raises(function() shaping.load { t } end, 'parsing toml from file syntax.toml')
end)

test('single-label domain keys produce a quoting warning', function()
  local f = write('label.toml', '[localhost]\nconnection_limit = 1\n')
  local w = shaping.load({ f }):get_warnings()
  eq(#w, 1, 'one warning')
  eq(w[1]:find('single DNS label', 1, true) ~= nil, true, 'warning text')
end)

test('the helper returns an egress path with refresh_strategy Epoch (both setup forms)', function()
  local helper = shaping:setup_with_automation { extra_files = { ex .. 'shaping-auth.toml' } }
  local p = helper.get_egress_path_config('192.168.1.10', 'unspecified', '192.168.1.10')
  eq(kumo.is_egress_path(p), true, 'egress path')
  eq(p.refresh_strategy, 'Epoch', 'refresh_strategy')
  local old = shaping:setup { ex .. 'shaping-auth.json' }
  local q = old('192.168.1.10', 'unspecified', '192.168.1.10')
  eq(q.smtp_auth_plain_username, 'daniel', 'callable old form')
end)

test('kumo.memoize caches by arguments', function()
  local calls = 0
  local f = kumo.memoize(function(x)
    calls = calls + 1
    return x * 2
  end, { name = 't', ttl = '5 minutes', capacity = 4 })
  eq(f(2), 4, 'first')
  eq(f(2), 4, 'second')
  eq(f(3), 6, 'other args')
  eq(calls, 2, 'calls')
end)

print(string.format('%d passed, %d failed', passed, failed))
return failed == 0 and 0 or 1
