--[==[ Start, drive and stop build/vault-dev from Lua tests (lua5.4; HTTP through the curl command).

  local vaultdev = require("vaultdev")
  local vd = vaultdev.start{ tls = true, args = { "--kv1", "kv" } }   -- all fields optional
  vd.addr, vd.cacert, vd.root_token, vd.pid, vd.workdir
  vd:kv2_put("smtp-auth/example.com", { key = "pw" })     -- -> decoded response (error if not 200)
  vd:kv2_get(path [, mount [, version]])                  -- -> status, decoded body
  vd:kv2_delete(path [, mount]); vd:kv2_destroy(path, {1,2} [, mount])
  vd:kv1_put(path, tbl [, mount="kv"]); vd:kv1_get(path [, mount]); vd:kv1_delete(path [, mount])
  vd:policy(name, hcl_text); vd:create_token{ policies = {...}, ttl = "1h" }  -- -> token string
  vd:request(method, path [, body [, token [, headers]]])  -- -> status, raw body string
        body: table (sent as JSON) or string; token: nil = root token, false = none
  vd:call(method, path [, body [, token [, headers]]])     -- -> status, decoded body (or nil)
  vd:fault{ action = "status", status = 503, path_prefix = "/v1/secret/", count = 2 }  -- -> id
  vd:clear_faults(); vd:counters([prefix]) -> { ["GET /v1/..."] = n }; vd:count(method, path)
  vd:reset_counters(); vd:seal(); vd:unseal(); vd:clock(offset_seconds); vd:advance(seconds)
  vd:stop()                                               -- SIGTERM, waits, SIGKILL after 15 s
  vd:sanitizer_report()                                   -- true if ASan/UBSan wrote a report
  vaultdev.json_encode(v), vaultdev.json_decode(s), vaultdev.null (JSON null both ways),
  vaultdev.array{} (an empty table that encodes as []; empty tables under Vault's array fields
  such as errors, versions, policies, keys, capabilities already do)
  vaultdev.ROOT_TOKEN  (a listed test secret, tests/test-secrets.d/dev.txt)

The server runs in a fresh directory under $VKS_SUITE_WORK (or /tmp); its stdout goes to
<workdir>/vault-dev.stdout and its stderr to <workdir>/vault-dev.err. Each request writes a curl
config file (headers and body, never on the command line) that is removed afterwards.
The binary is $VAULT_DEV_BIN or $ROOT/$BUILD/vault-dev.
]==]
local M = {}
M.ROOT_TOKEN = "vault-dev-root-TEST-5b8e1d09"
M.null = setmetatable({}, { __tostring = function() return "null" end })

