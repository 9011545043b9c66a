"""vks-agent with the real Postfix (Debian's postfix, a private instance started with
`postfix -c DIR`): smtp_sasl_password_maps = socketmap:unix:private/vks:sasl served by the agent,
relaying to a loopback relay that requires AUTH PLAIN over STARTTLS (tests/lib/smtprelay.py).

  1. a submitted message is delivered; the relay saw the right user name and password;
  2. the password changed in Vault: the next message uses it, with no `postfix reload`;
  3. Vault unreachable (connections closed) with no stale copy: the message stays deferred (not
     bounced, not sent without AUTH) and is delivered by a queue flush once Vault is back;
  4. a credential restricted away from this destination: deferred; delivered when lifted.
Every process started here is stopped in `finally` blocks (postfix stop, agent, relay, vault-dev).
The outputs (agent log, Postfix log, relay log) are scanned for the test passwords."""
import os
import sys
import time

ROOT = os.environ["ROOT"]
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from smtprelay import Relay  # noqa: E402
from agent import (Agent, Postfix, RedactingChecks, agent_config, daemon_workdir,  # noqa: E402
                   socketmap_section, token_file, wait_for)

OLD = "agent-pw-PFX-OLD-4d2a99"
NEW = "agent-pw-PFX-NEW-b81c07"
SECRETS = [OLD, NEW]
T = RedactingChecks(SECRETS)


def scenario(vd, relay, pf, d, agent):
    # 1. delivered with the right credentials
    T.eq(pf.submit(1), 0, "sendmail accepts message 1")
    got = wait_for(lambda: relay.messages())
    T.ok(got and got[0]["user"] == "relay-user" and got[0]["tls"], "message 1 delivered over TLS, authenticated as relay-user", got)
    auth = relay.auth_events()
    T.ok(auth and auth[-1]["ok"] and auth[-1]["line"] == 1, "the relay saw the right user name and password (creds line 1)", auth)
    import pwd
    uid = pwd.getpwnam("postfix").pw_uid
    T.ok("not in the allow-list" not in agent.log(), "postfix's smtp was allowed by the allow-list")
    trail = open(os.path.join(d, "audit.jsonl")).read()
    T.ok("vks-agent socketmap peer uid=%d " % uid in trail and '"agent.socketmap"' in trail,
         "the audit trail names the peer (uid postfix) and the protocol")

    # 2. password changed in Vault (the relay accepts only the new one now): no postfix reload
    vd.kv2_put("smtp-auth/127.0.0.1", {"username": "relay-user", "password": NEW})
    relay.set_creds([("relay-user", NEW)])
    time.sleep(1.3)  # the agent's cache ttl
    T.eq(pf.submit(2), 0, "sendmail accepts message 2")
    got = wait_for(lambda: len(relay.messages()) >= 2 and relay.messages())
    T.ok(got and len(got) == 2, "message 2 delivered after the change, without postfix reload", got)
    auth = relay.auth_events()
    T.ok(auth[-1]["ok"] and auth[-1]["user"] == "relay-user", "message 2 authenticated with the new password", auth[-1:])

    # 3. Vault unreachable, no stale copy (max_stale 0): deferred, then delivered after Vault returns
    time.sleep(1.3)
    vd.fault(action="close", path_prefix="/v1/secret/data/smtp-auth/", duration_seconds=120)
    n_auth, n_msg = len(relay.auth_events()), len(relay.messages())
    T.eq(pf.submit(3), 0, "sendmail accepts message 3")
    T.ok(wait_for(lambda: "status=deferred" in pf.maillog()), "message 3 is deferred while Vault is unreachable")
    time.sleep(1.0)
    q = pf.queue()
    T.ok("rcpt@example.net" in q, "message 3 stays in the queue", q)
    T.eq((len(relay.auth_events()), len(relay.messages())), (n_auth, n_msg), "nothing reached the relay (no AUTH-less send, no bounce)")
    T.ok("bounced" not in pf.maillog(), "nothing bounced")
    T.ok("TEMP" in agent.log() or "unavailable" in agent.log(), "the agent logs why it answered TEMP")
    vd.clear_faults()
    time.sleep(1.3)  # neg_ttl
    pf.flush()
    got = wait_for(lambda: len(relay.messages()) > n_msg)
    T.ok(got, "message 3 delivered by a queue flush once Vault is back")
    T.ok(wait_for(lambda: "Mail queue is empty" in pf.queue(), 20), "the queue is empty again")

    # 4. restricted credential (allowed_hosts excludes 127.0.0.1): deferred; delivered when lifted
    vd.call("POST", "/v1/secret/metadata/smtp-auth/127.0.0.1", {"custom_metadata": {"allowed_hosts": "192.0.2.1"}})
    time.sleep(1.3)
    deferred_before = pf.maillog().count("status=deferred")
    n_auth, n_msg = len(relay.auth_events()), len(relay.messages())
    T.eq(pf.submit(4), 0, "sendmail accepts message 4")
    T.ok(wait_for(lambda: pf.maillog().count("status=deferred") > deferred_before), "a restricted credential: deferred")
    T.eq((len(relay.auth_events()), len(relay.messages())), (n_auth, n_msg), "restricted: nothing reached the relay")
    T.ok("restricted" in agent.log(), "the agent logs the restriction")
    vd.call("POST", "/v1/secret/metadata/smtp-auth/127.0.0.1", {"custom_metadata": {"note": "lifted"}})
    time.sleep(1.3)
    pf.flush()
    T.ok(wait_for(lambda: len(relay.messages()) > n_msg), "message 4 delivered once the restriction is lifted")
    T.ok(not any(m["from"] in ("", "<>") for m in relay.messages()), "no bounce message ever reached the relay")


