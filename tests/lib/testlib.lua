-- testlib: a tiny test framework for the Lua integration tests.
--
--   local T = require 'testlib'
--   T.test('resolves a file', function()
--     T.eq(vks.resolve(path), 'secret')
--   end)
--   os.exit(T.done())            -- prints "N passed, N failed"; returns 0 or 1
--
-- A test fails when it raises (any T.* check that fails raises). Failure messages go to stdout;
-- never pass a secret as a check's label.
local T = { passed = 0, failed = 0, failures = {} }

local function fmt(v)
  if type(v) == 'string' then return string.format('%q', v) end
  return tostring(v)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

-- Runs one test. Names must be unique within a file.
function T.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    T.passed = T.passed + 1
    print('ok     ' .. name)
  else
    T.failed = T.failed + 1
    T.failures[#T.failures + 1] = name
    print('FAILED ' .. name .. ': ' .. tostring(err))
  end
end

-- Plain checks. `label` says what is being checked.
function T.ok(cond, label)
  if not cond then fail('check failed: ' .. tostring(label or 'condition')) end
  return cond
end

function T.eq(got, want, label)
  if got ~= want then
    fail(string.format('%s: got %s, want %s', label or 'value', fmt(got), fmt(want)))
  end
end

-- Like T.eq, for values that must not be printed (secrets): reports lengths only.
function T.same_secret(got, want, label)
  if got ~= want then
    fail(string.format('%s: got a %s of length %s, want a string of length %d', label or 'secret',
      type(got), type(got) == 'string' and #got or '-', #want))
  end
end

function T.contains(s, sub, label)
  if type(s) ~= 'string' or not s:find(sub, 1, true) then
    fail(string.format('%s: %s does not contain %s', label or 'string', fmt(s), fmt(sub)))
  end
end

function T.not_contains(s, sub, label)
  if type(s) == 'string' and s:find(sub, 1, true) then
    fail(string.format('%s: contains a forbidden substring', label or 'string'))
  end
end

-- Calls fn(...) and expects it to raise; returns the error message. `pattern` (plain text) must
-- occur in the message when given.
function T.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail('expected an error' .. (pattern and (' containing ' .. fmt(pattern)) or '')) end
  err = tostring(err)
  if pattern and not err:find(pattern, 1, true) then
    fail(string.format('error %s does not contain %s', fmt(err), fmt(pattern)))
  end
  return err
end

-- Expects the runtime-failure convention: fn(...) returns nil, message, code. Checks the code and
-- that every string in `parts` occurs in the message. Returns the message.
function T.fails(code, parts, fn, ...)
  local v, msg, got = fn(...)
  if v ~= nil then fail('expected nil, message, ' .. code .. ', got a ' .. type(v) .. ' value') end
  if got ~= code then
    fail(string.format('code: got %s, want %s (message %s)', fmt(got), fmt(code), fmt(msg)))
  end
  if type(msg) ~= 'string' or msg == '' then fail('no message with code ' .. code) end
  for _, p in ipairs(parts or {}) do
    if not msg:find(p, 1, true) then
      fail(string.format('message %s does not contain %s', fmt(msg), fmt(p)))
    end
  end
  return msg
end

-- The suite's scratch directory (tests/run sets VKS_SUITE_WORK), or a fresh temporary one.
function T.workdir()
  local d = os.getenv('VKS_SUITE_WORK')
  if d and d ~= '' then return d end
  d = os.tmpname()
  os.remove(d)
  os.execute('mkdir -p ' .. d)
  return d
end

-- Writes a file (binary) with the given mode (octal string, default '600').
function T.write_file(path, data, mode)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
  os.execute(string.format("chmod %s '%s'", mode or '600', path))
  return path
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
T.shq = shq

-- Lua cannot set environment variables: runs this same script again in a child lua5.4 with the
-- given variables added (a value of false unsets the variable), and exits with its status. In
-- the child (marked by VKS_TEST_REEXEC) it returns at once. Call it first thing in a test file.
function T.reexec(vars)
  if os.getenv('VKS_TEST_REEXEC') then return end
  local parts = { 'env', 'VKS_TEST_REEXEC=1' }
  for k, v in pairs(vars) do
    if v == false then
      table.insert(parts, 2, '-u ' .. k)
    else
      parts[#parts + 1] = k .. '=' .. shq(v)
    end
  end
  parts[#parts + 1] = 'lua5.4'
  parts[#parts + 1] = shq(arg[0])
  io.stdout:flush()
  local _, how, code = os.execute(table.concat(parts, ' '))
  os.exit(how == 'exit' and code or 1)
end

-- Prints the closing line and returns the exit status for os.exit.
function T.done()
  if #T.failures > 0 then
    print('failed tests: ' .. table.concat(T.failures, ', '))
  end
  print(string.format('%d passed, %d failed', T.passed, T.failed))
  return T.failed == 0 and 0 or 1
end

return T
