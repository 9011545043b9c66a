#!/usr/bin/python3
"""peer_hvac.py: python3-hvac reading one KV v2 secret from vault-dev, for bench/bench_peers.c.

Not a benchmark of its own (bench/run runs only bench_* binaries, *.sh and *.lua); bench_peers
starts it with the address, CA file, token and path of the vault-dev it started, and reads its
output lines:
    hvac_reused_us MEDIAN N     one hvac.Client for every lookup (its requests.Session keeps
                                the TLS connection alive), as a long-lived Python process would
    hvac_new_us MEDIAN N        a new hvac.Client per lookup (new TCP + TLS connection), as a
                                script or a per-message hook would
    hvac_skip REASON            python3-hvac is not installed (or the lookup failed)
The password is checked on every lookup and never printed.
"""
import os
import statistics
import sys
import time


def main():
    addr, cacert, token, path, key, n_reused, n_new = sys.argv[1:8]
    expect = os.environ.get("PEER_EXPECT", "")
    try:
        import hvac  # noqa: E402 (imported here so that its absence is reported, not raised)
    except ImportError:
        print("hvac_skip python3-hvac is not installed")
        return 0

    def read(client):
        r = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret")
        if r["data"]["data"][key] != expect:
            raise RuntimeError("wrong value")

    def run(fn, n):
        for _ in range(max(3, n // 10)):  # warm-up
            fn()
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(t)

    try:
        client = hvac.Client(url=addr, token=token, verify=cacert)
        m = run(lambda: read(client), int(n_reused))
        print("hvac_reused_us %.1f %s" % (m, n_reused), flush=True)

        def fresh():
            c = hvac.Client(url=addr, token=token, verify=cacert)
            try:
                read(c)
            finally:
                c.adapter.close()
        m = run(fresh, int(n_new))
        print("hvac_new_us %.1f %s" % (m, n_new), flush=True)
    except Exception as e:  # the message names no secret (hvac errors carry paths and codes)
        print("hvac_skip lookup failed: %s" % type(e).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
