"""vks-agent with the real Postfix as Debian runs it: the smtp client chrooted into the queue
directory (master.cf as Debian ships it, chroot column `y`), in a private instance
(`postfix -c DIR`), relaying to a loopback relay that requires AUTH PLAIN over STARTTLS.

  1. `socketmap:unix:private/vks:sasl` with the agent's socket at QUEUE_DIR/private/vks (the
     agent runs as root here): delivered, the relay saw the right user name and password, and the
     smtp process that delivered it really runs chrooted in the queue directory;
  2. the same socket named by its absolute host path: not found inside the chroot, so the message
     is deferred (never sent without AUTH);
  3. the layout docs/agent.md documents for an agent that is not root: the socket in a directory of
     its own inside the chroot (QUEUE_DIR/vks-agent, 0750, group postfix) and
     `socketmap:unix:vks-agent/sasl.sock:sasl`, moved there by a SIGHUP: the deferred message is
     delivered by a queue flush and a new one right away.
Every process started here is stopped in `finally` blocks; the outputs are scanned for the
password."""
import grp
import os
import pwd
import shutil
import sys

ROOT = os.environ["ROOT"]
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from smtprelay import Relay  # noqa: E402
from agent import (Agent, Postfix, RedactingChecks, agent_config, daemon_workdir,  # noqa: E402
                   socketmap_section, token_file, wait_for)

PW = "agent-pw-CHROOT-6e1f0a93"
SECRETS = [PW]
T = RedactingChecks(SECRETS)


def master_cf_chroot(pf, service):
    for line in open(os.path.join(pf.etc, "master.cf")):
        f = line.split()
        if len(f) >= 8 and not line.startswith("#") and f[0] == service and f[1] == "unix":
            return f[4]
    return None


