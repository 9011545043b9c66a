"""A vks-policy process that looks a password up and authenticates at a relay round after round,
recording every round (vks-policy --rounds --until-file --record), for rotation drills.

    from policyloop import PolicyLoop, write_vault_policy
    pol = write_vault_policy(path, username="u", enable_tls="Required")   # KumoMTA-style policy
    loop = PolicyLoop(workdir, "host-1", pol, relay, env, domain="example.com", interval_ms=150)
    loop.records()   -> one dict per finished round: round, t0_ms, t1_ms (monotonic ms), wall,
                        lookup ("ok" or the error code), auth ("ok", "rejected", "not_attempted"),
                        code, stage, peer
    loop.failures()  -> the records of rounds that did not authenticate
    loop.lines()     -> vks-policy's output lines
    loop.stop()      -> exit status (touches the stop file, waits, kills after `wait` seconds)

The EHLO name is the loop's name, so the relay's log (tests/lib/smtprelay.py, field "ehlo") tells
the processes apart. Output and records hold no secret (the test scans them anyway)."""
import json
import os
import subprocess

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("BUILD", "build")
POLICY_BIN = os.path.join(BUILD, "vks-policy") if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD, "vks-policy")


def write_vault_policy(path, username, enable_tls="Required", mount="secret", prefix="smtp-auth/"):
    """A policy whose egress path authenticates as `username` with the password at
    {vault_mount = mount, vault_path = prefix .. domain} (field `key`, KumoMTA's default)."""
    with open(path, "w") as f:
        f.write("local kumo = require 'kumo'\n"
                "kumo.on('get_egress_path_config', function(domain, source, site)\n"
                "  return kumo.make_egress_path {\n"
                f"    enable_tls = {json.dumps(enable_tls)},\n"
                f"    smtp_auth_plain_username = {json.dumps(username)},\n"
                f"    smtp_auth_plain_password = {{ vault_mount = {json.dumps(mount)},\n"
                f"                                 vault_path = {json.dumps(prefix)} .. domain }},\n"
                "  }\n"
                "end)\n")
    return path


class PolicyLoop:
    def __init__(self, workdir, name, policy, relay, env, domain="example.com", interval_ms=200,
                 timeout_ms=20000):
        self.name = name
        self.out_path = os.path.join(workdir, name + ".out")
        self.rec_path = os.path.join(workdir, name + ".rounds.jsonl")
        self.stop_path = os.path.join(workdir, name + ".stop")
        self.interval_ms = interval_ms
        for p in (self.rec_path, self.stop_path):
            if os.path.exists(p):
                os.unlink(p)
        self.out = open(self.out_path, "wb")
        # relay None: lookups only, no SMTP session (88-cred-reset: 20 loops at 10 rounds/s)
        auth = ["--relay", f"127.0.0.1:{relay.port}", "--check-auth", "--cafile", relay.cafile] if relay else []
        self.proc = subprocess.Popen(
            [POLICY_BIN, policy, "--domain", domain, *auth, "--ehlo", name, "--brief",
             "--rounds", "1000000", "--interval-ms", str(interval_ms), "--until-file", self.stop_path,
             "--record", self.rec_path, "--timeout-ms", str(timeout_ms)],
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def records(self):
        try:
            with open(self.rec_path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def failures(self):
        return [r for r in self.records() if r.get("lookup") != "ok" or r.get("auth") != "ok"]

    def lines(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()

    def running(self):
        return self.proc.poll() is None

    def stop(self, wait=90):
        open(self.stop_path, "w").close()
        try:
            rc = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.out.close()
        return rc
