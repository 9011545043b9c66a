-- Inbound credentials from the Lua module (issue 15): vks.inbound_verify and vks.inbound_sender,
-- the same core operation as vks-agent's [inbound], against build/vault-dev over HTTPS with
-- credentials made by `vks cred create --inbound`: right and wrong passwords, source addresses in
-- and out of the list, sender domains, a reset credential refused, misuse raising, and the
-- password never in a result. The Lua strings passed in are the caller's; the module copies the
-- password into locked memory for the call.
local T = require 'testlib'
T.reexec { VAULT_ADDR = false, VAULT_TOKEN = false, VAULT_NAMESPACE = false,
           HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local WRONG = 'inbound-Wrong-Password-19ad' -- tests/test-secrets.d/inbound.txt
local ROOT = os.getenv('ROOT') or '.'
local VKS = ROOT .. '/' .. (os.getenv('BUILD') or 'build') .. '/vks'

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local function create(name, user, args)
    local env = string.format("VAULT_ADDR='%s' VAULT_CACERT='%s' VAULT_TOKEN='%s' VAULT_MAX_RETRIES=0 ",
                              vd.addr, vd.cacert, vd.root_token)
    local p = io.popen(env .. VKS .. ' cred create ' .. name .. ' --username ' .. user .. ' --inbound ' .. args
                       .. ' 2>/dev/null')
    local pw = p:read 'l'
    p:close()
    T.ok(pw and #pw == 32, 'vks cred create --inbound ' .. name .. ' printed a password')
    return pw
  end
  assert(vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
                     max_retries = 0 })
  local pw = create('lua1', 'lua1@app.example', '--domain app.example --ip 127.0.0.1 --ip 2001:db8::/32 '
                    .. '--verifier scrypt:ln=12,r=8,p=1')
  local pw2 = create('lua2', 'lua2', '--all-domains --verifier pbkdf2-sha256:i=20000')

  T.test('right password', function()
    local r, user = vks.inbound_verify('lua1@app.example', pw, '127.0.0.1')
    T.eq(r, true, 'verified')
    T.eq(user, 'lua1@app.example', 'the stored username')
    T.eq((vks.inbound_verify('LUA1@app.example', pw, '2001:db8::1')), true, 'case-folded, IPv6 in the /32')
    T.eq((vks.inbound_verify('lua2', pw2)), true, 'no address list: any source, none given')
  end)
  T.test('refusals name the result, never the password', function()
    local r, res, why = vks.inbound_verify('lua1@app.example', WRONG, '127.0.0.1')
    T.eq(r, false, 'wrong password refused')
    T.eq(res, 'bad_password', 'result')
    T.not_contains(why, WRONG, 'reason')
    r, res = vks.inbound_verify('lua1@app.example', pw, '127.0.0.2')
    T.eq(res, 'source_refused', 'source outside the list')
    r, res = vks.inbound_verify('lua1@app.example', pw)
    T.eq(res, 'source_refused', 'no source with an address list: fail closed')
    r, res = vks.inbound_verify('nobody', pw, '127.0.0.1')
    T.eq(res, 'unknown_user', 'unknown user')
    r, res = vks.inbound_verify('lua1@app.example\0x', pw, '127.0.0.1')
    T.eq(r, false, 'a NUL in the username is refused')
  end)
  T.test('sender domains', function()
    T.eq((vks.inbound_sender('lua1@app.example', 'a@app.example')), true, 'listed')
    local r, res = vks.inbound_sender('lua1@app.example', 'a@other.example')
    T.eq(r, false, 'another domain refused')
    T.eq(res, 'sender_refused', 'result')
    T.eq((vks.inbound_sender('lua2', 'x@anything.example')), true, 'all domains')
  end)
  T.test('a reset credential is refused', function()
    local st, j = vd:call('GET', '/v1/secret/metadata/smtp-auth/lua2')
    T.eq(st, 200, 'metadata read')
    local cm = j.data.custom_metadata
    cm.state = 'reset'
    st = vd:call('POST', '/v1/secret/metadata/smtp-auth/lua2', { custom_metadata = cm, max_versions = 20,
                                                                  cas_required = true })
    T.ok(st == 204 or st == 200, 'state=reset written')
    -- the success above stays cached for cache_ttl (the documented bound); a login with another
    -- password is not served from it and sees the state at once
    local r, res = vks.inbound_verify('lua2', pw2 .. 'x')
    T.eq(r, false, 'refused')
    T.ok(res == 'revoked', 'revoked (got ' .. tostring(res) .. ')')
  end)
  T.test('misuse raises', function()
    T.raises('string expected', vks.inbound_verify, 'u', nil)
    T.raises('string expected', vks.inbound_verify, nil, 'p')
    T.raises('string expected', vks.inbound_sender, 'u', {})
  end)
end)
vd:stop()
if not ok then
  print('FAILED setup: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
