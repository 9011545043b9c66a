-- shaping: KumoMTA's traffic-shaping data (TOML and JSON files) and its policy helper, for
-- vks-policy. Also available as require 'policy-extras.shaping', the name KumoMTA policies use.
--
--   local shaping = require 'policy-extras.shaping'
--   local shaper = shaping:setup_with_automation { extra_files = { 'shaping.toml' } }
--   kumo.on('get_egress_path_config', shaper.get_egress_path_config)
--   -- or the older form: kumo.on('get_egress_path_config', shaping:setup { 'shaping.json' })
--
--   local data = shaping.load(files [, options])      -- the kumo.shaping.load equivalent
--   data:get_egress_path_config(domain, egress_source, site_name) -> merged params table
--   data:get_warnings(), data:get_errors()
--
-- Follows KumoMTA's crates/kumo-api-types/src/shaping.rs:
--  * format by extension: .toml (toml++), .json (strict JSON, no comments), anything else is
--    tried as TOML then JSON;
--  * a file is { default = entry, provider = { name = provider }, ["domain"] = entry, ... };
--    an entry is EgressPathConfig fields plus mx_rollup (default true), replace_base, automation
--    and sources = { ["source-name"] = { fields } };
--  * mx_rollup = true entries are stored by site name, mx_rollup = false by the literal key
--    (hosts and IP addresses such as "192.168.1.10" must use mx_rollup = false);
--  * files merge in order: an entry merges into the same entry of an earlier file unless
--    replace_base = true; only additional_connection_limits, additional_message_rate_throttles
--    and additional_source_selection_rates merge key by key, every other field (including a
--    smtp_auth_plain_password table) is replaced whole;
--  * lookup order: default, matching providers, provider sources, site, domain, site source,
--    domain source;
--  * every merged entry (and each of its sources) is validated as an EgressPathConfig when the
--    files are loaded; an unknown field fails the load with context "domain: X" / "site: X".
-- Differences (no DNS here): the site name of an mx_rollup entry is its own (lower-cased) name
-- unless options.site_names maps it; provider MXSuffix/HostName rules need MX records and never
-- match; DomainSuffix rules do.
local kumo = require 'kumo'

local shaping = {}

local MERGEABLE = {
  additional_connection_limits = true,
  additional_message_rate_throttles = true,
  additional_source_selection_rates = true,
}

local deep_copy = kumo._deep_copy

local function merge_params(dest, src)
  for k, v in pairs(src) do
    if MERGEABLE[k] and type(dest[k]) == 'table' and type(v) == 'table' then
      for ik, iv in pairs(v) do
        dest[k][ik] = deep_copy(iv)
      end
    else
      dest[k] = deep_copy(v)
    end
  end
end

local ENTRY_KEYS = { mx_rollup = true, replace_base = true, automation = true, sources = true }
local PROVIDER_KEYS = {
  replace_base = true,
  automation = true,
  sources = true,
  match = true,
  provider_connection_limit = true,
  provider_max_message_rate = true,
}

local function parse_entry(name, raw, where)
  if type(raw) ~= 'table' then
    error(string.format('%s: entry %q must be a table', where, name), 0)
  end
  local e = { params = {}, sources = {}, automation = {}, mx_rollup = true, replace_base = false }
  for k, v in pairs(raw) do
    if k == 'mx_rollup' or k == 'replace_base' then
      if type(v) ~= 'boolean' then
        error(string.format('%s: %q: %s must be a boolean', where, name, k), 0)
      end
      e[k] = v
    elseif k == 'automation' then
      if type(v) ~= 'table' then
        error(string.format('%s: %q: automation must be an array', where, name), 0)
      end
      e.automation = v
    elseif k == 'sources' then
      if type(v) ~= 'table' then
        error(string.format('%s: %q: sources must be a table', where, name), 0)
      end
      for src, params in pairs(v) do
        if type(params) ~= 'table' then
          error(string.format('%s: %q: sources.%s must be a table', where, name, tostring(src)), 0)
        end
        e.sources[src] = params
      end
    else
      e.params[k] = v
    end
  end
  return e
