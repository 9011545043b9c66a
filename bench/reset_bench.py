"""Measures the emergency reset (docs/incident-runbook.md "What it costs", docs/benchmarks.md):
RESET_BENCH_RUNS (default 2) resets, each of a fresh credential looked up every 100 ms by 50
running processes (20 vks-policy loops, 10 Lua hosts with 2 forked children each, 10 vks-agents over
socketmap; caches of an hour, so only the reset stops them), with the default check interval (2 s).
Prints, per run and over all runs, p50/p90/p100 of the time from `vks cred reset` returning to each
process's first refusal, and the control-record requests Vault received per process per second
while idle and during the run."""
import json
import os
import subprocess
import sys
import time

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
BUILD = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from credtest import Cred  # noqa: E402
from agent import token_file  # noqa: E402
from resetfleet import Fleet, distribution  # noqa: E402

ENC_KEY = "Y3JlZDg4LXJlc2V0LWVuYy1rZXktVEVTVC0wMTIzNDU="    # tests/test-secrets.d/reset.txt
AUDIT_KEY = "Y3JlZDg4LXJlc2V0LWF1ZGl0LWtleS1URVNULTAxMjM="
RUNS = int(os.environ.get("RESET_BENCH_RUNS", "2"))
PROCS = (20, 10, 2, 10)   # policy loops, forking hosts, children each, agents
IDLE_S = 10.0


def control_requests(vd):
    c = vd.counters(prefix="/v1/secret/")
    return sum(v for k, v in c.items() if "/vks-control/" in k)


def one_run(vd, c, mta, tok, i, all_lat):
    name = "bench-%d.example" % i
    rc, out, err = c.vks("cred", "create", name, "--username", "bench%d" % i, "--all-domains")
    assert rc == 0, err
    env = c.env(token=mta, VKS_CACHE_TTL="3600")
    env.pop("VKS_AUDIT_FILE", None)
    work = os.path.join(vd.workdir, "run-%d" % i)
    os.makedirs(work)
    f = Fleet(work, vd, env, "smtp-auth/" + name, tok, policies=PROCS[0], forks=PROCS[1], children=PROCS[2],
              agents=PROCS[3])
    total = PROCS[0] + PROCS[1] * PROCS[2] + PROCS[3]
    try:
        missing = f.wait_serving(120)
        if missing:
            print("run %d: %d processes never served: %s" % (i, len(missing), missing[:5]))
        time.sleep(1.0)
        n0, t0 = control_requests(vd), time.monotonic()
        time.sleep(IDLE_S)
        n1, t1 = control_requests(vd), time.monotonic()
        idle = (n1 - n0) / (t1 - t0) / total
        t_start = int(time.monotonic() * 1000)
        rc, out, err = c.vks("cred", "reset", name, "--reason", "bench", "--json")
        t_ret = int(time.monotonic() * 1000)
        assert rc == 0, err
        deadline = time.time() + 15
        while time.time() < deadline and any(v is None for v in f.first_refusals(t_start).values()):
            time.sleep(0.2)
        n2, t2 = control_requests(vd), time.monotonic()
        first = f.first_refusals(t_start)
        lat = [max(0, r[0] - t_ret) for r in first.values() if r]
        all_lat += lat
        p50, p90, p100 = distribution(lat)
        run = (n2 - n1) / (t2 - t1) / total
        print("run %d: %d/%d processes refused; ms from the command's return to the first refusal: p50 %s, p90 %s, "
              "p100 %s (command %d ms)" % (i, len(lat), total, p50, p90, p100, t_ret - t_start))
        print("run %d: control-record requests per process per second: idle %.3f (%.1f s), during the reset %.3f "
              "(metadata checks + one data read each)" % (i, idle, t1 - t0, run))
        return idle
    finally:
        f.stop()


def main():
    with VaultDev() as vd:
        c = Cred(vd, ENC_KEY, AUDIT_KEY)
        vd.policy("mta-reader", open(os.path.join(ROOT, "policy-examples", "mta-reader.hcl")).read())
        mta = vd.create_token(policies=["mta-reader"])
        tok = token_file(vd.workdir, mta)
        lat, idles = [], []
        for i in range(1, RUNS + 1):
            idles.append(one_run(vd, c, mta, tok, i, lat))
        p50, p90, p100 = distribution(lat)
        per = sum(idles) / len(idles)
        print("reset propagation over %d samples (%d runs x 50 processes, interval 2 s): p50 %s ms, p90 %s ms, "
              "p100 %s ms (goal: p100 <= 5000 ms)" % (len(lat), RUNS, p50, p90, p100))
        print("extra Vault requests per process per second (control record, idle): %.3f; for 1,000 processes "
              "%.0f/s, for 10,000 processes %.0f/s" % (per, per * 1000, per * 10000))


if __name__ == "__main__":
    main()
