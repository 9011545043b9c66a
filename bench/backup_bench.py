"""Measures `vks backup create`, `verify` and `restore --into` for N credentials (BACKUP_BENCH_N,
default 10000) in build/vault-dev over HTTPS (docs/backup.md "Measured"). Seeding copies the
stored shape of one credential made by `vks cred create` (custom_metadata, an ENC: envelope, a
second version for every tenth) to N paths through Vault's API, so the bundle has the real shape;
the copies' envelopes are bound to the first path, which backup and restore do not look into."""
import http.client
import json
import os
import resource
import ssl
import subprocess
import sys
import time

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
BUILD = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402

VKS = os.path.join(ROOT, BUILD, "vks")
N = int(os.environ.get("BACKUP_BENCH_N", "10000"))
ENC_KEY = "YmFja3VwOTAtZW5jLWtleS1URVNULTAxMjM0NTY3ODk="  # tests/test-secrets.d/backup.txt
PASS = "backup90-Passphrase-TEST-6b2e"


def env_for(vd, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=vd.root_token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEY=ENC_KEY)
    e.update(extra)
    return e


def seed(vd):
    subprocess.run([VKS, "cred", "create", "seed.example", "--username", "seed", "--all-domains"],
                   env=env_for(vd), capture_output=True, check=True)
    _, m = vd.call("GET", "/v1/secret/metadata/smtp-auth/seed.example")
    _, d = vd.kv2_get("smtp-auth/seed.example")
    cm, data = m["data"]["custom_metadata"], d["data"]["data"]
    c = http.client.HTTPSConnection(vd.host, vd.port, context=ssl.create_default_context(cafile=vd.cacert))
    h = {"X-Vault-Token": vd.root_token, "Content-Type": "application/json"}

    def post(path, body):
        c.request("POST", path, json.dumps(body), h)
        r = c.getresponse()
        r.read()
        assert r.status in (200, 204), (path, r.status)
    for i in range(N - 1):
        p = "smtp-auth/t%03d/c%05d.example" % (i % 100, i)
        post("/v1/secret/metadata/" + p, {"max_versions": 20, "cas_required": True,
                                          "custom_metadata": dict(cm, username="u%05d" % i)})
        post("/v1/secret/data/" + p, {"options": {"cas": 0}, "data": dict(data, username="u%05d" % i)})
        if i % 10 == 0:
            post("/v1/secret/data/" + p, {"options": {"cas": 1}, "data": dict(data, username="u%05d" % i)})
    c.close()


def timed(vd, *args, env=None):
    t = time.monotonic()
    p = subprocess.run([VKS, *args], env=env or env_for(vd), capture_output=True)
    dt = time.monotonic() - t
    if p.returncode != 0:
        sys.exit("vks %s failed: %s" % (args[:2], p.stderr.decode()[-300:]))
    return dt, p.stdout.decode()


def main():
    with VaultDev() as src, VaultDev() as tgt:
        t = time.monotonic()
        seed(src)
        print("seeded %d credentials in %.1f s" % (N, time.monotonic() - t))
        pf = os.path.join(src.workdir, "pass.txt")
        open(pf, "w").write(PASS + "\n")
        kf = os.path.join(src.workdir, "id.txt")
        subprocess.run(["age-keygen", "-o", kf], capture_output=True, check=True)
        pub = subprocess.run(["age-keygen", "-y", kf], capture_output=True).stdout.decode().strip()
        bundle = os.path.join(src.workdir, "b.age")
        src.reset_counters()
        dt, out = timed(src, "backup", "create", "--recipient", pub, "-o", bundle, "--json")
        j = json.loads(out)
        print("create:  %6.1f s  %d secrets, %d versions, %d requests (%.2f per credential), %.1f MiB sealed"
              % (dt, j["secrets"], j["live"], j["requests"], j["requests"] / j["secrets"], j["bytes"] / 2 ** 20))
        dt, out = timed(src, "backup", "verify", bundle, "-i", kf, "--json")
        print("verify:  %6.1f s  %d secrets" % (dt, json.loads(out)["counts"]["secrets"]))
        dt, out = timed(src, "backup", "restore", bundle, "-i", kf, "--into", tgt.addr, "--json",
                        env=env_for(src, VAULT_CACERT=tgt.cacert))
        j = json.loads(out)
        print("restore: %6.1f s  %d secrets, %d versions, %d requests (%.2f per credential): the RTO"
              % (dt, j["secrets"], j["live"], j["requests"], j["requests"] / j["secrets"]))
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        print("largest vks (or vault-dev) resident set: %.0f MiB" % (ru.ru_maxrss / 1024))
        _, a = src.call("GET", "/v1/secret/metadata/smtp-auth/t050/c00050.example")
        _, b = tgt.call("GET", "/v1/secret/metadata/smtp-auth/t050/c00050.example")
        print("sample restored secret matches: %s" % (a["data"]["custom_metadata"] == b["data"]["custom_metadata"]
                                                       and a["data"]["current_version"] == b["data"]["current_version"]))


main()
