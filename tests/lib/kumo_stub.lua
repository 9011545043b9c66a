-- A stand-in for the parts of KumoMTA's Lua API that policy-examples/kumomta-inbound-auth.lua uses
-- (kumo.on, kumo.reject, kumo.http.build_client, kumo.serde.json_encode/json_parse), for
-- tests/integration/91-inbound-kumo.py. kumo.http is real HTTP through the curl program; the
-- request body goes through a 0600 temporary file (never the command line). Flat JSON objects of
-- strings and booleans only: what the example sends and the agent answers.
local M = { handlers = {} }

function M.on(name, fn) M.handlers[name] = fn end

function M.reject(code, text) error({ rejected = true, code = code, text = text }, 0) end

local function esc(s)
  return (s:gsub('[%c"\\]', function(c) return string.format('\\u%04x', c:byte()) end))
end

M.serde = {}
function M.serde.json_encode(t)
  local parts = {}
  for k, v in pairs(t) do
    local val = type(v) == 'boolean' and tostring(v) or '"' .. esc(tostring(v)) .. '"'
    parts[#parts + 1] = '"' .. esc(k) .. '":' .. val
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

function M.serde.json_parse(s)
  if not s:match '^%s*{' then error('not a JSON object') end
  local t, i = {}, 1
  while true do
    local k, j = s:match('"([%w_]+)"%s*:%s*()', i)
    if not k then break end
    if s:sub(j, j) == '"' then
      local e = j + 1
      while s:sub(e, e) ~= '"' do e = e + (s:sub(e, e) == '\\' and 2 or 1) end
      t[k], i = s:sub(j + 1, e - 1), e + 1
    else
      local v, e = s:match('^([%w%.%-]+)()', j)
      t[k], i = (v == 'true' and true) or (v == 'false' and false) or v, e
    end
  end
  return t
end

M.http = {}
function M.http.build_client(opts)
  local c = { timeout = opts and opts.timeout }
  function c:post(url)
    local r = { url = url, headers = {}, body = '' }
    function r:header(k, v) self.headers[#self.headers + 1] = k .. ': ' .. v end
    function r:body(b) self.body = b end
    function r:send()
      local bodyf, outf = os.tmpname(), os.tmpname()
      local f = assert(io.open(bodyf, 'wb')); f:write(self.body); f:close()
      local cmd = { 'curl', '-s', '-m', '5', '-o', outf, '-w', '%{http_code}', '--data-binary', '@' .. bodyf }
      for _, h in ipairs(self.headers) do cmd[#cmd + 1] = '-H'; cmd[#cmd + 1] = h end
      cmd[#cmd + 1] = self.url
      for i, a in ipairs(cmd) do cmd[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
      local p = io.popen(table.concat(cmd, ' '))
      local code = tonumber(p:read 'a') or 0
      p:close()
      os.remove(bodyf)
      local o = io.open(outf, 'rb'); local text = o and o:read 'a' or ''; if o then o:close() end
      os.remove(outf)
      if code == 0 then error('connection failed') end
      return { status_code = function() return code end, text = function() return text end }
    end
    return r
  end
  return c
end

package.preload['kumo'] = function() return M end
return M
