"""Inbound SMTP credentials (issue 15) with the real Postfix: a private instance (postfix -c DIR)
with a submission listener (STARTTLS required) whose SASL is `smtpd_sasl_type = dovecot` on the
agent's [inbound.sasl] socket and whose recipient restrictions ask the agent's [inbound.policy]
socket (check_policy_service). Credentials are made with `vks cred create --inbound` against
vault-dev; a Python smtplib client submits:

  1. right password (PLAIN and LOGIN): 235 and the message is queued; no AUTH before STARTTLS;
  2. wrong password: 535;
  3. from 127.0.0.2, outside the credential's addresses: 535;
  4. MAIL FROM a domain outside the credential's domains: 554 5.7.1 naming the domain;
  5. an "All domains" credential: a domain nobody listed is accepted;
  6. `vks cred delete`: 535 within inbound.cache_ttl (the documented bound); state=reset too;
  7. ten wrong passwords lock the username: the eleventh, right, is refused until the lockout
     window passes, then accepted;
  8. the sockets directly: malformed lines, huge base64, unknown commands and mechanisms, no TLS,
     over-long lines, a bad policy request, a thousand idle clients: clear errors, no crash, and
     a real submission is still served;
  9. the audit trail verifies, has the auth, lockout and sender events, and no password anywhere.
Every process started here is stopped in `finally` blocks."""
import os
import resource
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import base64
import hashlib
import json
import urllib.request
import urllib.error

ROOT = os.environ["ROOT"]
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from credtest import Cred, set_meta  # noqa: E402
from agent import (Agent, Postfix, RedactingChecks, agent_config, audit_key_file, check_config,  # noqa: E402
                   daemon_workdir, free_port, token_file, wait_for)

ENC_KEY = "aW5ib3VuZDkxLWVuYy1rZXktVEVTVC0wMTIzNDU2Nzg="    # tests/test-secrets.d/inbound.txt
AUDIT_KEY = "aW5ib3VuZDkxLWF1ZGl0LWtleS1URVNULTAxMjM0NTY="
WRONG = "inbound-Wrong-Password-19ad"
HTTP_TOKEN = "inbound-http-client-token-5e0b"
T = RedactingChecks([WRONG, HTTP_TOKEN])
TTL, LOCKOUT = 2.0, 5.0


class Env:
    pass


def create(e, name, user, *args):
    rc, out, err = e.c.vks("cred", "create", name, "--username", user, "--inbound", *args, keep_stdout=True)
    T.eq(rc, 0, "vks cred create --inbound %s" % name)
    T.ok("cannot be retrieved later" in err, "create says the password cannot be retrieved", err[-200:])
    pw = out.strip()
    e.c.secret(pw)
    T.secrets.append(pw)
    return pw


def smtp(e, user, pw, sender="app@app.example", src=None, mech="PLAIN", send=True):
    """(auth code, message, send result): send result is None (not sent), 'ok', or (code, text)."""
    s = smtplib.SMTP("127.0.0.1", e.port, timeout=30, source_address=(src, 0) if src else None)
    try:
        s.ehlo("client.test")
        e.auth_before_tls = s.has_extn("auth")
        s.starttls(context=e.ctx)
        s.ehlo("client.test")
        s.user, s.password = user, pw
        try:
            code, msg = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as x:
            return x.smtp_code, x.smtp_error.decode(errors="replace"), None
        if not send:
            return code, msg.decode(errors="replace"), None
        try:
            s.sendmail(sender, ["rcpt@example.net"], "From: %s\r\nSubject: inbound\r\n\r\nhello\r\n" % sender)
            res = "ok"
        except smtplib.SMTPRecipientsRefused as x:
            c, t = list(x.recipients.values())[0]
            res = (c, t.decode(errors="replace"))
        except smtplib.SMTPResponseException as x:
            res = (x.smtp_code, x.smtp_error.decode(errors="replace"))
        return code, msg.decode(errors="replace"), res
    finally:
        try:
            s.quit()
        except Exception:
            s.close()


