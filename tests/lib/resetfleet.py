"""A fleet of running resolvers of one credential, for the emergency reset's test and bench
(tests/integration/88-cred-reset.py, bench/reset.sh): vks-policy loops (the Lua module in the
KumoMTA-style host), Lua hosts that fork (tests/helpers/fork_host: the parent looks up, then its
children loop, as pre-forking MTAs do) and vks-agents queried over socketmap. Every member looks
the credential up every `interval_ms` and keeps the times (CLOCK_MONOTONIC ms, the clock Python's
time.monotonic() reads) at which its answer changed, so that a test can tell when each one first
refused. Files hold outcomes and times only, never a secret.

    from resetfleet import Fleet
    f = Fleet(workdir, vd, env, "smtp-auth/fleet.example", agent_token, policies=20, forks=10,
              children=2, agents=10)                 # started
    f.wait_serving(60)    -> [] or the names that never served
    f.first_refusals(since_ms) -> {member: (ms, code) or None}
    f.served_after(ms)    -> members that served a value after ms (must be none once refused)
    f.stop()
"""
import os
import threading
import time

from agent import Agent, agent_config, credential_section, socketmap_query, socketmap_section
from policyloop import PolicyLoop, write_vault_policy

FORK_MAIN = r"""
local vks = require 'vault_keysource'
local path, out, stop = os.getenv('RF_PATH'), os.getenv('RF_OUT'), os.getenv('RF_STOP')
local n, interval = tonumber(os.getenv('RF_CHILDREN')), tonumber(os.getenv('RF_INTERVAL'))
local ks = { vault_mount = 'secret', vault_path = path }
local function exists(p) local f = io.open(p) if f then f:close() return true end return false end
local function loop(file)
  local f, last = assert(io.open(file, 'w')), nil
  while not exists(stop) do
    local v, _, code = vks.resolve(ks)
    local now = v and 'ok' or tostring(code)
    v = nil
    if now ~= last then f:write(host.monotonic_ms(), ' ', now, '\n') f:flush() last = now end
    host.sleep_ms(interval)
  end
  f:close()
end
local first = vks.resolve(ks)          -- the parent's own lookup (cache and reset state) before fork
first = nil
-- that lookup started the cache's refresh thread; fork once it is idle, as a pre-forking MTA
-- does after its start-up. GCC 12's ASan does not lock its allocator around fork(), so a child
-- forked while that thread is starting can inherit an allocator lock held and hang in its first
-- malloc (glibc's malloc is fork-safe: 0 hangs in 150 forks of the plain build, 18 in 60 under
-- ASan without this pause, 0 in 60 with it).
host.sleep_ms(300)
local pids = {}
for i = 1, n do
  local pid = host.fork()
  if pid == 0 then loop(out .. '-' .. i .. '.log') host.exit(0) end
  pids[#pids + 1] = pid
end
for _, p in ipairs(pids) do host.wait(p) end
return 0
"""


def _now_ms():
    return int(time.monotonic() * 1000)


class _AgentClient:
    """One vks-agent and a thread that asks its socketmap for the credential every interval."""

    def __init__(self, workdir, name, vd, token, key, interval_ms, audit=None, env=None, extra_vault=""):
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        self.name, self.key, self.interval = name, key, interval_ms / 1000.0
        self.sock = os.path.join(d, "sm.sock")
        cfg = agent_config(vd, token, audit=audit, ttl="1h", max_stale="0s", neg_ttl="1s", timeout="5s")
        cfg = cfg.replace("[cache]", extra_vault + "\n[cache]", 1)
        cfg += "\n[agent]\nworkers = 1\n" + socketmap_section(self.sock, allow_users=("root",), group=None)
        cfg = cfg.replace(credential_section("socketmap"), credential_section("socketmap", key="key"))
        self.agent = Agent(d, cfg, env=env)
        self.changes, self.stopping = [], False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        last = None
        while not self.stopping:
            try:
                ans = socketmap_query(self.sock, "sasl", self.key, timeout=10)
                now = "ok" if ans.startswith("OK ") else ans.split(" ")[0]
                ans = None
            except (OSError, EOFError) as e:
                now = "socket:" + type(e).__name__
            if now != last:
                self.changes.append((_now_ms(), now))
                last = now
            time.sleep(self.interval)

    def stop(self):
        self.stopping = True
        self.t.join(15)
        return self.agent.stop()


