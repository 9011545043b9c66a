"""vks-policy --check-auth against a real SMTP relay (aiosmtpd, STARTTLS, AUTH PLAIN), with
key_data and file keysources (no Vault needed). The relay's own log is the witness of what it
received: a refused AUTH must leave no attempt there."""
import os
import subprocess
import sys

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from smtprelay import Relay  # noqa: E402

POLICY_BIN = os.path.join(ROOT, BUILD, "vks-policy")
RIGHT = "relay-pass-RIGHT-8f2b71c3"   # tests/test-secrets.d/host.txt
WRONG = "relay-pass-WRONG-0d93aa5e"   # tests/test-secrets.d/host.txt
SECRETS = [RIGHT.encode(), WRONG.encode()]

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def policy(name, fields):
    body = ",\n    ".join(f"{k} = {v}" for k, v in fields.items())
    path = os.path.join(WORK, name + ".lua")
    with open(path, "w") as f:
        f.write("local kumo = require 'kumo'\n"
                "kumo.on('get_egress_path_config', function(domain, source, site)\n"
                f"  return kumo.make_egress_path {{\n    {body}\n  }}\nend)\n")
    return path


def run(pol, relay, *extra, cafile=True, domain="example.com"):
    args = [POLICY_BIN, pol, "--domain", domain, "--relay", f"127.0.0.1:{relay.port}",
            "--check-auth", "--timeout-ms", "20000"]
    if cafile:
        args += ["--cafile", relay.cafile]
    p = subprocess.run(args + list(extra), capture_output=True, timeout=120)
    out = p.stdout + p.stderr
    sys.stdout.write(out.decode("utf-8", "replace"))
    for s in SECRETS + [b"tiger"]:
        if s in out:
            check("no password in vks-policy output", False, "a test password was printed")
    return p.returncode, out.decode("utf-8", "replace")


def lua_str(s):
    return "'" + s + "'"