def scenario_submit(e):
    code, _, res = smtp(e, "app1@app.example", e.pw1)
    T.eq(code, 235, "right password (PLAIN): 235")
    T.eq(res, "ok", "the message is accepted")
    T.ok(not e.auth_before_tls, "AUTH is not offered before STARTTLS")
    code, _, res = smtp(e, "app1@app.example", e.pw1, mech="LOGIN", sender="b@mail.app.example")
    T.eq((code, res), (235, "ok"), "right password (LOGIN), a *.app.example sender: 235 and accepted")
    T.ok(wait_for(lambda: e.pf.queue().count("rcpt@example.net") >= 2, 20), "both messages are in the queue",
         e.pf.queue()[-300:])
    code, msg, _ = smtp(e, "app1@app.example", WRONG)
    T.eq(code, 535, "wrong password: 535")
    T.ok("authentication failed" in msg, "535 says authentication failed", msg)
    code, msg, _ = smtp(e, "app1@app.example", e.pw1, src="127.0.0.2")
    T.eq(code, 535, "from 127.0.0.2, outside the credential's addresses: 535")
    T.ok("not allowed from this address" in msg, "the 535 names the reason", msg)
    code, _, res = smtp(e, "app1@app.example", e.pw1, sender="x@other.example")
    T.eq(code, 235, "235 before the outside sender")
    T.ok(isinstance(res, tuple) and res[0] == 554 and "5.7.1" in res[1] and "other.example" in res[1],
         "MAIL FROM outside the domains: 554 5.7.1 naming the domain", res)
    code, _, res = smtp(e, "app2", e.pw2, sender="news@brand-new-domain.example")
    T.eq((code, res), (235, "ok"), "an All domains credential accepts a domain nobody listed")
    code, _, res = smtp(e, "app2", e.pw2, sender="a@app.example", src="127.0.0.2")
    T.eq((code, res), (235, "ok"), "all IPs by default: 127.0.0.2 accepted for app2")


def wait_refused(e, user, pw, what):
    code, _, _ = smtp(e, user, pw, send=False)
    T.eq(code, 235, "%s: logs in before" % what)
    return time.time()


def scenario_revoke(e):
    t0 = wait_refused(e, "app3", e.pw3, "delete")
    rc, _, err = e.c.vks("cred", "delete", "in/app3", "--confirm", "app3")
    T.ok(rc == 0, "vks cred delete in/app3", err[-200:])
    t_del = time.time()
    seen = None
    while time.time() - t_del < TTL + 3:
        code, _, _ = smtp(e, "app3", e.pw3, send=False)
        if code == 535:
            seen = time.time() - t_del
            break
        time.sleep(0.2)
    T.ok(seen is not None and seen <= TTL + 1.0, "after delete: 535 within cache_ttl (%.1f s) + 1 s" % TTL,
         (seen, t0))
    wait_refused(e, "app4", e.pw4, "reset")
    set_meta(e.vd, "in/app4", state="reset")
    t_reset, seen = time.time(), None
    while time.time() - t_reset < TTL + 3:
        code, _, _ = smtp(e, "app4", e.pw4, send=False)
        if code == 535:
            seen = time.time() - t_reset
            break
        time.sleep(0.2)
    T.ok(seen is not None and seen <= TTL + 1.0, "state=reset: 535 within cache_ttl + 1 s", seen)


def scenario_lockout(e):
    codes = [smtp(e, "app5", WRONG, send=False)[0] for _ in range(10)]
    T.eq(codes, [535] * 10, "ten wrong passwords: 535 each")
    t_lock = time.time()
    code, msg, _ = smtp(e, "app5", e.pw5, send=False)
    T.eq(code, 535, "the eleventh, right, is refused while locked out")
    T.ok("too many failed logins" in msg, "the 535 says why", msg)
    code, _, _ = smtp(e, "app1@app.example", e.pw1, send=False)
    T.eq(code, 235, "another username from the same address is served")
    time.sleep(max(0.0, LOCKOUT - (time.time() - t_lock)) + 0.5)
    code, _, res = smtp(e, "app5", e.pw5)
    T.eq((code, res), (235, "ok"), "after the lockout window the right password is accepted")


