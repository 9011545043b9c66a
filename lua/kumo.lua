-- kumo: the part of KumoMTA's policy API that egress/SMTP AUTH policies use, for vks-policy.
--
--   kumo.on(event, fn)                    register a handler (one per event, like kumod)
--   kumo.make_egress_path(params)         checked EgressPathConfig: unknown fields are errors
--                                         (serde deny_unknown_fields), keysource shapes and the
--                                         AUTH/TLS fields are checked now, secrets fetched later
--   kumo.secrets.load(keysource)          the secret bytes as a string; raises on failure
--   kumo.toml_load/toml_parse, kumo.json_load/json_parse/json_encode/json_encode_pretty
--   kumo.memoize(fn, {name=, ttl=, capacity=})   process-local memoization
--   kumo.shaping.load(files [, options])  see lua/shaping.lua
--
-- Semantics follow KumoMTA (docs/policy-host.md lists every difference). Nothing here ever puts a
-- secret in an error message: keysources are described by their non-secret fields only.
local kumo = {}

local handlers = {}
local host = {
  -- resolve(keysource, ctx) -> string | nil, message, code; set by the policy host
  resolve = nil,
  -- the lookup context of the event being handled (domain, site_name, username, destination)
  ctx = nil,
}
kumo._host = host

------------------------------------------------------------------------------------------------
-- events

function kumo.on(name, fn)
  if type(name) ~= 'string' then
    error('kumo.on: event name must be a string', 2)
  end
  local mt = getmetatable(fn)
  if type(fn) ~= 'function' and not (type(mt) == 'table' and mt.__call) then
    error(string.format('kumo.on(%q): handler must be a function', name), 2)
  end
  if handlers[name] ~= nil then
    error(string.format('kumo.on: a handler for %q is already registered', name), 2)
  end
  handlers[name] = fn
end

function kumo._has_handler(name)
  return handlers[name] ~= nil
end

-- Calls the handler for `name`; returns its results, or nothing when none is registered.
function kumo._fire(name, ...)
  local fn = handlers[name]
  if fn == nil then
    return nil
  end
  return fn(...)
end

-- KumoMTA's kumo.reject(code, text) from an SMTP server event: ends the handler with an error
-- the host reports as the SMTP reply (a table { rejected = true, code, text }).
function kumo.reject(code, text)
  if math.tointeger(code) == nil or code < 400 or code > 599 or type(text) ~= 'string' then
    error('kumo.reject: expected a 4xx/5xx code and a text', 2)
  end
  error({ rejected = true, code = math.tointeger(code), text = text }, 0)
end

