"""Measures `vks rekey --to k2` of N credentials (REKEY_BENCH_N, default 10000) in build/vault-dev
over HTTPS (docs/benchmarks.md "vks rekey"). Seeding copies the stored shape of one credential made
by `vks cred create` under key k1 (custom_metadata, max_versions, cas_required) to N paths, each
with its own ENC:v2:k1 envelope bound to its own path (made here with the documented AAD), so the
run decrypts, re-encrypts and writes every one of them as it would in production. Reports the wall
time of the re-key (with and without its verify pass), requests per credential counted by the
client and by vault-dev, and a dry run and an idempotent rerun for comparison."""
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
BUILD = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402

VKS = os.path.join(ROOT, BUILD, "vks")
N = int(os.environ.get("REKEY_BENCH_N", "10000"))
K1 = b"rekey89-k1-old-key-TEST-01234567"  # tests/test-secrets.d/rekey.txt
K2 = b"rekey89-k2-new-key-TEST-01234567"
OLD = "k1:" + base64.b64encode(K1).decode()
RING = "k2:%s,%s" % (base64.b64encode(K2).decode(), OLD)


def env_for(vd, ring):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=vd.root_token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEYS=ring, VKS_AUDIT_FILE=os.path.join(vd.workdir, "audit.log"),
             VKS_AUDIT_KEY="cmVrZXk4OS1hdWRpdC1rZXktVEVTVC0wMTIzNDU2Nzg=")
    return e


def envelope(path, plain):
    f = lambda s: len(s.encode()).to_bytes(4, "big") + s.encode()  # noqa: E731
    aad = b"vks-envelope\x00\x02" + f("k1") + f("secret") + f(path) + f("key")
    n = os.urandom(12)
    return "ENC:v2:k1:" + base64.b64encode(n + AESGCM(K1).encrypt(n, plain, aad)).decode()


def seed(vd):
    subprocess.run([VKS, "cred", "create", "seed.example", "--username", "seed", "--all-domains"],
                   env=env_for(vd, OLD), capture_output=True, check=True)
    _, m = vd.call("GET", "/v1/secret/metadata/smtp-auth/seed.example")
    cm = m["data"]["custom_metadata"]
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
        post("/v1/secret/data/" + p, {"options": {"cas": 0},
                                      "data": {"key": envelope(p, os.urandom(24).hex().encode()),
                                               "username": "u%05d" % i}})
    c.close()


def run(vd, *args):
    t = time.monotonic()
    p = subprocess.run([VKS, "rekey", "--to", "k2", "--yes", "--json", *args], env=env_for(vd, RING),
                       capture_output=True)
    dt = time.monotonic() - t
    if p.returncode != 0:
        sys.exit("vks rekey %s failed (%d): %s" % (args, p.returncode, p.stderr.decode()[-400:]))
    return dt, json.loads(p.stdout)


def served(vd):
    return sum(v for k, v in vd.counters().items() if " /v1/secret/" in k)


def main():
    with VaultDev() as vd:
        t = time.monotonic()
        seed(vd)
        print("seeded %d credentials under key k1 in %.1f s" % (N, time.monotonic() - t))
        vd.reset_counters()
        dt, j = run(vd, "--dry-run")
        print("dry run:  %6.1f s  %d values would be re-keyed, %d requests (%.2f per credential)"
              % (dt, j["values"]["rekeyed"], j["requests"], j["requests"] / j["secrets"]))
        vd.reset_counters()
        dt, j = run(vd)
        srv = served(vd)
        print("rekey:    %6.1f s  %d values re-keyed in %d credentials (%.0f credentials/s), verify pass: %d left"
              % (dt, j["values"]["rekeyed"], j["credentials_changed"], j["secrets"] / dt,
                 j["verify"]["values_left"]))
        print("          %d requests by the client (%.2f per credential: LIST, metadata and data reads, a "
              "check-and-set PATCH and a metadata write, then the verify pass); vault-dev served %d "
              "(%.2f per credential)" % (j["requests"], j["requests"] / j["secrets"], srv, srv / j["secrets"]))
        vd.reset_counters()
        dt2, j2 = run(vd)
        print("rerun:    %6.1f s  %d re-keyed, %d already under k2 (nothing redone), %.2f requests per credential"
              % (dt2, j2["values"]["rekeyed"], j2["values"]["current"], j2["requests"] / j2["secrets"]))


main()