def main():
    if not os.path.exists("/usr/sbin/postfix"):
        print("postfix is not installed (scripts/bootstrap installs it)")
        print("0 passed, 1 failed")
        sys.exit(1)
    os.chmod(WORK, 0o755)
    d = daemon_workdir(WORK, "pfx")
    agent = relay = pf = None
    with VaultDev() as vd:
        try:
            vd.kv2_put("smtp-auth/127.0.0.1", {"username": "relay-user", "password": OLD})
            relay = Relay(d, creds=[("relay-user", OLD)], tls=True, accept=True)
            pf = Postfix(d, relay.port, relay.cafile, sasl_maps="socketmap:unix:private/vks:sasl")
            rc, out = pf.start()
            T.eq(rc, 0, "private postfix instance starts")
            if rc != 0:
                print(out)
                return
            agent = Agent(d, agent_config(vd, token_file(d, vd.root_token), audit=os.path.join(d, "audit.jsonl"))
                          + socketmap_section(os.path.join(d, "spool", "private", "vks")))
            st = os.stat(os.path.join(d, "spool", "private", "vks"))
            import grp
            T.ok(oct(st.st_mode & 0o777) == "0o660" and st.st_gid == grp.getgrnam("postfix").gr_gid,
                 "socket 0660, group postfix", (oct(st.st_mode), st.st_gid))
            T.run(scenario, vd, relay, pf, d, agent)
        finally:
            if pf is not None:
                pf.stop()
            if agent is not None:
                T.eq(agent.stop(), 0, "the agent exits 0 on SIGTERM")
            if relay is not None:
                relay.stop()
    log = pf.maillog() if pf else ""
    print("---- postfix log (smtp lines) ----")
    print("\n".join(l for l in log.splitlines() if "postfix/smtp[" in l or "status=" in l)[-3000:])
    texts = {"agent log": agent.log() if agent else "", "postfix log": log,
             "relay log": open(relay.log_path).read() if relay else "",
             "audit trail": open(os.path.join(d, "audit.jsonl")).read() if os.path.exists(os.path.join(d, "audit.jsonl")) else ""}
    for name, text in texts.items():
        T.ok(not any(s in text for s in SECRETS), "no password in the " + name)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