class Fleet:
    def __init__(self, workdir, vd, env, path, agent_token, policies=20, forks=10, children=2, agents=10,
                 interval_ms=100, agent_audit=None):
        self.workdir, self.stop_path = workdir, os.path.join(workdir, "fleet.stop")
        if os.path.exists(self.stop_path):
            os.unlink(self.stop_path)
        domain = path.rsplit("/", 1)[1]
        prefix = path[: -len(domain)]
        pol = write_vault_policy(os.path.join(workdir, "fleet-policy.lua"), username="fleet", prefix=prefix)
        self.policies = []
        for i in range(policies):
            e = dict(env, VKS_AUDIT_FILE=os.path.join(workdir, "pol-%d.audit.log" % i))
            self.policies.append(PolicyLoop(workdir, "pol-%d" % i, pol, None, e, domain=domain,
                                            interval_ms=interval_ms))
        main = os.path.join(workdir, "fleet-fork.lua")
        with open(main, "w") as f:
            f.write(FORK_MAIN)
        root = os.environ.get("ROOT", ".")
        build = os.environ.get("BUILD", "build")
        fork_bin = os.path.join(build if os.path.isabs(build) else os.path.join(root, build), "tests", "helpers",
                               "fork_host")
        import subprocess
        self.forks, self.fork_logs = [], []
        for i in range(forks):
            out = os.path.join(workdir, "fork-%d" % i)
            e = dict(env, RF_PATH=path, RF_OUT=out, RF_STOP=self.stop_path, RF_CHILDREN=str(children),
                     RF_INTERVAL=str(interval_ms))
            e.pop("VKS_AUDIT_FILE", None)
            self.forks.append(subprocess.Popen([fork_bin, main], env=e, stdin=subprocess.DEVNULL,
                                               stdout=open(out + ".out", "wb"), stderr=subprocess.STDOUT))
            self.fork_logs += [out + "-%d.log" % (j + 1) for j in range(children)]
        # the agent reads its Vault settings from its config; from the environment only the ENC: key
        aenv = {k: v for k, v in env.items() if not k.startswith("VAULT_")}
        self.agents = [_AgentClient(workdir, "agent-%d" % i, vd, agent_token, domain, interval_ms,
                                    audit=agent_audit if i == 0 else None, env=aenv) for i in range(agents)]

    # ------------------------------------------------------------------ what each member saw
    def changes(self):
        """{member: [(ms, outcome)]}: outcome "ok" or the code (policy, fork) / answer (agent)."""
        out = {}
        for p in self.policies:
            last, ch = None, []
            for r in p.records():
                now = r.get("lookup")
                if now != last:
                    ch.append((r.get("t1_ms") or r.get("t0_ms"), now))
                    last = now
            out[p.name] = ch
        for path in self.fork_logs:
            ch = []
            try:
                with open(path) as f:
                    for line in f:
                        if line.endswith("\n"):
                            ms, _, now = line.strip().partition(" ")
                            ch.append((int(ms), now))
            except FileNotFoundError:
                pass
            out[os.path.basename(path)[:-4]] = ch
        for a in self.agents:
            out[a.name] = list(a.changes)
        return out

    def wait_serving(self, timeout=60):
        deadline = time.time() + timeout
        while True:
            missing = [m for m, ch in self.changes().items() if not any(o == "ok" for _, o in ch)]
            if not missing or time.time() > deadline:
                return missing
            time.sleep(0.2)

    def first_refusals(self, since_ms):
        res = {}
        for m, ch in self.changes().items():
            hit = [(ms, o) for ms, o in ch if ms >= since_ms and o != "ok"]
            res[m] = hit[0] if hit else None
        return res

    def served_after(self, since_ms):
        return sorted(m for m, ch in self.changes().items() if any(ms > since_ms and o == "ok" for ms, o in ch))

    def stop(self):
        open(self.stop_path, "w").close()
        rcs = [p.stop(wait=30) for p in self.policies]
        for p in self.forks:
            try:
                rcs.append(p.wait(30))
            except Exception:
                p.kill()
                rcs.append(p.wait())
        rcs += [a.stop() for a in self.agents]
        return rcs


def distribution(latencies_ms):
    """(p50, p90, p100) of a list of milliseconds (nearest rank)."""
    s = sorted(latencies_ms)
    if not s:
        return (None, None, None)

    def rank(p):
        return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]
    return (rank(50), rank(90), s[-1])