def scenario(vd, relay, pf, agent, d):
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    T.eq((master_cf_chroot(pf, "smtp"), master_cf_chroot(pf, "relay")), ("y", "y"),
         "master.cf: smtp and relay run chrooted (Debian's default)")
    st = os.stat(os.path.join(pf.spool, "private"))
    T.ok(st.st_uid == postfix_uid and st.st_mode & 0o777 == 0o700, "QUEUE_DIR/private is 0700 postfix",
         (oct(st.st_mode), st.st_uid))

    # 1. private/NAME, resolved inside the chroot
    T.eq(pf.submit(1), 0, "sendmail accepts message 1")
    got = wait_for(lambda: relay.messages())
    T.ok(got and got[0]["user"] == "chroot-user" and got[0]["tls"],
         "message 1 delivered over TLS, authenticated as chroot-user", got)
    auth = relay.auth_events()
    T.ok(auth and auth[-1]["ok"] and auth[-1]["line"] == 1, "the relay saw the right user name and password", auth)
    T.ok(wait_for(lambda: "status=sent" in pf.maillog(), 10), "the maillog says status=sent")
    smtp = pf.processes("smtp")
    roots = set()
    for pid in smtp:
        try:
            roots.add(os.readlink("/proc/%d/root" % pid))
        except OSError:
            pass
    T.ok(smtp and roots == {os.path.realpath(pf.spool)},
         "the smtp client that delivered it runs chrooted in the queue directory", (smtp, roots))
    trail = open(os.path.join(d, "audit.jsonl")).read()
    T.ok("vks-agent socketmap peer uid=%d " % postfix_uid in trail and '"agent.socketmap"' in trail,
         "the audit trail names the chrooted peer (uid postfix)")

    # 2. the absolute host path does not exist inside the chroot: deferred, nothing sent
    host_path = os.path.join(pf.spool, "private", "vks")
    T.eq(pf.postconf("smtp_sasl_password_maps", "socketmap:unix:%s:sasl" % host_path)[0], 0,
         "postconf: the map by its absolute host path")
    T.eq(pf.reload()[0], 0, "postfix reload")
    n_auth, n_msg = len(relay.auth_events()), len(relay.messages())
    T.eq(pf.submit(2), 0, "sendmail accepts message 2")
    T.ok(wait_for(lambda: "status=deferred" in pf.maillog()),
         "an absolute host path is not found inside the chroot: deferred", pf.maillog()[-600:])
    T.ok("rcpt@example.net" in pf.queue(), "message 2 stays in the queue")
    T.eq((len(relay.auth_events()), len(relay.messages())), (n_auth, n_msg), "nothing reached the relay")
    T.ok("bounced" not in pf.maillog(), "nothing bounced")

    # 3. the documented layout for an agent that is not root: its own directory inside the chroot
    sub = os.path.join(pf.spool, "vks-agent")
    os.makedirs(sub, exist_ok=True)
    shutil.chown(sub, "root", "postfix")
    os.chmod(sub, 0o750)
    start = len(agent.log())
    agent.write_config(agent.config_text.replace(host_path, os.path.join(sub, "sasl.sock")))
    agent.hup()
    T.ok(agent.wait_log("configuration reloaded", start=start), "SIGHUP: the agent moves its socket", agent.log()[start:])
    st = os.stat(os.path.join(sub, "sasl.sock"))
    T.ok(st.st_mode & 0o777 == 0o660 and st.st_gid == grp.getgrnam("postfix").gr_gid,
         "QUEUE_DIR/vks-agent/sasl.sock: 0660, group postfix", (oct(st.st_mode), st.st_gid))
    T.eq(pf.postconf("smtp_sasl_password_maps", "socketmap:unix:vks-agent/sasl.sock:sasl")[0], 0,
         "postconf: socketmap:unix:vks-agent/sasl.sock:sasl")
    T.eq(pf.reload()[0], 0, "postfix reload")
    pf.flush()
    T.ok(wait_for(lambda: len(relay.messages()) > n_msg), "the deferred message 2 is delivered by a queue flush")
    T.ok(wait_for(lambda: "Mail queue is empty" in pf.queue(), 20), "the queue is empty again")
    T.eq(pf.submit(3), 0, "sendmail accepts message 3")
    got = wait_for(lambda: len(relay.messages()) > n_msg + 1 and relay.messages())
    T.ok(got and got[-1]["user"] == "chroot-user", "message 3 delivered through vks-agent/sasl.sock", got)
    T.ok(all(e["ok"] for e in relay.auth_events()), "every AUTH the relay saw was accepted", relay.auth_events())
    T.ok(not any(m["from"] in ("", "<>") for m in relay.messages()), "no bounce message reached the relay")


def main():
    if not os.path.exists("/usr/sbin/postfix"):
        print("postfix is not installed (scripts/bootstrap installs it)")
        print("0 passed, 1 failed")
        sys.exit(1)
    os.chmod(WORK, 0o755)
    d = daemon_workdir(WORK, "pfxc")
    agent = relay = pf = None
    with VaultDev() as vd:
        try:
            vd.kv2_put("smtp-auth/127.0.0.1", {"username": "chroot-user", "password": PW})
            relay = Relay(d, creds=[("chroot-user", PW)], tls=True, accept=True)
            pf = Postfix(d, relay.port, relay.cafile, sasl_maps="socketmap:unix:private/vks:sasl", chroot=True)
            rc, out = pf.start()
            T.eq(rc, 0, "private postfix instance (chrooted smtp) starts")
            if rc != 0:
                print(out)
                return
            text = (agent_config(vd, token_file(d, vd.root_token), audit=os.path.join(d, "audit.jsonl"))
                    + socketmap_section(os.path.join(pf.spool, "private", "vks")))
            agent = Agent(d, text)
            agent.config_text = text
            T.run(scenario, vd, relay, pf, agent, d)
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
    audit = os.path.join(d, "audit.jsonl")
    texts = {"agent log": agent.log() if agent else "", "postfix log": log,
             "relay log": open(relay.log_path).read() if relay else "",
             "audit trail": open(audit).read() if os.path.exists(audit) else ""}
    for name, text in texts.items():
        T.ok(not any(s in text for s in SECRETS), "no password in the " + name)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
