#!/usr/bin/env bash
# Proof that a process holding secrets in the arena and then aborting leaves a core file without
# any of the secret bytes (MADV_DONTDUMP), while ordinary heap memory is in it. The positive
# control copies the secret to malloc memory: its core must contain the secret, so the check can
# fail. The control core is deleted as soon as it has been checked (the secret scan reads core*).
#
# The kernel's core_pattern is used as it is when it names a plain file (Debian's default "core").
# When it is a pipe (systemd-coredump, apport) or an absolute path, and we are root, it is pointed
# at this suite's directory for the duration of the test and restored on exit.
set -u
P="$ROOT/$BUILD/tests/helpers/secmem_probe"
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

# the canary comes from the module's secret list (never typed into any output)
SECRET=$(grep -m1 '^secmem-canary-' "$ROOT/tests/test-secrets.d/secmem.txt")
[ -n "$SECRET" ] || { bad "canary secret listed in tests/test-secrets.d/secmem.txt"; finish; }
printf '%s\n' "$SECRET" > secret.txt
MARKER=secmem-probe-heap-marker

pattern_file=/proc/sys/kernel/core_pattern
orig_pattern=$(cat "$pattern_file")
restore() { [ -n "${changed:-}" ] && printf '%s\n' "$orig_pattern" > "$pattern_file"; }
trap restore EXIT
case "$orig_pattern" in
  '|'* | /*)
    if [ "$(id -u)" -eq 0 ] && printf '%s\n' "$W/core.%p" > "$pattern_file" 2>/dev/null; then
      changed=1; echo "core_pattern temporarily set to $W/core.%p (was: $orig_pattern)"
    else
      bad "core_pattern is '$orig_pattern' and cannot be pointed at a file here"; finish
    fi ;;
  *) echo "core_pattern: '$orig_pattern' (a file in the working directory)" ;;
esac
ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)"
if [ "$(ulimit -c)" = 0 ]; then bad "core files are disabled here (hard RLIMIT_CORE is 0)"; finish; fi
# under AddressSanitizer, cores are off by default
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0:handle_abort=0"

# Runs the probe in a fresh directory; prints the path of the core file it left.
dump() {
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  ( cd "$dir" && exec "$P" hold "$W/secret.txt" "$@" ) > "$dir.out" 2> "$dir.err"
  local rc=$?
  local core
  core=$(ls -t "$dir"/core* "$W"/core.* 2>/dev/null | head -n 1)
  if [ -n "$core" ] && [ "$(dirname "$core")" != "$dir" ]; then mv "$core" "$dir/"; core="$dir/$(basename "$core")"; fi
  echo "$rc $core"
}

read -r rc core < <(dump held 1000)
if [ $((rc)) -eq 134 ] && [ -n "$core" ] && [ -s "$core" ]; then
  ok "the probe holding 1000 copies aborted and left a core ($(stat -c %s "$core") bytes)"
  if grep -aqF "$MARKER" "$core"; then ok "the core contains ordinary heap memory (marker found)"; else bad "heap marker missing from the core"; fi
  if grep -aqF "$SECRET" "$core"; then bad "the core contains the secret"; else ok "the core contains none of the secret bytes"; fi
  # also no 16-byte piece of it (a partial copy would be a leak too)
  piece=${SECRET:4:16}
  if grep -aqF "$piece" "$core"; then bad "the core contains part of the secret"; else ok "the core contains no 16-byte piece of the secret"; fi
  grep -q "locked=1 dontdump=1" held.out && ok "the arena was locked and dontdump" || bad "probe status: $(cat held.out)"
else
  bad "no core file from the probe (exit $rc, core '${core:-none}'); stderr: $(head -c 300 held.err)"
fi

read -r rc core < <(dump control 1 --leak)
if [ $((rc)) -eq 134 ] && [ -n "$core" ] && [ -s "$core" ]; then
  if grep -aqF "$SECRET" "$core"; then ok "positive control: a malloc copy does show up in the core"; else bad "positive control: the malloc copy is not in the core (check is blind)"; fi
else
  bad "no core file from the control probe (exit $rc)"
fi
rm -rf control control.out control.err

# gdb's gcore of a live process: honours MADV_DONTDUMP by default; `gcore -a` (dump excluded
# mappings too) must find the secret, which proves the arena really holds it and that the dd flag
# is what keeps it out of the first core.
# (Skipped under AddressSanitizer: gdb would dump ASan's terabyte shadow, whose dd flag -a drops.)
if ldd "$P" 2>/dev/null | grep -q libasan; then
  echo "AddressSanitizer build: gcore checks skipped"
elif command -v gcore >/dev/null 2>&1; then
  mkdir -p live
  "$P" hold "$W/secret.txt" 10 --wait > live.out 2> live.err &
  pid=$!
  for _ in $(seq 1 600); do grep -q '^ready' live.out 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if grep -q '^ready' live.out; then
    gcore -o live/gcore "$pid" > live/gcore.log 2>&1
    gcore -a -o live/gcore-all "$pid" > live/gcore-all.log 2>&1
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
    g=$(ls live/gcore.[0-9]* 2>/dev/null | head -n 1); ga=$(ls live/gcore-all.[0-9]* 2>/dev/null | head -n 1)
    if [ -s "$g" ] && [ -s "$ga" ]; then
      if grep -aqF "$MARKER" "$g"; then ok "gcore: the core contains ordinary heap memory"; else bad "gcore: heap marker missing"; fi
      if grep -aqF "$SECRET" "$g"; then bad "gcore: the core contains the secret"; else ok "gcore: the core contains none of the secret bytes"; fi
      if grep -aqF "$SECRET" "$ga"; then ok "gcore -a control: dumping excluded mappings exposes the arena's secret"; else bad "gcore -a control: secret not found (check is blind)"; fi
    else
      bad "gcore produced no core files: $(tail -n 3 live/gcore.log)"
    fi
    rm -f "$ga"
  else
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
    bad "the waiting probe never became ready: $(head -c 300 live.err)"
  fi
else
  echo "gcore not installed: gdb checks skipped"
fi
finish
