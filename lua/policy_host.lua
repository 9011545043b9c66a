-- policy_host: the Lua side of build/vks-policy (see docs/policy-host.md).
--
--   vks-policy POLICY --domain D [--site S] [--source SRC] [--relay HOST[:PORT]] [--check-auth]
--              [--cafile PEM] [--ehlo NAME] [--timeout-ms N] [--stats]
--              [--rounds N] [--interval-ms N] [--until-file PATH]
--
-- Loads a KumoMTA-style policy, fires `init` (if registered) and `get_egress_path_config`,
-- resolves smtp_auth_plain_password through vault_keysource with the lookup context filled
-- (domain, site_name, username, destination, tag), prints the egress path with every secret
-- redacted and, with --check-auth, runs a real SMTP session (EHLO, STARTTLS, AUTH PLAIN, QUIT)
-- against the relay and reports its reply. The password is never printed.
-- Exit status: 0 every round authenticated (or resolved, without --check-auth); 1 a lookup failed
-- or the relay rejected AUTH; 2 usage or policy error.
local M = {}

local USAGE = [[
usage: vks-policy POLICY --domain DOMAIN [options]

  --domain D          destination domain (the get_egress_path_config domain)
  --site S            site name (default: the domain; this host does no MX lookups)
  --source SRC        egress source name (default: unspecified)
  --relay H[:P]       connect here for --check-auth (default: the site, port smtp_port)
  --check-auth        EHLO, STARTTLS, AUTH PLAIN, QUIT against the relay; no message is sent
  --cafile PEM        CA certificates to validate the relay's certificate
  --ehlo NAME         EHLO name (default: ehlo_domain of the path, else localhost)
  --timeout-ms N      deadline of the whole SMTP session (default 30000)
  --stats             print vault_keysource cache statistics at the end
  --brief             do not print the SMTP transcript
  --rounds N          repeat lookup (+ AUTH) N times in this process (default 1)
  --interval-ms N     pause between rounds (default 1000)
  --until-file PATH   stop before a round once PATH exists (with --rounds)
  --script FILE ...   run FILE in the host environment (kumo API, shaping) and exit
]]

local function parse_args(argv)
  local o = { rounds = 1, interval_ms = 1000, source = 'unspecified', timeout_ms = 30000 }
  local i = 1
  local function value(name)
    i = i + 1
    if argv[i] == nil then
      error({ usage = name .. ' needs a value' })
    end
    return argv[i]
  end
  local function number(name)
    local v = math.tointeger(tonumber(value(name)))
    if v == nil or v < 0 then
      error({ usage = name .. ' needs a non-negative integer' })
    end
    return v
  end
  while i <= #argv do
    local a = argv[i]
    if a == '--domain' then
      o.domain = value(a)
    elseif a == '--site' then
      o.site = value(a)
    elseif a == '--source' then
      o.source = value(a)
    elseif a == '--relay' then
      o.relay = value(a)
    elseif a == '--check-auth' then
      o.check_auth = true
    elseif a == '--cafile' then
      o.cafile = value(a)
    elseif a == '--ehlo' then
      o.ehlo = value(a)
    elseif a == '--timeout-ms' then
      o.timeout_ms = number(a)
    elseif a == '--brief' then
      o.brief = true
    elseif a == '--stats' then
      o.stats = true
    elseif a == '--rounds' then
      o.rounds = number(a)
    elseif a == '--interval-ms' then
      o.interval_ms = number(a)
    elseif a == '--until-file' then
      o.until_file = value(a)
    elseif a == '--script' then
      -- run a Lua file in the host environment (kumo, shaping, builtins); the rest of argv is
      -- passed to it as `...`. Used by the tests of the kumo API.
      o.script = value(a)
      o.script_args = { table.unpack(argv, i + 1) }
      break
    elseif a == '-h' or a == '--help' then
      o.help = true
    elseif a:sub(1, 1) == '-' then
      error({ usage = 'unknown option ' .. a })
    elseif o.policy == nil then
      o.policy = a
    else
      error({ usage = 'unexpected argument ' .. a })
    end
    i = i + 1
  end
  if not o.help and not o.script then
    if o.policy == nil then
      error({ usage = 'no POLICY file given' })
    end
    if o.domain == nil or o.domain == '' then
      error({ usage = '--domain is required' })
    end
  end
  o.site = o.site or o.domain
  if o.rounds < 1 then
    o.rounds = 1
  end
  return o
end