# ------------------------------------------------------------------ the sockets directly
def sasl_conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    hs = b""
    while b"DONE\n" not in hs:
        c = s.recv(4096)
        if not c:
            break
        hs += c
    return s, hs.decode()


def recv_line(s):
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            c = s.recv(1)
            if not c:
                return None
            buf += c
    except (ConnectionResetError, socket.timeout):
        return None
    return buf.decode(errors="replace").rstrip("\n")


def b64(x):
    return base64.b64encode(x.encode()).decode()


def scenario_protocol(e):
    s, hs = sasl_conn(e.sasl)
    T.ok("MECH\tPLAIN\tplaintext" in hs and "MECH\tLOGIN\tplaintext" in hs and hs.startswith("VERSION\t1\t"),
         "handshake: VERSION 1, MECH PLAIN and LOGIN", hs)
    s.sendall(b"VERSION\t1\t0\nCPID\t4242\n")
    good = b64("\0app1@app.example\0" + e.pw1)
    cases = [
        ("AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip=127.0.0.1\tresp=%s" % good, "OK\t1\tuser=app1@app.example",
         "PLAIN with the right password: OK user="),
        ("AUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%s" % good, "FAIL\t2\treason=plaintext mechanisms need TLS",
         "not secured: FAIL naming TLS"),
        ("AUTH\t3\tPLAIN\tsecured\trip=127.0.0.1\tresp=!!!!", "FAIL\t3\treason=the response is not base64",
         "bad base64: FAIL"),
        ("AUTH\t4\tPLAIN\tsecured\trip=127.0.0.1\tresp=" + "A" * 3000, "FAIL\t4\treason=the response is 3000",
         "huge base64: FAIL naming the limit"),
        ("AUTH\t5\tCRAM-MD5\tsecured", "FAIL\t5\treason=mechanism CRAM-MD5 is not supported", "unknown mechanism"),
        ("AUTH\t6\tPLAIN\tsecured\trip=127.0.0.1\tresp=%s" % b64("other\0app1@app.example\0x"),
         "FAIL\t6\treason=PLAIN authzid differs", "proxy authzid refused"),
        ("AUTH\t9\tPLAIN\tsecured\trip=127.0.0.1\tresp=%s" % b64("\0us\x01er\0pw"),
         "FAIL\t9\treason=PLAIN user name is not printable", "a control character in the user name"),
        ("CONT\t99\tAAAA", "FAIL\t99\treason=no such request", "CONT for an unknown id"),
        ("AUTH\tx\tPLAIN", None, "AUTH without a numeric id: connection closed"),
    ]
    for line, want, name in cases:
        s.sendall(line.encode() + b"\n")
        got = recv_line(s)
        if want is None:
            T.ok(got is None, name, got)
        else:
            T.ok(got is not None and got.startswith(want), name, got)
    s.close()
    T.ok(wait_for(lambda: "AUTH needs a numeric request id" in e.agent.log(), 5), "the agent logs why it closed")
    # LOGIN through CONT
    s, _ = sasl_conn(e.sasl)
    s.sendall(b"VERSION\t1\t0\nAUTH\t7\tLOGIN\tsecured\trip=127.0.0.1\n")
    T.eq(recv_line(s), "CONT\t7\tVXNlcm5hbWU6", "LOGIN asks for the user name")
    s.sendall(("CONT\t7\t%s\n" % b64("app1@app.example")).encode())
    T.eq(recv_line(s), "CONT\t7\tUGFzc3dvcmQ6", "LOGIN asks for the password")
    s.sendall(("CONT\t7\t%s\n" % b64(e.pw1)).encode())
    T.eq(recv_line(s), "OK\t7\tuser=app1@app.example", "LOGIN: OK")
    s.sendall(b"HELLO\tworld\n")
    T.eq(recv_line(s), None, "unknown command: connection closed")
    T.ok(wait_for(lambda: 'unknown command "HELLO"' in e.agent.log(), 5), "the agent logs the unknown command")
    s, _ = sasl_conn(e.sasl)
    s.sendall(b"VERSION\t1\t0\n" + b"A" * 10000 + b"\n")
    T.eq(recv_line(s), None, "a line over 4095 bytes: connection closed")
    T.ok(wait_for(lambda: "a line longer than 4095 bytes" in e.agent.log(), 5), "the agent logs the long line")
    s, _ = sasl_conn(e.sasl)
    s.sendall(b"AUTH\t1\tPLAIN\n")
    T.eq(recv_line(s), None, "AUTH before VERSION: connection closed")
    # policy
    p = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    p.settimeout(10)
    p.connect(e.policy)

    def ask(text):
        p.sendall(text.encode())
        out = b""
        while not out.endswith(b"\n\n"):
            c = p.recv(4096)
            if not c:
                return out.decode() or None
            out += c
        return out.decode()
    req = "request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=app1@app.example\nclient_address=127.0.0.1\n"
    T.eq(ask(req + "sender=a@app.example\n\n"), "action=DUNNO\n\n", "policy: a listed domain: DUNNO")
    r = ask(req + "sender=a@evil.example\n\n")
    T.ok(r and r.startswith("action=REJECT 5.7.1 sender domain evil.example"), "policy: outside: REJECT 5.7.1", r)
    r = ask("request=smtpd_access_policy\nsasl_username=\nsender=a@evil.example\n\n")
    T.eq(r, "action=DUNNO\n\n", "policy: not authenticated: DUNNO (other restrictions decide)")
    r = ask("garbage line\nrequest=smtpd_access_policy\n\n")
    T.ok(r and r.startswith("action=DEFER_IF_PERMIT 4.7.1 vks-agent: malformed policy request: a line is not name=value"),
         "policy: malformed line: DEFER_IF_PERMIT naming it", r)
    r = ask("request=something_else\n\n")
    T.ok(r and "malformed policy request" in r, "policy: unknown request type refused", r)
    r = ask("request=smtpd_access_policy\nsasl_username=ghost\nsender=a@b.example\n\n")
    T.ok(r and r.startswith("action=REJECT 5.7.1 the credential of login ghost"), "policy: unknown login: REJECT", r)
    r = ask("x=" + "y" * 5000 + "\n\n")
    T.ok(r and "too long" in r, "policy: an over-long line: DEFER_IF_PERMIT and close", r)
    p.close()
    # a thousand idle clients
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle = []
    for i in range(1000):
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(e.sasl)
            idle.append(c)
        except OSError as x:
            T.ok(False, "idle client %d connects" % i, x)
            break
    T.eq(len(idle), 1000, "a thousand idle clients connected")
    time.sleep(0.5)
    code, _, res = smtp(e, "app1@app.example", e.pw1)
    T.eq((code, res), (235, "ok"), "with a thousand idle clients a real submission is served")
    T.ok("max_connections reached" in e.agent.log(), "the agent logs the evictions")
    for c in idle:
        c.close()
    T.ok(e.agent.proc.poll() is None, "the agent is still running")