------------------------------------------------------------------------------ JSON
local function enc_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local m = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return m[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  if next(t) == nil then return getmetatable(t) == M.array_mt end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or math.type(k) ~= "integer" then return false end
    n = n + 1
  end
  return n == #t
end
M.array_mt = {}
function M.array(t) return setmetatable(t or {}, M.array_mt) end

-- Vault fields that are always arrays: an empty Lua table under one of these keys encodes as []
-- (elsewhere an empty table is {}; use vaultdev.array{} to force [] anywhere).
local ARRAY_KEYS = {
  errors = true, warnings = true, versions = true, policies = true, token_policies = true,
  capabilities = true, keys = true, paths = true,
}

function M.json_encode(v, key)
  local t = type(v)
  if t == "table" and next(v) == nil and key and ARRAY_KEYS[key] and getmetatable(v) == nil then
    return "[]"
  end
  if v == nil or v == M.null then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return enc_str(v) end
  if t == "table" then
    local out = {}
    if is_array(v) then
      for i = 1, #v do out[i] = M.json_encode(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = enc_str(k) .. ":" .. M.json_encode(v[k], k) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  error("cannot encode " .. t)
end

function M.json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function err(m) error(string.format("json: %s at %d", m, pos), 0) end
  local value
  local function str()
    pos = pos + 1
    local buf = {}
    while true do
      local c = s:sub(pos, pos)
      if c == "" then err("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
        if map[e] then buf[#buf + 1] = map[e]; pos = pos + 2
        elseif e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16) or err("bad \\u")
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
            local lo = tonumber(s:sub(pos + 2, pos + 5), 16)
            if lo and lo >= 0xDC00 and lo <= 0xDFFF then
              cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00); pos = pos + 6
            end
          end
          buf[#buf + 1] = utf8.char(cp)
        else err("bad escape") end
      else
        local j = s:find('["\\]', pos) or #s + 1
        buf[#buf + 1] = s:sub(pos, j - 1); pos = j
      end
    end
    return table.concat(buf)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local o = {}
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return o end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then err("expected key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then err("expected ':'") end
        pos = pos + 1
        o[k] = value()
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "}" then return o end
        if d ~= "," then err("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local a = M.array()
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return a end
      while true do
        a[#a + 1] = value()
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "]" then return a end
        if d ~= "," then err("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4; return M.null
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then err("unexpected character") end
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  local v = value()
  ws()
  if pos <= #s then err("trailing data") end
  return v
end

------------------------------------------------------------------------------ process
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function readfile(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local d = f:read("a")
  f:close()
  return d
end

local function writefile(p, d, mode)
  local f = assert(io.open(p, "wb"))
  f:write(d)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. shq(p)) end
end

local function sleep(s) os.execute("sleep " .. s) end

local function binary()
  if os.getenv("VAULT_DEV_BIN") then return os.getenv("VAULT_DEV_BIN") end
  local root = os.getenv("ROOT") or "."
  local build = os.getenv("BUILD") or "build"
  if build:sub(1, 1) == "/" then return build .. "/vault-dev" end
  return root .. "/" .. build .. "/vault-dev"
end

local function alive(pid)
  local st = readfile("/proc/" .. pid .. "/stat")
  if not st then return false end
  local state = st:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

local VD = {}
VD.__index = VD

function M.start(opts)
  opts = opts or {}
  local self = setmetatable({}, VD)
  self.root_token = opts.root_token or M.ROOT_TOKEN
  self.tls = opts.tls ~= false
  local base = os.getenv("VKS_SUITE_WORK") or "/tmp"
  local p = io.popen("mktemp -d " .. shq(base .. "/vault-dev-XXXXXX"))
  self.workdir = p:read("l")
  p:close()
  local args = { shq(binary()), "--addr", "127.0.0.1:0", "--root-token", shq(self.root_token) }
  if self.tls then args[#args + 1] = "--tls-dir"; args[#args + 1] = shq(self.workdir .. "/tls") end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = shq(a) end
  local out, errf = self.workdir .. "/vault-dev.stdout", self.workdir .. "/vault-dev.err"
  local cmd = "exec " .. table.concat(args, " ") .. " >" .. shq(out) .. " 2>" .. shq(errf) .. " </dev/null"
  p = io.popen("sh -c " .. shq(cmd .. " & echo $!"))
  self.pid = tonumber(p:read("l"))
  p:close()
  for _ = 1, 400 do
    local o = readfile(out) or ""
    self.addr = o:match("VAULT_ADDR=(%S+)\n")
    self.cacert = o:match("VAULT_CACERT=(%S+)\n")
    if self.addr and (self.cacert or not self.tls) then return self end
    if not alive(self.pid) then break end
    sleep(0.05)
  end
  self:stop()
  error("vault-dev did not start (see " .. errf .. ")")
end

-- true when the server's stderr holds an ASan/UBSan/LSan report (make asan)
function VD:sanitizer_report()
  local t = readfile(self.workdir .. "/vault-dev.err") or ""
  return t:find("Sanitizer", 1, true) ~= nil or t:find("runtime error:", 1, true) ~= nil
end

function VD:stop()
  if not self.pid then return end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  for _ = 1, 300 do
    if not alive(self.pid) then self.pid = nil; return true end
    sleep(0.05)
  end
  os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  self.pid = nil
  return false
end

------------------------------------------------------------------------------ HTTP
local seq = 0
function VD:request(method, path, body, token, headers)
  seq = seq + 1
  local cfg = string.format("%s/curl-%d.cfg", self.workdir, seq)
  local bodyfile = string.format("%s/curl-%d.body", self.workdir, seq)
  local lines = {
    "silent", "show-error", "globoff",
    'request = "' .. method .. '"',
    'url = "' .. self.addr .. path .. '"',
    'output = "' .. bodyfile .. '"',
    'write-out = "%{http_code}"',
    "max-time = 120",
  }
  if self.cacert then lines[#lines + 1] = 'cacert = "' .. self.cacert .. '"' end
  if token == nil then token = self.root_token end
  if token then lines[#lines + 1] = 'header = "X-Vault-Token: ' .. token .. '"' end
  for k, v in pairs(headers or {}) do lines[#lines + 1] = 'header = "' .. k .. ": " .. v .. '"' end
  local datafile
  if body ~= nil then
    if type(body) == "table" then
      body = M.json_encode(body)
      lines[#lines + 1] = 'header = "Content-Type: application/json"'
    end
    datafile = cfg .. ".data"
    writefile(datafile, body, "600")
    lines[#lines + 1] = 'data-binary = "@' .. datafile .. '"'
  end
  writefile(cfg, table.concat(lines, "\n") .. "\n", "600")
  local p = io.popen("curl -K " .. shq(cfg) .. " 2>/dev/null")
  local code = p:read("a")
  p:close()
  local resp = readfile(bodyfile) or ""
  os.remove(cfg); os.remove(bodyfile)
  if datafile then os.remove(datafile) end
  return tonumber(code) or 0, resp
end

function VD:call(method, path, body, token, headers)
  local st, raw = self:request(method, path, body, token, headers)
  if raw == "" then return st, nil end
  local ok, v = pcall(M.json_decode, raw)
  return st, ok and v or nil
end

local function must(st, want, what, j)
  if st ~= want then
    error(string.format("%s: HTTP %d %s", what, st, j and j.errors and M.json_encode(j.errors) or ""), 2)
  end
end

function VD:kv2_put(path, data, mount, cas)
  local body = { data = data }
  if cas then body.options = { cas = cas } end
  local st, j = self:call("POST", "/v1/" .. (mount or "secret") .. "/data/" .. path, body)
  must(st, 200, "kv2_put " .. path, j)
  return j
end

function VD:kv2_get(path, mount, version)
  local q = version and ("?version=" .. version) or ""
  return self:call("GET", "/v1/" .. (mount or "secret") .. "/data/" .. path .. q)
end

function VD:kv2_delete(path, mount)
  return (self:call("DELETE", "/v1/" .. (mount or "secret") .. "/data/" .. path))
end

function VD:kv2_destroy(path, versions, mount)
  return (self:call("POST", "/v1/" .. (mount or "secret") .. "/destroy/" .. path, { versions = M.array(versions) }))
end

function VD:kv1_put(path, data, mount)
  local st, j = self:call("POST", "/v1/" .. (mount or "kv") .. "/" .. path, data)
  must(st, 204, "kv1_put " .. path, j)
end

function VD:kv1_get(path, mount) return self:call("GET", "/v1/" .. (mount or "kv") .. "/" .. path) end

function VD:kv1_delete(path, mount)
  return (self:call("DELETE", "/v1/" .. (mount or "kv") .. "/" .. path))
end

function VD:policy(name, text)
  local st, j = self:call("PUT", "/v1/sys/policies/acl/" .. name, { policy = text })
  must(st, 204, "policy " .. name, j)
end

function VD:create_token(fields)
  local f = {}
  for k, v in pairs(fields or {}) do f[k] = v end
  if f.policies then f.policies = M.array(f.policies) end
  local st, j = self:call("POST", "/v1/auth/token/create", f)
  must(st, 200, "create_token", j)
  return j.auth.client_token
end

function VD:dev(method, sub, body) return self:call(method, "/v1/sys/dev/" .. sub, body) end

function VD:fault(rule)
  local st, j = self:dev("POST", "faults", rule)
  must(st, 200, "fault", j)
  return j.data.id
end

function VD:faults() local _, j = self:dev("GET", "faults"); return j.data.faults end
function VD:clear_faults() return (self:dev("DELETE", "faults")) end

function VD:counters(prefix)
  local _, j = self:dev("GET", "counters" .. (prefix and ("?prefix=" .. prefix) or ""))
  return j.data.counters
end

function VD:count(method, path) return self:counters()[method .. " " .. path] or 0 end
function VD:reset_counters() return (self:dev("DELETE", "counters")) end
function VD:seal() return (self:dev("POST", "seal")) end
function VD:unseal() return (self:dev("POST", "unseal")) end
function VD:clock(offset) local _, j = self:dev("POST", "clock", { offset_seconds = offset }); return j.data end
function VD:advance(s) local _, j = self:dev("POST", "clock", { advance_seconds = s }); return j.data end

return M
