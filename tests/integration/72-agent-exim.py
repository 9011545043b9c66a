"""vks-agent with the real Exim (Debian's exim4-daemon-light, unpacked by scripts/exim-unpacked
because it cannot be installed beside postfix): the ${readsocket} line protocol.

  - the documented expansions (user, pass, plain) through `exim4 -be`, run as Debian-exim (the
    user a delivery connects as), return the right values, with '^' doubled (Exim's circumflex
    rule) so `client_send = ^${readsocket...}` yields user NUL password;
  - failures (no credential, Vault unreachable, refused bytes) make the expansion fail (the agent
    resets the connection), so an authenticator defers instead of sending an empty password;
  - bad requests (unknown item, oversized, no host) are refused, peers outside the allow-list too;
  - a real delivery with the documented plaintext authenticator through the STARTTLS + AUTH PLAIN
    relay, authenticated with the password from Vault.
Every process started here is stopped in `finally` blocks."""
import grp
import os
import shutil
import subprocess
import sys
import time

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from smtprelay import Relay  # noqa: E402
from agent import (Agent, RedactingChecks, agent_config, credential_section, daemon_workdir,  # noqa: E402
                   exim_query, token_file, wait_for)

PW = "agent-pw-EXIM-9e0c5a1f"
PWC = "agent-pw-CARET^-71b3e0"
SECRETS = [PW, PWC, PWC.replace("^", "^^")]
T = RedactingChecks(SECRETS)


def exim_conf(d, exim, relay):
    sock = os.path.join(d, "exim.sock")
    with open(os.path.join(d, "exim.conf"), "w") as f:
        f.write(f"""# private Exim test configuration (tests/integration/72-agent-exim.py)
exim_path = {exim}
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
pid_file_path = {d}/exim.pid
primary_hostname = exim.test
qualify_domain = example.test
deliver_drop_privilege = true

begin routers
to_relay:
  driver = manualroute
  domains = *
  transport = relay_smtp
  route_list = * 127.0.0.1
  self = send
  no_more

begin transports
relay_smtp:
  driver = smtp
  port = {relay.port}
  allow_localhost = true
  hosts_require_tls = *
  hosts_require_auth = *
  tls_verify_certificates = {relay.cafile}
  tls_verify_hosts = *

begin retry
*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h

begin authenticators
vks_plain:
  driver = plaintext
  public_name = PLAIN
  client_send = ^${{if match{{${{readsocket{{{sock}}}{{plain $host}}{{3s}}}}}}{{\\N(.+)\\N}}{{$1}}fail}}
""")
    os.chmod(os.path.join(d, "exim.conf"), 0o644)
    return os.path.join(d, "exim.conf"), sock


def be(exim, conf, expr):
    p = subprocess.run(["runuser", "-u", "Debian-exim", "--", exim, "-C", conf, "-be", expr],
                       capture_output=True, timeout=60)
    return (p.stdout + p.stderr).decode("utf-8", "replace").strip()


def exim_agent_config(vd, d):
    return agent_config(vd, token_file(d, vd.root_token), audit=os.path.join(d, "audit.jsonl")) + f'''
[agent]
read_timeout = "1s"

[exim]
socket = "{d}/exim.sock"
mode = "0660"
group = "Debian-exim"
allow_users = ["Debian-exim"]
''' + credential_section("exim")


def mainlog(d):
    try:
        return open(os.path.join(d, "log", "mainlog"), errors="replace").read()
    except OSError:
        return ""


