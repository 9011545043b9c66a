"""Rotation without downtime and revocation, with one long-running vks-policy process that looks
the password up and authenticates at the relay again and again (--rounds, --until-file).

Rotation: the relay accepts old and new during an overlap window; Vault gets the new password;
the host (cache ttl 1 s) must switch to the new one with no AUTH failure at any point, and keep
working once the old one is withdrawn. Revocation: destroying the current version, or revoking the
token, must stop use: after the first failed lookup no AUTH is attempted any more, and a fresh
process fails at once. The test waits for observed states (log lines), never for fixed times."""
import os
import subprocess
import sys
import time

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from smtprelay import Relay  # noqa: E402
from vaultdev import VaultDev  # noqa: E402

POLICY_BIN = os.path.join(ROOT, BUILD, "vks-policy")
POLICY = os.path.join(ROOT, "policy-examples", "vault-key.lua")
OLD = "rotate-pass-OLD-6e21b0c9"   # tests/test-secrets.d/host.txt
NEW = "rotate-pass-NEW-f3a85d47"   # tests/test-secrets.d/host.txt
WAIT = 90  # seconds: an upper bound for a state to be reached, not a timing assertion

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    print("timed out waiting for " + what)
    return False


class Host:
    """A vks-policy process doing rounds until its stop file appears."""

    def __init__(self, name, env, relay, domain="example.com"):
        self.out_path = os.path.join(WORK, name + ".out")
        self.stop_path = os.path.join(WORK, name + ".stop")
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [POLICY_BIN, POLICY, "--domain", domain, "--relay", f"127.0.0.1:{relay.port}",
             "--check-auth", "--cafile", relay.cafile, "--rounds", "100000", "--interval-ms", "100",
             "--until-file", self.stop_path, "--timeout-ms", "20000"],
            stdout=self.out, stderr=subprocess.STDOUT, env=env)

    def lines(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()

    def stop(self):
        open(self.stop_path, "w").close()
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.out.close()
        return rc


def auth_lines(lines):
    return [l for l in lines if ": auth:" in l]


def main():
    with VaultDev() as vd, Relay(WORK, creds=[("daniel", OLD)]) as relay:
        vd.kv2_put("smtp-auth/example.com", {"password": OLD})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
        env.update(VAULT_ADDR=vd.addr, VAULT_TOKEN=vd.root_token, VAULT_CACERT=vd.cacert,
                   VKS_CACHE_TTL="1")

        # ---------------------------------------------------------------- rotation
        host = Host("rotation", env, relay)
        ok_with = lambda line: [e for e in relay.auth_events() if e["ok"] and e["line"] == line]
        check("host authenticates with the old password",
              wait_for(lambda: len(ok_with(1)) >= 2, "two AUTHs with the old password"))
        # overlap window: the relay accepts both (old on line 1, new on line 2), then Vault rotates
        relay.set_creds([("daniel", OLD), ("daniel", NEW)])
        vd.kv2_put("smtp-auth/example.com", {"password": NEW})
        check("host picks up the new password from Vault",
              wait_for(lambda: len(ok_with(2)) >= 2, "two AUTHs with the new password"))
        # end of the overlap: the old password is withdrawn (the new one stays on line 2)
        relay.set_creds([("retired", "-"), ("daniel", NEW)])
        n = len(ok_with(2))
        check("host keeps working after the old password is withdrawn",
              wait_for(lambda: len(ok_with(2)) >= n + 3, "three more AUTHs with the new password"))
        rc = host.stop()
        lines = host.lines()
        auths = auth_lines(lines)
        events = relay.auth_events()
        check("no AUTH failed during the rotation (host side)",
              rc == 0 and auths and all(": auth: OK 235" in l for l in auths),
              "rc=%s %s" % (rc, [l for l in auths if "OK 235" not in l][:3]))
        check("no AUTH failed during the rotation (relay side)",
              events and all(e["ok"] for e in events), str([e for e in events if not e["ok"]][:3]))
        check("every round of the host reached the relay", len(auths) == len(events),
              "%d host rounds, %d relay events" % (len(auths), len(events)))

        # ---------------------------------------------------------------- revocation: destroy
        host = Host("destroy", env, relay)
        before = len(relay.auth_events())
        check("second host authenticates",
              wait_for(lambda: len(relay.auth_events()) >= before + 2, "two AUTHs"))
        _, meta = vd.call("GET", "/v1/secret/metadata/smtp-auth/example.com")
        current = meta["data"]["current_version"]
        check("destroy the current version", vd.kv2_destroy("smtp-auth/example.com", [current]) == 204)
        check("host stops at the destroyed version",
              wait_for(lambda: sum("FAILED destroyed" in l for l in host.lines()) >= 3,
                       "three failed lookups"))
        rc = host.stop()
        lines = host.lines()
        first_fail = next(i for i, l in enumerate(lines) if "FAILED destroyed" in l)
        after = lines[first_fail:]
        check("after the first failed lookup no AUTH is attempted again",
              not any(": auth:" in l for l in after) and
              all("FAILED destroyed" in l for l in after if "password:" in l), "\n".join(after[:5]))
        check("host output and relay agree on the number of AUTHs",
              len(auth_lines(lines)) == len(relay.auth_events()) - before)
        check("the host exits 1 when rounds failed", rc == 1, str(rc))
        p = subprocess.run([POLICY_BIN, POLICY, "--domain", "example.com", "--relay",
                            f"127.0.0.1:{relay.port}", "--check-auth", "--cafile", relay.cafile],
                           capture_output=True, env=env, timeout=120)
        out = p.stdout.decode()
        check("a fresh process fails at once with destroyed and sends nothing",
              p.returncode == 1 and "FAILED destroyed" in out and "auth:" not in out, out[-300:])

        # ---------------------------------------------------------------- revocation: token
        vd.kv2_put("smtp-auth/example.com", {"password": NEW})
        token = vd.create_token(policies=["root"], ttl="1h")
        tenv = dict(env, VAULT_TOKEN=token)
        host = Host("token", tenv, relay)
        before = len(relay.auth_events())
        check("host with a child token authenticates",
              wait_for(lambda: len(relay.auth_events()) >= before + 2, "two AUTHs"))
        st, _ = vd.call("POST", "/v1/auth/token/revoke", {"token": token})
        check("revoke the token", st == 204, str(st))
        check("host stops once the token is revoked",
              wait_for(lambda: sum("password: FAILED" in l for l in host.lines()) >= 3,
                       "three failed lookups"))
        host.stop()
        lines = host.lines()
        first_fail = next(i for i, l in enumerate(lines) if "password: FAILED" in l)
        after = lines[first_fail:]
        check("after the revocation no AUTH is attempted again",
              not any(": auth:" in l for l in after), "\n".join(after[:5]))
        check("the failure names the reason (permission_denied or auth_failed)",
              any("FAILED permission_denied" in l or "FAILED auth_failed" in l for l in after),
              after[0] if after else "")
        for name in ("rotation", "destroy", "token"):
            data = open(os.path.join(WORK, name + ".out"), "rb").read()
            if OLD.encode() in data or NEW.encode() in data or token.encode() in data:
                check("no password or token in the host output (%s)" % name, False)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