-- "host", "host:port", "[v6]:port", "v6" -> host, port|nil
local function split_hostport(s)
  local h, p = s:match('^%[(.+)%]:(%d+)$')
  if h then
    return h, tonumber(p)
  end
  h = s:match('^%[(.+)%]$')
  if h then
    return h, nil
  end
  h, p = s:match('^([^:]+):(%d+)$')
  if h then
    return h, tonumber(p)
  end
  return s, nil
end

-- Everything the host prints goes through the core's URL redaction (user info, query and
-- fragment of every URL: a vault_address such as https://user:password@vault never shows).
local redact = require('vks_host.sys').redact

local function out(fmt, ...)
  io.stdout:write(redact(string.format(fmt, ...)), '\n')
  io.stdout:flush()
end

-- The keysource resolver: vault_keysource when it loads, else a minimal local fallback for
-- key_data and files so that policies without Vault still run.
local function make_resolver(vks, kumo)
  if vks then
    return function(ks, ctx)
      return vks.resolve(ks, ctx)
    end
  end
  return function(ks)
    local kind, msg = kumo._keysource_kind(ks)
    if not kind then
      return nil, msg, 'bad_keysource'
    end
    if kind == 'Data' then
      return ks.key_data
    elseif kind == 'File' then
      local data, err = require('vks_host.sys').read_file(ks, 'keysource file', 4096)
      if not data then
        return nil, 'KeySource failed to load data from file `' .. ks .. '`: ' .. tostring(err),
          'file_error'
      end
      return data
    end
    return nil, 'the vault_keysource module is not available (build it with make), so ' .. kind
      .. ' keysources cannot be resolved', 'unavailable'
  end
end

