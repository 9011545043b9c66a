#!/usr/bin/env bash
# The syslog audit sink against a real rsyslogd (Debian's rsyslog), private to this test: its own
# config (imuxsock on a socket in a temp directory, no system socket, no system log), in the
# foreground, killed on exit. Two processes resolve through the Lua module with the sink pointed
# at that socket (facility mail, ident vks-audit). Checked: every event arrives, under the right
# facility, program and pid; each payload parses as one of our JSON events with the lookup's
# fields and no secret; `vks audit verify --sink syslog` verifies rsyslog's own file output
# (header and all), a file mixing other programs' lines after the documented grep, and the bare
# messages; deleting or editing a line there is caught; with rsyslogd stopped a lookup is refused
# (on_failure deny) and after its restart the sink reconnects, records the refusals as
# unrecorded and the chain still verifies.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
VKS=$ROOT/$BUILD/vks
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
if [ ! -x "$RSYSLOGD" ]; then echo "FAIL rsyslogd is not installed (scripts/bootstrap installs rsyslog)"; echo "0 passed, 1 failed"; exit 1; fi
# the socket lives in a short private directory (sun_path has 108 bytes)
S=$(mktemp -d /tmp/vks-rsyslog.XXXXXX) || exit 1
SOCK=$S/log.sock
PIDFILE=$S/rsyslogd.pid
stop_rsyslogd() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$PIDFILE"
}
trap 'stop_rsyslogd; rm -rf "$S"' EXIT

