-- The Lua helper (tests/lib/vaultdev.lua) against a real build/vault-dev: start, KV, tokens,
-- faults, counters, seal, clock, state file across a restart, standby redirect, stop.
local vaultdev = require("vaultdev")

local passed, failed = 0, 0
local function ok(cond, name)
  if cond then passed = passed + 1; print("ok   - " .. name)
  else failed = failed + 1; print("FAIL - " .. name) end
end

local PW1 = "smtp-pass-DEVTEST-one-81c2"

local function run(name, fn)
  local good, err = pcall(fn)
  if not good then ok(false, name .. " raised: " .. tostring(err):gsub(PW1, "<pw>")) end
end

local work = os.getenv("VKS_SUITE_WORK") or "/tmp"
local state = work .. "/lua-state.json"
os.remove(state)

local vd = vaultdev.start{ args = { "--kv1", "kv", "--state", state } }
run("basics", function()
  ok(vd.addr:match("^https://127%.0%.0%.1:%d+$") ~= nil, "VAULT_ADDR parsed")
  ok(vd.cacert and io.open(vd.cacert) ~= nil, "VAULT_CACERT file exists")
  ok(type(vd.pid) == "number", "pid known")
  vd:kv2_put("smtp-auth/example.com", { key = PW1 })
  local st, j = vd:kv2_get("smtp-auth/example.com")
  ok(st == 200 and j.data.data.key == PW1 and j.data.metadata.version == 1, "kv2 put/get")
  ok(j.data.metadata.custom_metadata == vaultdev.null, "JSON null decoded as vaultdev.null")
  ok(vd:kv2_delete("smtp-auth/example.com") == 204, "kv2 delete")
  st, j = vd:kv2_get("smtp-auth/example.com")
  ok(st == 404 and j.errors == nil and j.data.data == vaultdev.null, "deleted: 404 with metadata")
  st, j = vd:kv2_get("nope")
  ok(st == 404 and #j.errors == 0, "missing: 404 errors []")
  vd:kv1_put("app/one", { key = PW1, ttl = "10m" })
  st, j = vd:kv1_get("app/one")
  ok(st == 200 and j.data.key == PW1 and j.lease_duration == 600, "kv1 put/get with ttl")
end)

run("tokens", function()
  vd:policy("r", 'path "secret/data/*" { capabilities = ["read"] }')
  local t = vd:create_token{ policies = { "r" }, ttl = "1m" }
  local st = vd:call("GET", "/v1/auth/token/lookup-self", nil, t)
  ok(st == 200, "lookup-self with a child token")
  vd:advance(120)
  st = vd:call("GET", "/v1/auth/token/lookup-self", nil, t)
  ok(st == 403, "expired after clock advance")
  vd:clock(0)
  st = vd:call("GET", "/v1/secret/data/x", nil, false)
  ok(st == 403, "no token: 403")
end)

run("faults and counters", function()
  vd:reset_counters()
  vd:kv2_put("f", { key = PW1 })
  local id = vd:fault{ action = "status", status = 503, path_prefix = "/v1/secret/data/f", count = 1 }
  ok(type(id) == "number", "fault id")
  local s1 = vd:request("GET", "/v1/secret/data/f")
  local s2 = vd:request("GET", "/v1/secret/data/f")
  ok(s1 == 503 and s2 == 200, "status fault for one request")
  ok(vd:count("GET", "/v1/secret/data/f") == 2, "counter counts both")
  vd:fault{ action = "close", path_prefix = "/v1/secret/data/f" }
  ok(vd:request("GET", "/v1/secret/data/f") == 0, "close fault: no HTTP status")
  vd:fault{ action = "status", status = 404, body = { errors = {} }, path_prefix = "/v1/secret/data/f" }
  local st404, raw404 = vd:request("GET", "/v1/secret/data/f")
  ok(st404 == 404 and raw404 == '{"errors":[]}\n', "empty errors table encodes as [] (Vault's array field)")
  ok(vaultdev.json_encode({ data = {} }) == '{"data":{}}', "other empty tables encode as {}")
  ok(vaultdev.json_encode(vaultdev.array{}) == "[]", "vaultdev.array{} encodes as []")
  ok(vd:clear_faults() == 204, "clear faults")
  ok(vd:seal() == 204 and vd:request("GET", "/v1/secret/data/f") == 503, "seal -> 503")
  ok(vd:unseal() == 204 and vd:request("GET", "/v1/secret/data/f") == 200, "unseal -> 200")
end)

run("standby", function()
  local sb = vaultdev.start{ tls = false, args = { "--standby-of", vd.addr } }
  local st, raw = sb:request("GET", "/v1/secret/data/f?version=1")
  ok(st == 307, "standby answers 307")
  local _, j = sb:call("GET", "/v1/sys/health", nil, false)
  ok(j and j.standby == true, "standby health body says standby")
  local p = io.popen("curl -s -o /dev/null -w '%{redirect_url}' " .. sb.addr .. "/v1/secret/data/f?version=1")
  local loc = p:read("a"); p:close()
  ok(loc == vd.addr .. "/v1/secret/data/f?version=1", "Location is the active node + path + query")
  ok(raw ~= nil, "307 body read")
  ok(sb:stop() == true, "standby stopped")
end)

ok(vd:stop() == true, "stop: exits on SIGTERM")
ok(not vd:sanitizer_report(), "no sanitizer report on the server's stderr")

run("state file", function()
  local f = io.open(state)
  ok(f ~= nil, "state file written")
  if f then f:close() end
  local p = io.popen("stat -c %a '" .. state .. "'")
  local mode = p:read("l"); p:close()
  ok(mode == "600", "state file mode 0600 (it holds secrets)")
  local vd2 = vaultdev.start{ args = { "--state", state } }
  local st, j = vd2:kv2_get("f")
  ok(st == 200 and j.data.data.key == PW1, "kv2 data survives a restart through --state")
  st, j = vd2:call("GET", "/v1/kv/app/one")
  ok(st == 200 and j.data.key == PW1, "kv1 mount and data survive")
  ok(vd2:stop() == true, "second server stopped")
end)

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