------------------------------------------------------------------------------------------------
-- keysources (KumoMTA's untagged enum: File, Data, Vault, Event, tried in that order)

local function is_array(t)
  if type(t) ~= 'table' then
    return false
  end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= 'integer' or k < 1 then
      return false
    end
    n = n + 1
  end
  return n == #t
end

-- Returns the variant name ('File', 'Data', 'Vault', 'Event') or nil and a message that names
-- the field and never its value.
function kumo._keysource_kind(ks, field)
  field = field or 'keysource'
  if type(ks) == 'string' then
    return 'File'
  end
  if type(ks) ~= 'table' then
    return nil, string.format('%s: expected a file path string or a keysource table, got %s',
      field, type(ks))
  end
  if ks.key_data ~= nil then
    if type(ks.key_data) ~= 'string' then
      return nil, string.format('%s: key_data must be a string', field)
    end
    return 'Data'
  end
  if ks.vault_mount ~= nil or ks.vault_path ~= nil then
    for _, f in ipairs { 'vault_mount', 'vault_path' } do
      if type(ks[f]) ~= 'string' then
        return nil, string.format('%s: %s must be a string (vault keysources need vault_mount and vault_path)', field, f)
      end
    end
    for _, f in ipairs { 'vault_key', 'vault_address', 'vault_token' } do
      if ks[f] ~= nil and type(ks[f]) ~= 'string' then
        return nil, string.format('%s: %s must be a string', field, f)
      end
    end
    return 'Vault'
  end
  if ks.event_name ~= nil then
    if type(ks.event_name) ~= 'string' then
      return nil, string.format('%s: event_name must be a string', field)
    end
    if not is_array(ks.event_args) then
      return nil, string.format('%s: event_args must be an array (it has no default)', field)
    end
    return 'Event'
  end
  return nil, string.format(
    '%s: data did not match any variant of untagged enum KeySource (expected a file path, '
      .. '{key_data=...}, {vault_mount=..., vault_path=...} or {event_name=..., event_args={...}})',
    field)
end

local SECRET_FIELD = { key_data = true, vault_token = true }
local function is_secret_field(k)
  if SECRET_FIELD[k] then
    return true
  end
  k = tostring(k):lower()
  return k:find('token', 1, true) or k:find('secret', 1, true) or k:find('password', 1, true)
    or k:find('key_data', 1, true)
end

local function quote(s)
  return (string.format('%q', s):gsub('\\\n', '\\n'))
end

-- A printable description of a keysource with every secret field redacted.
function kumo.describe_keysource(ks)
  if type(ks) == 'string' then
    return 'file ' .. quote(ks)
  end
  if type(ks) ~= 'table' then
    return '<' .. type(ks) .. '>'
  end
  local keys = {}
  for k in pairs(ks) do
    keys[#keys + 1] = tostring(k)
  end
  local order = { key_data = 1, vault_mount = 2, vault_path = 3, vault_key = 4, event_name = 5 }
  table.sort(keys, function(a, b)
    local oa, ob = order[a] or 100, order[b] or 100
    if oa ~= ob then
      return oa < ob
    end
    return a < b
  end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = ks[k]
    local shown
    if is_secret_field(k) then
      shown = '<redacted>'
    elseif k == 'event_args' and type(v) == 'table' then
      shown = string.format('<%d argument(s)>', #v)
    elseif type(v) == 'string' then
      shown = quote(v)
    elseif type(v) == 'number' or type(v) == 'boolean' then
      shown = tostring(v)
    else
      shown = '<' .. type(v) .. '>'
    end
    parts[#parts + 1] = k .. ' = ' .. shown
  end
  return '{ ' .. table.concat(parts, ', ') .. ' }'
end

------------------------------------------------------------------------------------------------
-- EgressPathConfig

local TLS_MODES = {
  Opportunistic = true,
  OpportunisticInsecure = true,
  Required = true,
  RequiredInsecure = true,
  Disabled = true,
}

-- field -> checker(value) returning nil or a message; true = any value accepted
local function boolean(v)
  if type(v) ~= 'boolean' then
    return 'expected a boolean'
  end
end
local function string_(v)
  if type(v) ~= 'string' then
    return 'expected a string'
  end
end
local function count(v)
  if math.type(v) ~= 'integer' or v < 0 then
    return 'expected a non-negative integer'
  end
end
local function duration(v)
  if not (type(v) == 'string' or type(v) == 'number') then
    return 'expected a duration (number of seconds or a string like "30s")'
  end
end
local function keysource(v)
  local kind, msg = kumo._keysource_kind(v, 'value')
  if not kind then
    return msg
  end
end
local function tls_mode(v)
  if not TLS_MODES[v] then
    return 'expected one of `Opportunistic`, `OpportunisticInsecure`, `Required`, `RequiredInsecure`, `Disabled`'
  end
end
local function port(v)
  if math.type(v) ~= 'integer' or v < 1 or v > 65535 then
    return 'expected a port number 1..65535'
  end
end
local function table_(v)
  if type(v) ~= 'table' then
    return 'expected a table'
  end
end
local function refresh(v)
  if v ~= 'Ttl' and v ~= 'Epoch' then
    return 'expected `Ttl` or `Epoch`'
  end
end

local FIELDS = {
  -- connection shaping
  connection_limit = true,
  additional_connection_limits = table_,
  additional_message_rate_throttles = table_,
  additional_source_selection_rates = table_,
  max_ready = count,
  consecutive_connection_failures_before_delay = count,
  max_message_rate = true,
  max_connection_rate = true,
  max_deliveries_per_connection = count,
  max_recipients_per_batch = count,
  suspended = boolean,
  low_memory_reduction_policy = true,
  no_memory_reduction_policy = true,
  source_selection_rate = true,
  aggressive_connection_opening = boolean,
  prohibited_hosts = true,
  skip_hosts = true,
  ehlo_domain = string_,
  smtp_port = port,
  use_lmtp = boolean,
  reconnect_strategy = true,
  try_next_host_on_transport_error = boolean,
  ignore_8bit_checks = boolean,
  provider_name = string_,
  refresh_interval = duration,
  refresh_strategy = refresh,
  dispatcher_wakeup_strategy = true,
  maintainer_wakeup_strategy = true,
  system_shutdown_timeout = duration,
  -- TLS
  enable_tls = tls_mode,
  enable_mta_sts = boolean,
  enable_dane = boolean,
  enable_pipelining = boolean,
  enable_rset = boolean,
  tls_prefer_openssl = boolean,
  openssl_cipher_list = string_,
  openssl_cipher_suites = string_,
  openssl_options = string_,
  rustls_cipher_suites = table_,
  tls_certificate = keysource,
  tls_private_key = keysource,
  remember_broken_tls = duration,
  opportunistic_tls_reconnect_on_failed_handshake = boolean,
  -- SMTP AUTH
  smtp_auth_plain_username = string_,
  smtp_auth_plain_password = keysource,
  allow_smtp_auth_plain_without_tls = boolean,
  allow_smtp_auth_plain_without_valid_certificate = boolean,
  -- client timeouts (flattened SmtpClientTimeouts)
  connect_timeout = duration,
  banner_timeout = duration,
  ehlo_timeout = duration,
  mail_from_timeout = duration,
  rcpt_to_timeout = duration,
  data_timeout = duration,
  data_dot_timeout = duration,
  rset_timeout = duration,
  idle_timeout = duration,
  starttls_timeout = duration,
  auth_timeout = duration,
}
kumo._egress_fields = FIELDS

local DEFAULTS = {
  enable_tls = 'Opportunistic',
  smtp_port = 25,
  allow_smtp_auth_plain_without_tls = false,
  allow_smtp_auth_plain_without_valid_certificate = false,
}

-- Checks a params table as KumoMTA's EgressPathConfig deserialisation would. Returns true, or
-- false and a message naming the field (prefixed with `context` when given).
function kumo._check_egress_params(params, context)
  local prefix = context and (context .. ': ') or ''
  if type(params) ~= 'table' then
    return false, prefix .. 'egress path parameters must be a table'
  end
  local names = {}
  for k in pairs(params) do
    names[#names + 1] = k
  end
  table.sort(names, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(names) do
    if type(k) ~= 'string' then
      return false, prefix .. 'egress path field names must be strings'
    end
    local check = FIELDS[k]
    if check == nil then
      return false, string.format('%sunknown field `%s` in egress path config (KumoMTA rejects '
        .. 'unknown fields; see docs/policy-host.md for the accepted ones)', prefix, k)
    end
    if check ~= true then
      local msg = check(params[k])
      if msg then
        return false, string.format('%sinvalid value for field `%s`: %s', prefix, k, msg)
      end
    end
  end
  return true
end

local function deep_copy(v)
  if type(v) ~= 'table' then
    return v
  end
  local out = {}
  for k, x in pairs(v) do
    out[k] = deep_copy(x)
  end
  return out
end
kumo._deep_copy = deep_copy

local EgressPath = {}
EgressPath.__name = 'EgressPathConfig'
EgressPath.__index = function(self, k)
  local p = rawget(self, '_params')
  local v = p[k]
  if v == nil then
    v = DEFAULTS[k]
  end
  return deep_copy(v)
end
EgressPath.__newindex = function()
  error('EgressPathConfig is read-only; build a new one with kumo.make_egress_path', 2)
end
EgressPath.__pairs = function(self)
  return next, deep_copy(rawget(self, '_params')), nil
end
EgressPath.__tostring = function(self)
  return 'EgressPathConfig' .. kumo.describe_params(rawget(self, '_params'))
end

function kumo.make_egress_path(params)
  if kumo.is_egress_path(params) then
    return params
  end
  local ok, msg = kumo._check_egress_params(params)
  if not ok then
    error('kumo.make_egress_path: ' .. msg, 2)
  end
  return setmetatable({ _params = deep_copy(params) }, EgressPath)
end

function kumo.is_egress_path(v)
  return getmetatable(v) == EgressPath
end

-- The explicitly set parameters of a path (a copy; secrets still in keysource form).
function kumo._egress_params(path)
  return deep_copy(rawget(path, '_params'))
end

-- A redacted, sorted, one-field-per-line rendering of parameters.
function kumo.describe_params(params, indent)
  indent = indent or '  '
  local keys = {}
  for k in pairs(params) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local lines = {}
  for _, k in ipairs(keys) do
    local v = params[k]
    local shown
    if k == 'smtp_auth_plain_password' or k == 'tls_private_key' or k == 'tls_certificate' then
      shown = kumo.describe_keysource(v)
    elseif is_secret_field(k) then
      shown = '<redacted>'
    elseif type(v) == 'table' then
      shown = kumo.json_encode(v)
    elseif type(v) == 'string' then
      shown = quote(v)
    else
      shown = tostring(v)
    end
    lines[#lines + 1] = indent .. k .. ' = ' .. shown
  end
  return '\n' .. table.concat(lines, '\n')
end

------------------------------------------------------------------------------------------------
-- secrets

kumo.secrets = {}

function kumo.secrets.load(ks)
  local kind, msg = kumo._keysource_kind(ks, 'kumo.secrets.load')
  if not kind then
    error(msg, 2)
  end
  if host.resolve == nil then
    error('kumo.secrets.load: no keysource resolver is configured', 2)
  end
  local ctx = host.ctx
  if ctx ~= nil and ctx.tag == nil then
    ctx = kumo._deep_copy(ctx)
    ctx.tag = 'kumo.secrets.load' -- audit: a policy-level load, not the AUTH password itself
  end
  local value, err, code = host.resolve(ks, ctx)
  if value == nil then
    error(string.format('kumo.secrets.load: %s (%s)', tostring(err), tostring(code)), 2)
  end
  return value
end

------------------------------------------------------------------------------------------------
-- data files

-- vks_host.sys.read_file (vks_file): a FIFO, device, directory or socket is refused at once
local function read_file(path, what)
  local data, err = require('vks_host.sys').read_file(path, 'data file')
  if not data then
    error(string.format('%s: cannot read %s', what, tostring(err)), 3)
  end
  return data
end

function kumo.toml_parse(text, source)
  local t, err = require('vks_host.toml').parse(text, source)
  if t == nil then
    error('kumo.toml_parse: ' .. err, 2)
  end
  return t
end

function kumo.toml_load(path)
  local t, err = require('vks_host.toml').parse(read_file(path, 'kumo.toml_load'), path)
  if t == nil then
    error('kumo.toml_load: ' .. err, 2)
  end
  return t
end

function kumo.json_parse(text, source)
  local t, err = require('vks_host.json').parse(text, source)
  if t == nil and err ~= nil then
    error('kumo.json_parse: ' .. err, 2)
  end
  return t
end

function kumo.json_load(path)
  local t, err = require('vks_host.json').parse(read_file(path, 'kumo.json_load'), path)
  if t == nil and err ~= nil then
    error('kumo.json_load: ' .. err, 2)
  end
  return t
end

local function encode(v, pretty, indent, seen)
  local t = type(v)
  if t == 'nil' then
    return 'null'
  elseif t == 'boolean' then
    return tostring(v)
  elseif t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then
      error('json_encode: cannot encode a NaN or infinite number', 0)
    end
    if math.type(v) == 'integer' then
      return tostring(v)
    end
    return string.format('%.17g', v)
  elseif t == 'string' then
    return '"' .. v:gsub('[%c"\\\127-\255]', function(c)
      local map = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
      if map[c] then
        return map[c]
      end
      local b = c:byte()
      if b >= 0x80 then
        return c -- UTF-8 bytes pass through
      end
      return string.format('\\u%04x', b)
    end) .. '"'
  elseif t == 'table' then
    if seen[v] then
      error('json_encode: cannot encode a table that contains itself', 0)
    end
    seen[v] = true
    local nl = pretty and ('\n' .. string.rep('  ', indent + 1)) or ''
    local close = pretty and ('\n' .. string.rep('  ', indent)) or ''
    local sep = pretty and ': ' or ':'
    local out = {}
    if next(v) ~= nil and is_array(v) then
      for i = 1, #v do
        out[i] = nl .. encode(v[i], pretty, indent + 1, seen)
      end
      seen[v] = nil
      return '[' .. table.concat(out, ',') .. close .. ']'
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local x = v[k]
      if x == nil then
        x = v[tonumber(k)]
      end
      out[#out + 1] = nl .. encode(k, false, 0, seen) .. sep .. encode(x, pretty, indent + 1, seen)
    end
    seen[v] = nil
    if #out == 0 then
      return '{}'
    end
    return '{' .. table.concat(out, ',') .. close .. '}'
  else
    error('json_encode: cannot encode a ' .. t, 0)
  end
end

function kumo.json_encode(v)
  return encode(v, false, 0, {})
end

function kumo.json_encode_pretty(v)
  return encode(v, true, 0, {})
end

------------------------------------------------------------------------------------------------
-- memoize (process-local; KumoMTA's is process-global across Lua states, and so is this one in
-- a host that has a single state)

local function ttl_seconds(ttl)
  if ttl == nil then
    return 60
  end
  if type(ttl) == 'number' then
    return ttl
  end
  local n, unit = tostring(ttl):match('^%s*(%d+%.?%d*)%s*(%a*)%s*$')
  n = tonumber(n)
  if not n then
    error('kumo.memoize: cannot parse ttl ' .. quote(tostring(ttl)), 3)
  end
  unit = unit:lower()
  local mult = ({ [''] = 1, s = 1, sec = 1, secs = 1, second = 1, seconds = 1, m = 60, min = 60,
    mins = 60, minute = 60, minutes = 60, h = 3600, hour = 3600, hours = 3600 })[unit]
  if not mult then
    error('kumo.memoize: unknown ttl unit ' .. quote(unit), 3)
  end
  return n * mult
end

function kumo.memoize(fn, opts)
  opts = opts or {}
  local ttl = ttl_seconds(opts.ttl)
  local cache = {}
  local sys = require 'vks_host.sys'
  return function(...)
    local key = kumo.json_encode({ ... })
    local now = sys.monotonic_ms() / 1000
    local hit = cache[key]
    if hit and now - hit.at < ttl then
      return table.unpack(hit.values, 1, hit.n)
    end
    local values = table.pack(fn(...))
    cache[key] = { at = now, values = values, n = values.n }
    return table.unpack(values, 1, values.n)
  end
end

------------------------------------------------------------------------------------------------

kumo.shaping = {
  load = function(files, options)
    return require('shaping').load(files, options)
  end,
}

return kumo
