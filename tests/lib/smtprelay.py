"""A real SMTP relay for AUTH tests: Debian's python3-aiosmtpd (run with /usr/bin/python3).

It listens on 127.0.0.1 on a free port, offers STARTTLS with a certificate it generates (openssl
CLI; the certificate is its own CA, valid for 127.0.0.1 and localhost), and accepts AUTH PLAIN only
after STARTTLS (LOGIN is not offered). MAIL before AUTH gets 530. Accepted credentials are read
from a file on EVERY attempt, so a test can rotate a password and keep an overlap window in which
old and new both work. Each AUTH attempt is appended to a JSON-lines log with the user, the result
the 1-based line of the credentials file that matched, the time and the client's EHLO name (never
a password).

Credentials file: one `username:password` per line (split at the first ':'), '#' comments.

Command line (for shell tests and scripts/demo):
    /usr/bin/python3 tests/lib/smtprelay.py --creds FILE --dir DIR [--log FILE] [--no-tls]
  prints `SMTP_PORT=<port>` and `SMTP_CAFILE=<DIR>/cert.pem` (flushed), then serves until
  SIGTERM/SIGINT.

Python API (for tests/integration/*.py; add tests/lib to sys.path):
    from smtprelay import Relay
    r = Relay(workdir, creds=[("daniel", "pw...")], tls=True)   # started
    r.port, r.cafile, r.log_path
    r.set_creds([("daniel", "old"), ("daniel", "new")])          # takes effect at the next AUTH
    r.auth_events()  -> list of dicts {"user", "ok", "line", "tls", "ts", "ehlo"}: ts is the
                        Unix time (float) of the attempt, ehlo the client's EHLO name
    Relay(..., accept=True): DATA is accepted (250) and each message is logged as
        {"event": "message", "from", "to", "user" (the authenticated login or None), "tls", "bytes"}
    r.messages()     -> those message events
    r.stop()                                                      # also on context-manager exit
"""
import argparse
import asyncio
import hmac
import json
import os
import signal
import ssl
import subprocess
import sys
import time


def ensure_cert(d):
    """Creates DIR/cert.pem and DIR/key.pem (self-signed, CA:TRUE, SAN 127.0.0.1/localhost)."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    os.makedirs(d, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=vks test relay",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


def read_creds(path):
    out = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f.read().split(b"\n"), 1):
                line = raw.rstrip(b"\r")
                if not line or line.startswith(b"#") or b":" not in line:
                    continue
                user, pw = line.split(b":", 1)
                out.append((n, user, pw))
    except OSError:
        pass
    return out


def serve(creds_path, d, log_path, tls, accept=False):
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    cert, key = ensure_cert(d)
    ctx = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)

    def log(event):
        if log_path:
            with open(log_path, "a") as f:
                f.write(json.dumps(event) + "\n")

    def authenticator(server, session, envelope, mechanism, auth_data):
        if mechanism != "PLAIN" or not isinstance(auth_data, LoginPassword):
            log({"event": "auth", "user": None, "ok": False, "line": None, "mechanism": mechanism,
                 "ts": time.time(), "ehlo": session.host_name})
            return AuthResult(success=False, handled=False)
        matched = None
        for n, user, pw in read_creds(creds_path):
            # compare every line (no early exit) in constant time per line
            ok = hmac.compare_digest(user, auth_data.login) & hmac.compare_digest(pw, auth_data.password)
            if ok and matched is None:
                matched = n
        log({"event": "auth", "user": auth_data.login.decode("utf-8", "replace"),
             "ok": matched is not None, "line": matched,
             "tls": session.ssl is not None, "ts": time.time(), "ehlo": session.host_name})
        return AuthResult(success=matched is not None, handled=False,
                          auth_data=auth_data.login if matched is not None else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if not accept:
                return "554 5.7.1 this test relay accepts no messages"
            login = session.auth_data if session.authenticated else None
            if isinstance(login, bytes):
                login = login.decode("utf-8", "replace")
            log({"event": "message", "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                 "user": login, "tls": session.ssl is not None, "bytes": len(envelope.content or b"")})
            return "250 2.0.0 accepted by the test relay"

    def factory():
        return SMTP(Handler(), hostname="relay.test", tls_context=ctx, require_starttls=False,
                    auth_required=True, auth_require_tls=tls, auth_exclude_mechanism=["LOGIN"],
                    authenticator=authenticator)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=0))
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"SMTP_PORT={port}", flush=True)
    print(f"SMTP_CAFILE={cert}", flush=True)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


class Relay:
    def __init__(self, workdir, creds=(), tls=True, name="relay", accept=False):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.creds_path = os.path.join(self.dir, "creds.txt")
        self.log_path = os.path.join(self.dir, "auth.jsonl")
        self.set_creds(creds)
        out = open(os.path.join(self.dir, "relay.out"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.abspath(__file__), "--creds", self.creds_path,
             "--dir", self.dir, "--log", self.log_path] + ([] if tls else ["--no-tls"]) +
            (["--accept"] if accept else []),
            stdout=subprocess.PIPE, stderr=out, text=True)
        self.port = None
        self.cafile = None
        deadline = time.monotonic() + 60
        while self.port is None or self.cafile is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("smtp relay exited before it was ready; see " + self.dir)
            if line.startswith("SMTP_PORT="):
                self.port = int(line.split("=", 1)[1])
            elif line.startswith("SMTP_CAFILE="):
                self.cafile = line.split("=", 1)[1].strip()
            if time.monotonic() > deadline:
                raise RuntimeError("smtp relay did not start")

    def set_creds(self, creds):
        tmp = self.creds_path + ".tmp"
        with open(tmp, "wb") as f:
            for user, pw in creds:
                f.write(user.encode() + b":" + pw.encode() + b"\n")
        os.replace(tmp, self.creds_path)

    def _events(self):
        try:
            with open(self.log_path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def auth_events(self):
        return [e for e in self._events() if e.get("event") == "auth"]

    def messages(self):
        return [e for e in self._events() if e.get("event") == "message"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description="AUTH PLAIN test relay (aiosmtpd)")
    ap.add_argument("--creds", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log")
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--accept", action="store_true", help="accept messages (250) and log them")
    a = ap.parse_args()
    serve(a.creds, a.dir, a.log, not a.no_tls, a.accept)


if __name__ == "__main__":
    main()