def http(e, path, body, token=HTTP_TOKEN, method="POST"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    rq = urllib.request.Request("http://127.0.0.1:%d%s" % (e.http_port, path), data=data, method=method)
    if token:
        rq.add_header("X-Vault-Token", token)
    try:
        with urllib.request.urlopen(rq, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as x:
        return x.code, json.loads(x.read() or b"{}")


def scenario_http(e):
    v = "/v1/vks/inbound/verify"
    st, j = http(e, v, {"username": "app1@app.example", "password": e.pw1, "source": "127.0.0.1"})
    T.ok(st == 200 and j.get("ok") is True and j.get("username") == "app1@app.example", "http verify: right password", j)
    st, j = http(e, v, {"username": "app1@app.example", "password": WRONG, "source": "127.0.0.1"})
    T.ok(st == 200 and j.get("ok") is False and j.get("result") == "bad_password", "http verify: wrong password", j)
    st, j = http(e, v, {"username": "app1@app.example", "password": e.pw1, "source": "127.0.0.2"})
    T.ok(j.get("result") == "source_refused", "http verify: source outside the list", j)
    st, j = http(e, v, {"username": "app1@app.example", "password": e.pw1, "source": "127.0.0.1",
                        "sender": "a@other.example"})
    T.ok(st == 200 and j.get("ok") is False and j.get("result") == "sender_refused", "http verify with a sender outside", j)
    st, j = http(e, "/v1/vks/inbound/sender", {"username": "app1@app.example", "sender": "a@app.example"})
    T.ok(st == 200 and j.get("ok") is True, "http sender check: listed domain", j)
    st, j = http(e, v, {"username": "app1@app.example", "password": e.pw1}, token="wrong-token-xyz")
    T.eq(st, 403, "http verify: a wrong token is 403")
    st, j = http(e, v, b"{not json")
    T.ok(st == 400 and "not a JSON object" in j["errors"][0], "http verify: bad JSON is 400 naming it", j)
    st, j = http(e, v, {"username": "app1@app.example"})
    T.ok(st == 400 and "password" in j["errors"][0], "http verify: no password is 400 naming the field", j)
    st, j = http(e, v, b"x" * 5000)
    T.ok(st == 400 and "1-4095 bytes" in j["errors"][0], "http verify: an oversized body is 400", j)
    st, j = http(e, v, None, method="GET")
    T.eq(st, 405, "http verify: GET is 405")


def scenario_metrics(e):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % e.metrics_port, timeout=10) as r:
        text = r.read().decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("vks_agent_inbound_"):
            k, _, v = line.rpartition(" ")
            vals[k] = int(v)
    def v(name):
        return vals.get(name, 0)
    T.ok(v('vks_agent_inbound_logins_total{result="ok"}') >= 10, "metrics: successful logins counted", vals)
    for res in ("bad_password", "source_refused", "locked", "revoked", "unknown_user"):
        T.ok(v('vks_agent_inbound_logins_total{result="%s"}' % res) >= 1, "metrics: %s logins counted" % res, vals)
    T.ok(v('vks_agent_inbound_sender_checks_total{result="sender_refused"}') >= 2, "metrics: refused senders", vals)
    T.ok(v('vks_agent_inbound_cached_total') >= 1, "metrics: cached logins counted", vals)


def setup(e, d):
    cert, key = os.path.join(d, "smtpd-cert.pem"), os.path.join(d, "smtpd-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=localhost", "-days", "2", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    e.ctx = ssl.create_default_context(cafile=cert)
    e.port = free_port()
    e.http_port = free_port()
    e.metrics_port = free_port()
    e.pf = Postfix(d, 1, cert)
    for k, v in [("defer_transports", "smtp"), ("smtpd_tls_cert_file", cert), ("smtpd_tls_key_file", key),
                 ("vks_recipient_restrictions",
                  "check_policy_service unix:private/vks-policy, permit_sasl_authenticated, reject")]:
        e.pf.postconf(k, v)
    with open(os.path.join(e.pf.etc, "master.cf"), "a") as f:
        f.write("127.0.0.1:%d inet n - n - - smtpd -o syslog_name=postfix/submission "
                "-o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes -o smtpd_sasl_auth_enable=yes "
                "-o smtpd_sasl_type=dovecot -o smtpd_sasl_path=private/vks-auth "
                "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject "
                "-o smtpd_recipient_restrictions=$vks_recipient_restrictions\n" % e.port)
    e.sasl = os.path.join(d, "spool", "private", "vks-auth")
    e.policy = os.path.join(d, "spool", "private", "vks-policy")


def agent_text(e, d):
    with open(os.path.join(ROOT, "policy-examples", "mta-inbound.hcl")) as f:
        e.vd.policy("mta-inbound", f.read())
    tok = e.vd.create_token(policies=["mta-inbound"], display_name="mta-inbound")  # the shipped policy suffices
    T.secrets.append(tok)
    text = agent_config(e.vd, token_file(d, tok), audit=e.audit, key_file=e.key)
    h = hashlib.sha256(HTTP_TOKEN.encode()).hexdigest()
    return text + f'''
[metrics]
listen = "127.0.0.1:{e.metrics_port}"

[vault_api]
listen = "127.0.0.1:{e.http_port}"
tls = false

[[vault_api.client]]
name = "kumo"
token_sha256 = "{h}"
mounts = ["secret"]
path_prefixes = ["nothing-here/"]

[inbound]
http_verify = true
cache_ttl = "{int(TTL)}s"
lockout = "{int(LOCKOUT)}s"
failure_window = "10m"
max_failures = 10
max_failures_per_address = 1000
max_connections = 256
read_timeout = "3s"

[inbound.sasl]
socket = "{e.sasl}"
group = "postfix"
allow_users = ["postfix", "root"]

[inbound.policy]
socket = "{e.policy}"
group = "postfix"
allow_users = ["postfix", "root"]
'''


def scenario_config(e, d):
    base = agent_config(e.vd, token_file(d, e.vd.root_token))
    cases = [
        ("[inbound]\nmount = \"secret\"\n", "inbound: needs [inbound.sasl], [inbound.policy] and/or http_verify"),
        ("[inbound]\ncache_tll = \"2s\"\n[inbound.sasl]\nsocket = \"/run/x\"\nallow_users = [\"root\"]\n",
         "inbound.cache_tll: unknown key"),
        ("[inbound]\n[inbound.sasl]\nsocket = \"relative\"\nallow_users = [\"root\"]\n",
         "inbound.sasl.socket: must be an absolute path"),
        ("[inbound]\n[inbound.policy]\nsocket = \"/run/x\"\n", "inbound.policy: allow_users or allow_groups is required"),
        ("[inbound]\nmax_failures = 0\n[inbound.sasl]\nsocket = \"/run/x\"\nallow_users = [\"root\"]\n",
         "inbound.max_failures: must be between 1 and"),
        ("[inbound]\nhttp_verify = true\n", "inbound.http_verify: needs the [vault_api] listener"),
    ]
    for i, (text, want) in enumerate(cases):
        path = os.path.join(d, "bad%d.toml" % i)
        with open(path, "w") as f:
            f.write(base + text)
        rc, out = check_config(path)
        T.ok(rc == 2 and want in out and (path + ":") in out, "config error: " + want, out[-300:])


def main():
    if not os.path.exists("/usr/sbin/postfix"):
        print("postfix is not installed (scripts/bootstrap installs it)")
        print("0 passed, 1 failed")
        sys.exit(1)
    os.chmod(WORK, 0o755)
    d = daemon_workdir(WORK, "inbound")
    e = Env()
    e.agent = e.pf = None
    with VaultDev() as vd:
        e.vd = vd
        e.audit = os.path.join(d, "audit.jsonl")
        e.key = audit_key_file(d)
        e.c = Cred(vd, ENC_KEY, AUDIT_KEY)
        try:
            setup(e, d)
            T.run(scenario_config, e, d)
            e.pw1 = create(e, "in/app1", "app1@app.example", "--domain", "app.example", "--domain", "*.app.example",
                           "--ip", "127.0.0.1", "--ip", "2001:db8::/32")
            e.pw2 = create(e, "in/app2", "app2", "--all-domains")
            e.pw3 = create(e, "in/app3", "app3", "--all-domains")
            e.pw4 = create(e, "in/app4", "app4", "--all-domains", "--verifier", "pbkdf2-sha256")
            e.pw5 = create(e, "in/app5", "app5", "--domain", "app.example")
            st, j = vd.call("GET", "/v1/secret/data/smtp-auth/in/app1")
            T.ok(st == 200 and "key" not in j["data"]["data"] and j["data"]["data"]["verifier"].startswith("$vks-scrypt$"),
                 "only a verifier is stored (no key field)", j["data"]["data"].keys() if st == 200 else st)
            T.eq(j["data"]["metadata"]["custom_metadata"].get("direction"), "inbound", "direction=inbound recorded")
            rc, _, err = e.c.vks("cred", "reveal", "in/app1", "--reason", "test", "--force-stdout")
            T.ok(rc != 0 and "cannot be revealed" in err, "reveal of a verifier-only credential fails, saying why",
                 err[-200:])
            rc, _, err = e.c.vks("cred", "rotate", "in/app2", "--relay", "127.0.0.1:1")
            T.ok(rc != 0 and "inbound credential" in err, "rotate refuses an inbound credential", err[-200:])
            rc, out = e.pf.start()
            T.eq(rc, 0, "private postfix instance starts")
            if rc != 0:
                print(out)
                return
            e.agent = Agent(d, agent_text(e, d))
            T.ok(wait_for(lambda: _banner(e.port), 30), "the submission listener answers")
            T.run(scenario_submit, e)
            T.run(scenario_revoke, e)
            T.run(scenario_lockout, e)
            T.run(scenario_protocol, e)
            T.run(scenario_http, e)
            T.run(scenario_metrics, e)
        finally:
            if e.pf is not None:
                e.pf.stop()
            if e.agent is not None:
                T.eq(e.agent.stop(), 0, "the agent exits 0 on SIGTERM")
        trail = open(e.audit).read() if os.path.exists(e.audit) else ""
        T.ok('"inbound.auth"' in trail and '"inbound.lockout"' in trail and '"inbound.sender"' in trail,
             "the audit trail has auth, lockout and sender events")
        rc, out, err = e.c.vks("audit", "verify", e.audit, "--key-file", e.key)
        T.ok(rc == 0, "vks audit verify accepts the agent's trail", (out + err)[-300:])
        day = time.strftime("%Y-%m-%d", time.gmtime())
        rc, out, err = e.c.vks("audit", "report", "--json", "--from", day, "--to", day, e.audit, "--key-file", e.key)
        groups = json.loads(out).get("lookups", []) if rc == 0 else []
        auth = [g for g in groups if g.get("api") == "inbound.auth"]
        T.ok(auth and sum(g["served"] for g in auth) > 0 and sum(g["refused"] for g in auth) > 0 and
             any(g.get("api") == "inbound.lockout" for g in groups),
             "vks audit report counts inbound logins served and refused per credential, and the lockouts",
             (rc, err[-200:], [(g.get("credential"), g.get("api"), g.get("served"), g.get("refused")) for g in groups]))
        log = e.pf.maillog() if e.pf else ""
        texts = {"agent log": e.agent.log() if e.agent else "", "postfix log": log, "audit trail": trail}
        for name, text in texts.items():
            T.ok(not any(s in text for s in T.secrets), "no password in the " + name)
        T.eq(e.c.leaks([vd.stderr_text()]), [], "no password in any vks output or vault-dev's log")
    print("---- postfix log (submission lines) ----")
    print("\n".join(line for line in log.splitlines() if "submission" in line)[-2500:])
    sys.exit(T.finish())


def _banner(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


if __name__ == "__main__":
    main()