def main():
    relay = Relay(WORK, creds=[("daniel", RIGHT), ("daniel", "tiger")], tls=True)
    plain = None
    try:
        # the seed example, unchanged: username daniel, key_data 'tiger', enable_tls Required
        seed = os.path.join(ROOT, "policy-examples", "auth-inline-key-data.lua")
        rc, out = run(seed, relay)
        ev = relay.auth_events()
        check("seed inline key_data example authenticates (235)",
              rc == 0 and "auth: OK 235" in out and "certificate verified" in out, out[-300:])
        check("relay saw one successful AUTH over TLS",
              len(ev) == 1 and ev[0]["ok"] and ev[0]["tls"] and ev[0]["line"] == 2, str(ev))

        good = policy("good", {"enable_tls": "'Required'", "smtp_auth_plain_username": "'daniel'",
                               "smtp_auth_plain_password": "{ key_data = " + lua_str(RIGHT) + " }"})
        rc, out = run(good, relay)
        check("right password: 235, exit 0", rc == 0 and "auth: OK 235 2.7.0" in out, out[-300:])
        check("transcript redacts the AUTH line", "C: AUTH PLAIN <redacted>" in out)
        check("egress path output redacts key_data", "key_data = <redacted>" in out)

        bad = policy("bad", {"enable_tls": "'Required'", "smtp_auth_plain_username": "'daniel'",
                             "smtp_auth_plain_password": "{ key_data = " + lua_str(WRONG) + " }"})
        n = len(relay.auth_events())
        rc, out = run(bad, relay)
        ev = relay.auth_events()[n:]
        check("wrong password: 535 reported clearly, exit 1",
              rc == 1 and "auth: REJECTED 535" in out and "rejected by 127.0.0.1" in out, out[-400:])
        check("relay saw the failed attempt", len(ev) == 1 and not ev[0]["ok"], str(ev))

        # Required + a certificate we cannot validate (no --cafile): no credential is sent
        n = len(relay.auth_events())
        rc, out = run(good, relay, cafile=False)
        check("Required without a valid certificate: AUTH not attempted, exit 1",
              rc == 1 and "NOT ATTEMPTED at tls" in out and "not valid" in out, out[-300:])
        check("relay saw no AUTH", len(relay.auth_events()) == n)

        insecure = policy("insecure", {"enable_tls": "'OpportunisticInsecure'",
                                       "smtp_auth_plain_username": "'daniel'",
                                       "smtp_auth_plain_password": "{ key_data = " + lua_str(RIGHT) + " }"})
        rc, out = run(insecure, relay, cafile=False)
        check("insecure TLS without allow_smtp_auth_plain_without_valid_certificate: refused",
              rc == 1 and "NOT ATTEMPTED at policy" in out and
              "allow_smtp_auth_plain_without_valid_certificate" in out, out[-300:])
        check("relay still saw no AUTH", len(relay.auth_events()) == n)
        allowed = policy("insecure_allowed", {
            "enable_tls": "'OpportunisticInsecure'", "smtp_auth_plain_username": "'daniel'",
            "allow_smtp_auth_plain_without_valid_certificate": "true",
            "smtp_auth_plain_password": "{ key_data = " + lua_str(RIGHT) + " }"})
        rc, out = run(allowed, relay, cafile=False)
        check("insecure TLS with the allow flag: 235, certificate reported NOT verified",
              rc == 0 and "auth: OK 235" in out and "NOT verified" in out, out[-300:])

        # a file keysource (a plain string is a file path, as in KumoMTA)
        pwfile = os.path.join(WORK, "relay-password")
        with open(pwfile, "w") as f:
            f.write(RIGHT)
        os.chmod(pwfile, 0o600)
        filepol = policy("file", {"enable_tls": "'Required'", "smtp_auth_plain_username": "'daniel'",
                                  "smtp_auth_plain_password": lua_str(pwfile)})
        rc, out = run(filepol, relay)
        check("file keysource: 235", rc == 0 and "auth: OK 235" in out, out[-300:])

        nonutf8 = policy("nonutf8", {"enable_tls": "'Required'", "smtp_auth_plain_username": "'daniel'",
                                     "smtp_auth_plain_password": "{ key_data = '\\xff\\xfe-not-utf8' }"})
        n = len(relay.auth_events())
        rc, out = run(nonutf8, relay)
        check("a password that is not UTF-8 is refused before connecting",
              rc == 1 and "not UTF8" in out and len(relay.auth_events()) == n, out[-300:])

        rc, out = run(good, relay, "--rounds", "3", "--interval-ms", "0")
        check("three rounds in one process all authenticate",
              rc == 0 and "rounds: 3 ok, 0 failed" in out, out[-300:])

        # a relay without STARTTLS
        plain = Relay(WORK, creds=[("daniel", RIGHT)], tls=False, name="plain")
        rc, out = run(good, plain)
        check("Required against a relay without STARTTLS: refused",
              rc == 1 and "did not offer STARTTLS" in out and not plain.auth_events(), out[-300:])
        notls = policy("notls", {"enable_tls": "'Disabled'", "smtp_auth_plain_username": "'daniel'",
                                 "smtp_auth_plain_password": "{ key_data = " + lua_str(RIGHT) + " }"})
        rc, out = run(notls, plain)
        check("no TLS without allow_smtp_auth_plain_without_tls: credential not sent",
              rc == 1 and "TLS is not enabled" in out and not plain.auth_events(), out[-300:])
        notls_ok = policy("notls_ok", {"enable_tls": "'Disabled'", "smtp_auth_plain_username": "'daniel'",
                                       "allow_smtp_auth_plain_without_tls": "true",
                                       "smtp_auth_plain_password": "{ key_data = " + lua_str(RIGHT) + " }"})
        rc, out = run(notls_ok, plain)
        ev = plain.auth_events()
        check("no TLS with the allow flag: 235 and the relay saw a plaintext AUTH",
              rc == 0 and "auth: OK 235" in out and len(ev) == 1 and ev[0]["tls"] is False,
              out[-300:])

        # a relay that is not there
        rc, out = run(good, relay, "--relay", "127.0.0.1:1")
        check("connection refused is reported at the connect stage",
              rc == 1 and "NOT ATTEMPTED at connect" in out, out[-300:])

        # policy errors
        typo = policy("typo", {"smtp_auth_plain_usrname": "'daniel'"})
        rc, out = run(typo, relay)
        check("unknown egress path field: policy error naming it, exit 2",
              rc == 2 and "unknown field `smtp_auth_plain_usrname`" in out, out[-300:])
        p = subprocess.run([POLICY_BIN, good], capture_output=True, timeout=60)
        check("missing --domain is a usage error (exit 2)", p.returncode == 2 and b"--domain" in p.stderr)
    finally:
        relay.stop()
        if plain:
            plain.stop()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