local function print_stats(vks)
  if not (vks and vks.stats) then
    out('cache: statistics not available')
    return
  end
  local ok, st = pcall(vks.stats)
  if not ok or type(st) ~= 'table' then
    out('cache: statistics not available')
    return
  end
  local keys = {}
  local function flatten(prefix, t)
    for k, v in pairs(t) do
      local name = prefix and (prefix .. '.' .. tostring(k)) or tostring(k)
      if type(v) == 'table' then
        flatten(name, v)
      else
        keys[#keys + 1] = name .. '=' .. tostring(v)
      end
    end
  end
  flatten(nil, st)
  table.sort(keys)
  out('cache: %s', table.concat(keys, ' '))
end

local function setup_env()
  local kumo = require 'kumo'
  package.loaded['kumo'] = kumo
  package.preload['policy-extras.shaping'] = function()
    return require 'shaping'
  end
  _G.kumo = kumo
  return kumo
end

local function run_script(o)
  setup_env()
  local chunk, err = loadfile(o.script)
  if not chunk then
    io.stderr:write('vks-policy: ', redact(tostring(err)), '\n')
    return 2
  end
  local rc = chunk(table.unpack(o.script_args))
  return math.tointeger(rc) or 0
end

local function run(o)
  local sys = require 'vks_host.sys'
  local kumo = setup_env()

  local ok_vks, vks = pcall(require, 'vault_keysource')
  if not ok_vks then
    out('note: vault_keysource module not loaded (%s); only key_data and file keysources work',
      tostring(vks):match('^[^\n]*'))
    vks = nil
  end
  kumo._host.resolve = make_resolver(vks, kumo)
  if vks and vks.set_event_handler then
    -- {event_name, event_args} keysources call the policy's kumo.on handler for that event
    vks.set_event_handler(function(name, args)
      if not kumo._has_handler(name) then
        error('no kumo.on handler registered for keysource event ' .. tostring(name), 0)
      end
      return kumo._fire(name, table.unpack(args or {}))
    end)
  end

  -- the policy's own directory is on the module path, like /opt/kumomta/etc/policy in kumod
  local dir = o.policy:match('^(.*)/[^/]*$') or '.'
  package.path = dir .. '/?.lua;' .. package.path

  local chunk, lerr = loadfile(o.policy)
  if not chunk then
    out('policy error: %s', lerr)
    return 2
  end
  local ok, perr = pcall(chunk)
  if not ok then
    out('policy error: %s', tostring(perr))
    return 2
  end
  if kumo._has_handler('init') then
    ok, perr = pcall(kumo._fire, 'init')
    if not ok then
      out('policy error: init: %s', tostring(perr))
      return 2
    end
  end
  if not kumo._has_handler('get_egress_path_config') then
    out('policy error: the policy registers no get_egress_path_config handler')
    return 2
  end

  out('policy: %s', o.policy)
  out('destination: domain=%s site=%s source=%s', o.domain, o.site, o.source)

  local rounds_ok, rounds_failed = 0, 0
  local last_rc = 0
  for round = 1, o.rounds do
    if o.until_file and sys.file_exists(o.until_file) then
      break
    end
    if round > 1 and o.interval_ms > 0 then
      sys.sleep_ms(o.interval_ms)
      if o.until_file and sys.file_exists(o.until_file) then
        break
      end
    end
    local tag = o.rounds > 1 and string.format('round %d: ', round) or ''

    kumo._host.ctx = { domain = o.domain, site_name = o.site }
    local okp, path = pcall(kumo._fire, 'get_egress_path_config', o.domain, o.source, o.site)
    if okp and path ~= nil and not kumo.is_egress_path(path) then
      okp, path = pcall(kumo.make_egress_path, path)
    end
    if not okp or path == nil then
      out('%spolicy error: get_egress_path_config: %s', tag,
        path == nil and 'returned nothing' or tostring(path))
      return 2
    end
    local params = kumo._egress_params(path)
    if round == 1 then
      out('egress path:%s', kumo.describe_params(params))
    end

    local relay_host, relay_port
    if o.relay then
      relay_host, relay_port = split_hostport(o.relay)
    else
      relay_host = o.site
    end
    relay_port = relay_port or path.smtp_port or 25

    local username = params.smtp_auth_plain_username
    local ks = params.smtp_auth_plain_password
    local ctx = {
      domain = o.domain,
      site_name = o.site,
      username = username,
      destination = relay_host,
      tag = 'smtp_auth_plain_password',
    }
    kumo._host.ctx = ctx

    local password, perr2, code
    local failed = false
    if username ~= nil and ks ~= nil then
      password, perr2, code = kumo._host.resolve(ks, ctx)
      if password == nil then
        out('%spassword: FAILED %s: %s', tag, tostring(code), tostring(perr2))
        failed = true
      elseif not utf8.len(password) then
        password = nil
        out('%spassword: FAILED bad_keysource: smtp_auth_plain_password is not UTF8', tag)
        failed = true
      else
        out('%spassword: resolved for %s (redacted)', tag, username)
      end
    elseif username ~= nil then
      out('%spassword: none configured (an empty password will be sent)', tag)
      password = ''
    else
      out('%spassword: no smtp_auth_plain_username, AUTH not configured', tag)
    end

    if o.check_auth and not failed then
      local smtp = require 'vks_host.smtp'
      local r = smtp.check_auth {
        host = relay_host,
        port = relay_port,
        ehlo_name = o.ehlo or params.ehlo_domain or 'localhost',
        enable_tls = path.enable_tls,
        username = username,
        password = password,
        cafile = o.cafile,
        allow_smtp_auth_plain_without_tls = path.allow_smtp_auth_plain_without_tls,
        allow_smtp_auth_plain_without_valid_certificate =
          path.allow_smtp_auth_plain_without_valid_certificate,
        timeout_ms = o.timeout_ms,
      }
      password = nil
      if round == 1 and not o.brief then
        out('smtp: %s port %d, enable_tls=%s', relay_host, relay_port, path.enable_tls)
        for line in r.transcript:gmatch('[^\n]+') do
          out('  %s', line)
        end
      end
      local tls = r.tls and string.format('%s, certificate %s', r.tls_version or 'TLS',
        r.tls_verified and 'verified' or ('NOT verified: ' .. (r.verify_error or '?'))) or 'no TLS'
      if r.ok then
        out('%sauth: OK %s (%s)', tag, (r.reply:gsub('\n', ' / ')), tls)
      else
        if r.auth_attempted then
          out('%sauth: REJECTED %s (%s)', tag, (r.reply:gsub('\n', ' / ')), tls)
        else
          out('%sauth: NOT ATTEMPTED at %s: %s', tag, r.stage, tostring(r.error))
        end
        if r.error and r.auth_attempted then
          out('%s  %s', tag, r.error)
        end
        failed = true
      end
    end
    password = nil
    collectgarbage()
    if failed then
      rounds_failed = rounds_failed + 1
      last_rc = 1
    else
      rounds_ok = rounds_ok + 1
    end
  end
  if o.rounds > 1 then
    out('rounds: %d ok, %d failed', rounds_ok, rounds_failed)
  end
  if o.stats then
    print_stats(vks)
  end
  if o.rounds > 1 and rounds_failed > 0 then
    return 1
  end
  return last_rc
end

function M.main(argv)
  local okp, o = pcall(parse_args, argv)
  if not okp then
    if type(o) == 'table' and o.usage then
      io.stderr:write('vks-policy: ', redact(o.usage), '\n', USAGE)
      return 2
    end
    error(o, 0)
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  if o.script then
    return run_script(o)
  end
  return run(o)
end

return M