def submit(exim, conf, n):
    msg = b"From: sender@example.test\nTo: rcpt@example.net\nSubject: exim via vks-agent %d\n\nhello\n" % n
    p = subprocess.run([exim, "-C", conf, "-odf", "-f", "sender@example.test", "rcpt@example.net"],
                       input=msg, capture_output=True, timeout=120)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def checks(vd, d, exim, conf, sock, relay, agent):
    rs = lambda req: "${readsocket{%s}{%s}{3s}}" % (sock, req)
    # the documented form: an empty reply (the agent's failure signal) forces the expansion to fail
    doc = lambda req: "${if match{%s}{\\N(.+)\\N}{$1}fail}" % rs(req)
    T.eq(be(exim, conf, rs("user 127.0.0.1")), "exim-user", "exim -be: user")
    T.eq(be(exim, conf, rs("pass 127.0.0.1")), PW, "exim -be: pass")
    T.eq(be(exim, conf, rs("plain 127.0.0.1")), "exim-user^" + PW, "exim -be: plain is user^password")
    T.eq(be(exim, conf, doc("plain 127.0.0.1")), "exim-user^" + PW, "exim -be: the documented expansion")
    T.eq(be(exim, conf, rs("pass caret.example.test")), PWC.replace("^", "^^"), "a '^' in the password is doubled")
    T.eq(be(exim, conf, rs("pass CARET.Example.Test")), PWC.replace("^", "^^"), "hosts are lowercased")
    T.eq(be(exim, conf, rs("pass nothing.example.test")), "", "no credential: an empty reply")
    out = be(exim, conf, doc("pass nothing.example.test"))
    T.ok(out.startswith("Failed:"), "no credential: the documented expansion fails", out)
    out = be(exim, conf, doc("pass lead.example.test"))
    T.ok(out.startswith("Failed:") and PW not in out, "a password with a leading '^' is refused", out)
    out = be(exim, conf, doc("user lead2.example.test"))
    T.ok(out.startswith("Failed:"), "a user name with a leading '^' is refused", out)
    out = be(exim, conf, doc("size 127.0.0.1"))
    T.ok(out.startswith("Failed:"), "an unknown item is refused", out)
    out = be(exim, conf, doc("pass"))
    T.ok(out.startswith("Failed:"), "a request without a host is refused", out)
    # raw requests as Debian-exim (the allowed peer): oversized, no EOF (read deadline), half a line
    raw = ("import socket,sys,time\n"
           "s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n"
           "mode=sys.argv[2]\n"
           "t=time.monotonic()\n"
           "s.sendall(b'pass ' + b'a'*3000 if mode=='big' else b'pass 127.0.0.1')\n"
           "d=b''\n"
           "while True:\n"
           "  try: c=s.recv(100)\n"
           "  except ConnectionResetError: break\n"
           "  if not c: break\n"
           "  d+=c\n"
           "print(len(d), round(time.monotonic()-t,1))\n")
    for mode, name in (("big", "an oversized request gets nothing and is closed"),
                       ("open", "a request never ended (no EOF, no newline) is closed at the read deadline")):
        p = subprocess.run(["runuser", "-u", "Debian-exim", "--", "/usr/bin/python3", "-c", raw, sock, mode],
                           capture_output=True, timeout=60)
        res = p.stdout.decode().split()
        T.ok(p.returncode == 0 and res and res[0] == "0" and float(res[1]) < 8, name, (p.returncode, res, p.stderr[-300:]))
    T.ok(agent.proc.poll() is None, "the agent is still running after bad requests")
    # protocol edges straight on the socket: root is not in the allow-list
    got, err = exim_query(sock, "pass 127.0.0.1")
    T.eq(got, b"", "a peer outside the allow-list gets nothing")
    T.ok("is not in the allow-list" in agent.log(), "the refusal is logged")

    # real deliveries with the documented plaintext authenticator
    rc, out = submit(exim, conf, 1)
    got = wait_for(lambda: relay.messages())
    T.ok(got and got[-1]["user"] == "exim-user" and got[-1]["tls"], "Exim delivered through the relay, AUTH from the agent", (rc, out, got))
    auth = relay.auth_events()
    T.ok(auth and auth[-1]["ok"], "the relay accepted the password", auth[-1:])
    # Vault unreachable, no stale copy: deferred, nothing sent; delivered by a queue run afterwards
    vd.fault(action="close", path_prefix="/v1/secret/data/smtp-auth/", duration_seconds=60)
    time.sleep(1.3)
    out = be(exim, conf, doc("pass 127.0.0.1"))
    T.ok(out.startswith("Failed:"), "Vault unreachable, no stale copy: the expansion fails", out)
    n_auth, n_msg = len(relay.auth_events()), len(relay.messages())
    rc, out = submit(exim, conf, 2)
    T.ok(wait_for(lambda: " == rcpt@example.net" in mainlog(d)), "Exim defers the message (== in the mainlog)", mainlog(d)[-800:])
    T.eq((len(relay.auth_events()), len(relay.messages())), (n_auth, n_msg), "nothing reached the relay (no empty password)")
    T.ok(" ** " not in mainlog(d), "nothing failed permanently")
    vd.clear_faults()
    time.sleep(1.3)
    subprocess.run([exim, "-C", conf, "-qff"], capture_output=True, timeout=120)
    T.ok(wait_for(lambda: len(relay.messages()) > n_msg), "delivered by a queue run once Vault is back")
    trail = open(os.path.join(d, "audit.jsonl")).read()
    import pwd
    uid = pwd.getpwnam("Debian-exim").pw_uid
    T.ok('"agent.exim"' in trail and "vks-agent exim peer uid=%d " % uid in trail,
         "audit events name the protocol and the peer (Debian-exim)")


def main():
    p = subprocess.run([os.path.join(ROOT, "scripts", "exim-unpacked")], capture_output=True, timeout=300)
    exim = p.stdout.decode().strip()
    if p.returncode != 0 or not os.path.exists(exim):
        print(p.stderr.decode())
        T.ok(False, "an Exim binary is available (scripts/exim-unpacked)")
        sys.exit(T.finish())
    os.chmod(WORK, 0o755)
    d = daemon_workdir(WORK, "ex")
    os.makedirs(os.path.join(d, "spool"), exist_ok=True)
    os.makedirs(os.path.join(d, "log"), exist_ok=True)
    for x in ("spool", "log"):
        shutil.chown(os.path.join(d, x), "Debian-exim", "Debian-exim")
    agent = relay = None
    with VaultDev() as vd:
        try:
            vd.kv2_put("smtp-auth/127.0.0.1", {"username": "exim-user", "password": PW})
            vd.kv2_put("smtp-auth/caret.example.test", {"username": "c", "password": PWC})
            vd.kv2_put("smtp-auth/lead.example.test", {"username": "l", "password": "^" + PW})
            vd.kv2_put("smtp-auth/lead2.example.test", {"username": "^l", "password": PW})
            relay = Relay(d, creds=[("exim-user", PW)], tls=True, accept=True)
            os.chmod(relay.dir, 0o755)
            conf, sock = exim_conf(d, exim, relay)
            agent = Agent(d, exim_agent_config(vd, d))
            T.run(checks, vd, d, exim, conf, sock, relay, agent)
        finally:
            if agent is not None:
                T.eq(agent.stop(), 0, "the agent exits 0 on SIGTERM")
            if relay is not None:
                relay.stop()
    texts = {"agent log": agent.log() if agent else ""}
    for name in ("mainlog", "paniclog", "rejectlog"):
        path = os.path.join(d, "log", name)
        texts["exim " + name] = open(path, errors="replace").read() if os.path.exists(path) else ""
    for name, text in texts.items():
        T.ok(not any(s in text for s in SECRETS), "no password in the " + name)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