rm -f ./*.log rs.conf
cat > rs.conf <<CONF
global(workDirectory="$W" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$SOCK" CreatePath="off")
template(name="meta" type="string" string="%syslogfacility-text%.%syslogseverity-text% %programname% %procid%\n")
template(name="bare" type="string" string="%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$W/all.log" template="RSYSLOG_TraditionalFileFormat")
if \$programname == "vks-audit" then {
  action(type="omfile" file="$W/audit-syslog.log" template="RSYSLOG_FileFormat")
  action(type="omfile" file="$W/audit-meta.log" template="meta")
  action(type="omfile" file="$W/audit-bare.log" template="bare")
}
CONF
start_rsyslogd() {
  # -n foreground (the test owns it), -f our config only, -i our pid file; under timeout in case
  # the trap never runs
  (timeout 300 "$RSYSLOGD" -n -f "$W/rs.conf" -i "$PIDFILE" >> rsyslogd.out 2>&1 &)
  for _ in $(seq 100); do [ -S "$SOCK" ] && [ -s "$PIDFILE" ] && return 0; sleep 0.1; done
  return 1
}
# wait_lines FILE N: until FILE has N lines (10 s at most)
wait_lines() {
  for _ in $(seq 100); do [ "$(wc -l < "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0; sleep 0.1; done
  return 1
}
start_rsyslogd; rc=$?
check "rsyslogd starts on a private socket" '[ $rc -eq 0 ]'
check "rsyslogd did not open the system socket" '[ ! -e /dev/log ] || ! ls -l /proc/$(cat "$PIDFILE")/fd 2>/dev/null | grep -q /dev/log'

printf '%s' AUDITKEY-TEST-5e1f0c9a77d2b3c4e8 > audit.key; chmod 600 audit.key
printf '%s' relay-password-AUDIT-9c1e4f > pw.txt; chmod 600 pw.txt
cat > lookups.lua <<'LUA'
-- arg: socket, key file, value file, then optional: stop command, start command
local vks = require 'vault_keysource'
local sock, key, file, stop, start = arg[1], arg[2], arg[3], arg[4], arg[5]
assert(vks.setup { audit = { syslog = { socket = sock, ident = 'vks-audit', facility = 'mail' },
                             key_file = key, on_failure = 'deny' } })
local function look(ks, ctx)
  local v, msg, code = vks.resolve(ks, ctx)
  print(v ~= nil and 'ok' or ('fail ' .. tostring(code)))
end
look(file, { domain = 'example.com', destination = 'mx1.example.com', tag = 'syslog-test' })
look(file, { domain = 'example.com', destination = 'mx1.example.com', tag = 'syslog-test' })
look({ key_data = 'relay-password-AUDIT-rotated-77ab' }, { domain = 'example.org' })
look('/nonexistent/vks-rsyslog-test', { domain = 'example.net' })
if stop then
  os.execute(stop)
  look(file, { domain = 'while-down.example' })
  os.execute(start)
  look(file, { domain = 'after-restart.example' })
end
print('pid ' .. require('vault_keysource').audit_stats().chain)
LUA
unset VKS_AUDIT_FILE VKS_AUDIT_STDERR VKS_AUDIT_SYSLOG VKS_AUDIT_KEY VKS_AUDIT_KEY_FILE VKS_AUDIT_MODE VKS_AUDIT_ON_FAILURE
out1=$(timeout 60 lua5.4 lookups.lua "$SOCK" "$W/audit.key" "$W/pw.txt" 2>&1); rc1=$?
echo "$out1"; echo "(exit $rc1)"
check "process 1: lookups through the syslog sink (3 served, 1 not found)" \
  '[ $rc1 -eq 0 ] && [ "$(grep -c "^ok$" <<<"$out1")" -eq 3 ] && grep -qx "fail file_error" <<<"$out1"'
# process 1: open + 4 lookups + close = 6 events
wait_lines audit-syslog.log 6; rc=$?
check "process 1's 6 events arrive in rsyslog's file" '[ $rc -eq 0 ]'

# 2. a second process, across a stop and restart of rsyslogd
#    (the Lua side runs these two scripts: this file's functions, same pid file and socket)
#    Stop only once the events already sent were written: datagrams still unread in the socket
#    when rsyslogd exits are lost without the sender knowing (as with any syslog daemon).
{ declare -f wait_lines stop_rsyslogd; echo "wait_lines '$W/audit-syslog.log' 11; stop_rsyslogd"; } > stop.sh
{ declare -f start_rsyslogd; echo start_rsyslogd; } > start.sh
export PIDFILE SOCK RSYSLOGD W
out2=$(timeout 60 lua5.4 lookups.lua "$SOCK" "$W/audit.key" "$W/pw.txt" \
         "bash $W/stop.sh" "bash $W/start.sh" 2>&1); rc2=$?
echo "$out2"
check "process 2: a lookup while rsyslogd is down is refused (audit_unavailable, deny)" \
  '[ $rc2 -eq 0 ] && [ "$(sed -n 5p <<<"$out2")" = "fail audit_unavailable" ]'
check "process 2: after the restart the sink reconnects and the lookup is served" \
  '[ "$(sed -n 6p <<<"$out2")" = ok ]'
# process 2: open + 4 + (refused: nothing) + dropped + 1 + close = 8 events
wait_lines audit-syslog.log 14; rc=$?
check "process 2's events arrive (14 lines in all)" '[ $rc -eq 0 ] && [ "$(wc -l < audit-syslog.log)" -eq 14 ]'
logger -u "$SOCK" -t other-program "an unrelated line" 2>/dev/null
for _ in $(seq 100); do grep -q other-program all.log 2>/dev/null && break; sleep 0.1; done
stop_rsyslogd

# 3. the lines: facility, program, pid; each payload one of our events
check "every event is mail.info from program vks-audit with a pid" \
  '[ "$(grep -cE "^mail\.info vks-audit [0-9]+$" audit-meta.log)" -eq 14 ]'
/usr/bin/python3 - audit-syslog.log > parse.out 2>&1 <<'PY'
import json, sys
events = []
for line in open(sys.argv[1], encoding='utf-8'):
    head, sep, payload = line.rstrip('\n').partition(': {')
    assert sep, 'no payload in: ' + line[:60]
    events.append(json.loads('{' + payload))
types = [e['type'] for e in events]
print('types', ' '.join(types))
chains = sorted({e['chain'] for e in events})
print('chains', len(chains))
for c in chains:
    seqs = [e['seq'] for e in events if e['chain'] == c]
    print('seqs', c[:8], seqs == list(range(len(seqs))))
lk = [e for e in events if e['type'] == 'secret.lookup']
print('lookups', len(lk))
print('domains', ' '.join(e['ctx']['domain'] for e in lk))
print('codes', ' '.join(e['code'] for e in lk))
print('sources', ' '.join(e['source'] for e in lk))
print('fp', all(len(e['fp'] or '') == 32 for e in lk if e['result'] == 'success'))
print('schema', all(e['v'] == 1 and len(e['mac']) == 64 for e in events))
d = [e for e in events if e['type'] == 'audit.dropped']
print('dropped', len(d), d[0]['unrecorded'] if d else None)
PY
cat parse.out
check "every payload parses as a JSON event of schema 1" 'grep -qx "schema True" parse.out'
check "two chains, each with seq 0, 1, 2, ... in order" \
  '[ "$(grep -c "^seqs .* True$" parse.out)" -eq 2 ] && grep -qx "chains 2" parse.out'
check "the lookups carry their context, source and code" \
  'grep -qx "domains example.com example.com example.org example.net example.com example.com example.org example.net after-restart.example" parse.out &&
   grep -qx "codes ok ok ok file_error ok ok ok file_error ok" parse.out &&
   grep -qx "sources file file key_data file file file key_data file file" parse.out'
check "served lookups carry the value's fingerprint" 'grep -qx "fp True" parse.out'
check "the refused lookup is recorded as 1 unrecorded event" 'grep -qx "dropped 1 1" parse.out'
check "no secret in what rsyslog wrote" \
  '! grep -qF relay-password-AUDIT all.log audit-syslog.log audit-bare.log && ! grep -qF AUDITKEY-TEST all.log'

# 4. verification of what rsyslog wrote
v() { "$VKS" audit verify --key-file "$W/audit.key" "$@"; }
out=$(v --sink syslog audit-syslog.log 2>&1); rc=$?
echo "$out"
check "rsyslog's file (RFC 5424 timestamps, header kept) verifies: 2 chains, 14 events" \
  '[ $rc -eq 0 ] && [[ "$out" == *"OK: 2 chains, 14 events verified"* ]]'
out=$(grep -F ' vks-audit[' all.log | v --sink syslog - 2>&1); rc=$?
check "the traditional-format file with other programs' lines verifies after the grep" \
  '[ $rc -eq 0 ] && [[ "$out" == *"OK: 2 chains, 14 events verified"* ]] && grep -q other-program all.log'
out=$(v --sink syslog all.log 2>&1); rc=$?
check "... and without the grep the other lines are reported (exit 1)" \
  '[ $rc -eq 1 ] && [[ "$out" == *"not an audit event"* ]]'
out=$(v --sink syslog audit-bare.log 2>&1); rc=$?
check "the bare messages (template %msg%) verify" '[ $rc -eq 0 ] && [[ "$out" == *"OK: 2 chains, 14 events"* ]]'
out=$(v audit-syslog.log 2>&1); rc=$?
check "without --sink syslog the framed lines are not events (exit 1)" '[ $rc -eq 1 ]'
sed '3d' audit-syslog.log > t1.log
out=$(v --sink syslog t1.log 2>&1); rc=$?
check "a deleted line in rsyslog's file is caught" '[ $rc -eq 1 ] && [[ "$out" == *"missing (deleted)"* ]]'
sed '4s/example\.org/example.xyz/' audit-syslog.log > t2.log
out=$(v --sink syslog t2.log 2>&1); rc=$?
check "an edited line in rsyslog's file is caught" '[ $rc -eq 1 ] && ! cmp -s t2.log audit-syslog.log'
sed '2s/^\([^ ]*\) [^ ]* /\1 otherhost /' audit-syslog.log > t3.log
out=$(v --sink syslog t3.log 2>&1); rc=$?
check "the header is not MAC-covered: a changed host name still verifies" '[ $rc -eq 0 ] && ! cmp -s t3.log audit-syslog.log'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