end

local function parse_provider(name, raw, where)
  if type(raw) ~= 'table' then
    error(string.format('%s: provider %q must be a table', where, name), 0)
  end
  local p = { name = name, params = {}, sources = {}, automation = {}, matches = {},
    replace_base = raw.replace_base == true }
  for k, v in pairs(raw) do
    if k == 'match' then
      if type(v) ~= 'table' then
        error(string.format('%s: provider %q: match must be an array', where, name), 0)
      end
      for i, rule in ipairs(v) do
        local kind, arg = next(rule)
        if not (kind == 'DomainSuffix' or kind == 'MXSuffix' or kind == 'HostName')
          or type(arg) ~= 'string' or next(rule, kind) ~= nil then
          error(string.format('%s: provider %q: match[%d] must be one of {DomainSuffix=...}, '
            .. '{MXSuffix=...}, {HostName=...}', where, name, i), 0)
        end
        p.matches[#p.matches + 1] = { kind = kind, value = arg }
      end
    elseif k == 'sources' then
      for src, params in pairs(v) do
        p.sources[src] = params
      end
    elseif k == 'automation' then
      p.automation = v
    elseif PROVIDER_KEYS[k] then
      p[k] = v
    else
      p.params[k] = v
    end
  end
  return p
end

local function merge_entry(existing, new)
  if new.replace_base then
    existing.params = new.params
    existing.sources = new.sources
    existing.automation = new.automation
    return
  end
  merge_params(existing.params, new.params)
  for src, params in pairs(new.sources) do
    if existing.sources[src] then
      merge_params(existing.sources[src], params)
    else
      existing.sources[src] = deep_copy(params)
    end
  end
  for _, rule in ipairs(new.automation) do
    existing.automation[#existing.automation + 1] = rule
  end
end

local function merge_provider(existing, new)
  if new.replace_base then
    for _, k in ipairs { 'params', 'sources', 'automation', 'matches', 'provider_connection_limit' } do
      existing[k] = new[k]
    end
    return
  end
  if new.provider_connection_limit ~= nil then
    existing.provider_connection_limit = new.provider_connection_limit
  end
  merge_params(existing.params, new.params)
  for src, params in pairs(new.sources) do
    if existing.sources[src] then
      merge_params(existing.sources[src], params)
    else
      existing.sources[src] = deep_copy(params)
    end
  end
  for _, m in ipairs(new.matches) do
    existing.matches[#existing.matches + 1] = m
  end
end

-- vks_host.sys.read_file (vks_file): a FIFO, device, directory or socket is refused at once
local function read_all(path)
  return require('vks_host.sys').read_file(path, 'shaping file')
end

local function parse_file(path)
  local text, err = read_all(path)
  if not text then
    error(string.format('local shaping source %s error: loading data from file %s: %s', path,
      path, tostring(err)), 0)
  end
  local toml = require 'vks_host.toml'
  local json = require 'vks_host.json'
  if path:match('%.toml$') then
    local t, perr = toml.parse(text, path)
    if not t then
      error('parsing toml from file ' .. path .. ': ' .. perr, 0)
    end
    return t
  elseif path:match('%.json$') then
    local t, perr = json.parse(text, path)
    if perr then
      error('parsing json from file ' .. path .. ': ' .. perr, 0)
    end
    if type(t) ~= 'table' then
      error('parsing json from file ' .. path .. ': expected an object', 0)
    end
    return t
  end
  local t, e1 = toml.parse(text, path)
  if t then
    return t
  end
  local j, e2 = json.parse(text, path)
  if type(j) == 'table' then
    return j
  end
  error(string.format('parsing %s: as toml: %s, as json: %s', path, e1, tostring(e2)), 0)
end

local function is_ip(s)
  return s:match('^%d+%.%d+%.%d+%.%d+$') ~= nil or s:find(':', 1, true) ~= nil
end

local Data = {}
Data.__index = Data

-- Loads and merges shaping files (KumoMTA's kumo.shaping.load). Raises on a file that cannot be
-- read or parsed and on an entry that is not a valid EgressPathConfig.
function shaping.load(files, options)
  options = options or {}
  if type(files) == 'string' then
    files = { files }
  end
  local site_names = options.site_names or {}
  local self = setmetatable({ by_site = {}, by_domain = {}, by_provider = {}, provider_order = {},
    warnings = {}, errors = {}, files = files }, Data)

  local function site_of(domain)
    return site_names[domain] or site_names[domain:lower()] or domain:lower()
  end

  for _, path in ipairs(files) do
    local doc = parse_file(path)
    -- deterministic order inside a file (Lua tables have none)
    local names = {}
    for k in pairs(doc) do
      names[#names + 1] = k
    end
    table.sort(names)
    for _, name in ipairs(names) do
      local raw = doc[name]
      if name == 'provider' then
        if type(raw) ~= 'table' then
          error(path .. ': provider must be a table', 0)
        end
        local pnames = {}
        for p in pairs(raw) do
          pnames[#pnames + 1] = p
        end
        table.sort(pnames)
        for _, pname in ipairs(pnames) do
          local prov = parse_provider(pname, raw[pname], path)
          if self.by_provider[pname] then
            merge_provider(self.by_provider[pname], prov)
          else
            self.by_provider[pname] = prov
            self.provider_order[#self.provider_order + 1] = pname
          end
        end
      else
        local entry = parse_entry(name, raw, path)
        local map, key
        if name == 'default' then
          map, key = self.by_domain, 'default'
        elseif entry.mx_rollup then
          if not name:find('.', 1, true) and not is_ip(name) then
            self.warnings[#self.warnings + 1] = string.format(
              "Entry for domain '%s' consists of a single DNS label. Domain names in TOML "
                .. 'sections need to be quoted like \'["%s.com"]\'', name, name)
          end
          map, key = self.by_site, site_of(name)
        else
          map, key = self.by_domain, name
        end
        if map[key] then
          merge_entry(map[key], entry)
        else
          map[key] = entry
        end
      end
    end
  end

  local check = kumo._check_egress_params
  for _, kind in ipairs { 'site', 'domain' } do
    local map = kind == 'site' and self.by_site or self.by_domain
    local keys = {}
    for k in pairs(map) do
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local ok, msg = check(map[k].params, kind .. ': ' .. k)
      if not ok then
        error(msg, 0)
      end
      for src, params in pairs(map[k].sources) do
        ok, msg = check(params, string.format('%s: %s: source %s', kind, k, src))
        if not ok then
          error(msg, 0)
        end
      end
    end
  end
  for _, pname in ipairs(self.provider_order) do
    local prov = self.by_provider[pname]
    local ok, msg = check(prov.params, 'provider: ' .. pname)
    if not ok then
      error(msg, 0)
    end
    for src, params in pairs(prov.sources) do
      local p = deep_copy(params)
      p.provider_source_selection_rate = nil
      ok, msg = check(p, string.format('provider: %s: source %s', pname, src))
      if not ok then
        error(msg, 0)
      end
    end
  end
  return self
end

local function provider_matches(prov, domain)
  local d = domain:lower():gsub('%.$', '')
  for _, m in ipairs(prov.matches) do
    if m.kind == 'DomainSuffix' and d:sub(-#m.value) == m.value then
      return true
    end
  end
  return false -- MXSuffix / HostName need DNS, which this host does not do
end

local function apply_provider(prov, source, target)
  local implied = { provider_name = prov.name }
  if prov.provider_connection_limit ~= nil then
    implied.additional_connection_limits = {
      [string.format('shaping-provider-%s-%s-limit', prov.name, source)] =
        tostring(prov.provider_connection_limit),
    }
  end
  if prov.provider_max_message_rate ~= nil then
    implied.additional_message_rate_throttles = {
      [string.format('shaping-provider-%s-%s-rate', prov.name, source)] =
        tostring(prov.provider_max_message_rate),
    }
  end
  local rate = target.provider_source_selection_rate
  if rate ~= nil then
    target.provider_source_selection_rate = nil
    implied.additional_source_selection_rates = {
      [string.format('shaping-provider-%s-%s-selection-rate', prov.name, source)] = rate,
    }
  end
  merge_params(target, implied)
end

-- The merged parameters for a destination, in KumoMTA's order.
function Data:get_egress_path_config(domain, egress_source, site_name)
  egress_source = egress_source or 'unspecified'
  site_name = site_name or domain
  local params = {}
  local default = self.by_domain['default']
  if default then
    merge_params(params, default.params)
  end
  if not is_ip(domain) and domain:match('^[%w%.%-_]+$') then
    local with_sources = {}
    for _, pname in ipairs(self.provider_order) do
      local prov = self.by_provider[pname]
      if provider_matches(prov, domain) then
        merge_params(params, prov.params)
        apply_provider(prov, egress_source, params)
        if next(prov.sources) then
          with_sources[#with_sources + 1] = prov
        end
      end
    end
    for _, prov in ipairs(with_sources) do
      local src = prov.sources[egress_source]
      if src then
        merge_params(params, src)
        apply_provider(prov, egress_source, params)
      end
    end
  end
  local site = self.by_site[site_name] or self.by_site[site_name:lower()]
  local dom = self.by_domain[domain]
  if site then
    merge_params(params, site.params)
  end
  if dom then
    merge_params(params, dom.params)
  end
  if site and site.sources[egress_source] then
    merge_params(params, site.sources[egress_source])
  end
  if dom and dom.sources[egress_source] then
    merge_params(params, dom.sources[egress_source])
  end
  return params
end

function Data:get_warnings()
  return deep_copy(self.warnings)
end

function Data:get_errors()
  return deep_copy(self.errors)
end

local DEFAULT_FILE = '/opt/kumomta/share/policy-extras/shaping.toml'

local function file_exists(p) -- stat, not open: opening a FIFO would block
  return require('vks_host.sys').file_exists(p)
end

local function make_helper(files, options)
  local loaded
  local function get_egress_path_config(domain, egress_source, site_name)
    if loaded == nil then
      loaded = shaping.load(files, options)
    end
    local params = loaded:get_egress_path_config(domain, egress_source, site_name)
    if params.refresh_strategy == nil then
      params.refresh_strategy = 'Epoch'
    end
    return kumo.make_egress_path(params)
  end
  return get_egress_path_config
end

local function file_list(extra, no_default)
  local files = {}
  -- KumoMTA always loads its bundled defaults first; this host loads them only when installed
  if not no_default and file_exists(DEFAULT_FILE) then
    files[#files + 1] = DEFAULT_FILE
  end
  if type(extra) == 'string' then
    extra = { extra }
  end
  for _, f in ipairs(extra or {}) do
    files[#files + 1] = f
  end
  return files
end

-- shaping:setup(files): the older helper form. The result can be passed to kumo.on directly and
-- also has a .get_egress_path_config field.
function shaping:setup(extra_files, options)
  local fn = make_helper(file_list(extra_files, false), options)
  return setmetatable({ get_egress_path_config = fn }, {
    __call = function(_, ...)
      return fn(...)
    end,
  })
end

-- shaping:setup_with_automation{ extra_files=, no_default_files=, site_names=, ... }: the current
-- helper form. Automation (TSA) options are accepted and ignored: this host sends no mail.
function shaping:setup_with_automation(options)
  options = options or {}
  local fn = make_helper(file_list(options.extra_files, options.no_default_files),
    { site_names = options.site_names })
  return {
    get_egress_path_config = fn,
    setup_publish = function() end,
    should_enqueue_log_record = function()
      return false
    end,
  }
end

return shaping
