#!/usr/bin/env bash
# The man pages (man/*.1) agree with the programs' --help: every option a command's --help names
# is an entry of its page's OPTIONS section and every option the OPTIONS section names is in the
# --help text (both directions; -h/--help itself is in the synopsis); every command `vks help`
# lists has an entry, with its summary, in vks(1)'s COMMANDS and a page of its group, and
# COMMANDS lists no other; every page renders with groff (and man -l when man-db is there)
# without a warning. A doctored page and a doctored --help are caught (the comparison can fail).
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
VKS=$ROOT/$BUILD/vks
POLICY=$ROOT/$BUILD/vks-policy
MAN=$ROOT/man

# plain text, one line per paragraph, no hyphenation: options are never split
render() { groff -man -Tascii -rLL=2000n -rHY=0 -P-c -P-b -P-u "$1" 2>/dev/null; }
section() { render "$1" | awk -v s="$2" '/^[A-Z][A-Z ]*$/ { on = ($0 == s); next } on'; }
opts() { grep -oE -- '--[a-z][a-z0-9-]*' | grep -vxF -- '--help' | LC_ALL=C sort -u; }
entries() { grep -E '^       --' | opts; }   # the tags of .TP entries (7-space indent)

# compare PAGE HELPTEXT: prints what disagrees, returns 1 when anything does
compare() {
  local page=$1 help=$2 h t m r=0
  h=$(opts <<<"$help")
  t=$(section "$page" OPTIONS | entries)
  m=$(section "$page" OPTIONS | opts)
  local only_help only_man
  only_help=$(LC_ALL=C comm -23 <(echo "$h") <(echo "$t") | grep . )
  only_man=$(LC_ALL=C comm -13 <(echo "$h") <(echo "$m") | grep . )
  [ -n "$only_help" ] && { echo "  in --help, no OPTIONS entry in $(basename "$page"): $only_help"; r=1; }
  [ -n "$only_man" ] && { echo "  in $(basename "$page") OPTIONS, not in --help: $only_man"; r=1; }
  [ -n "$h" ] || { echo "  no option found in the --help text"; r=1; }
  return $r
}

# 1. rendering without warnings
for p in "$MAN"/*.1; do
  err=$(groff -ww -man -z "$p" 2>&1)
  check "$(basename "$p"): groff -ww -man renders it without a warning" '[ -z "$err" ]'
  [ -n "$err" ] && echo "$err"
  if command -v man > /dev/null; then
    out=$(MANWIDTH=80 man --warnings -l "$p" 2> man.err | sed 's/.\x08//g')
    check "$(basename "$p"): man -l renders it without a warning" \
      '[ ! -s man.err ] && [[ "$out" == *NAME* ]] && [[ "$out" == *OPTIONS* || "$p" == */vks.1 ]]'
  fi
done

# 2. vks-policy(1) against --help (the vks pages in 3)
help=$("$POLICY" --help); rc=$?
check "vks-policy --help exits 0" '[ $rc -eq 0 ]'
compare "$MAN/vks-policy.1" "$help"; check "vks-policy.1 OPTIONS == vks-policy --help" '[ $? -eq 0 ]'

# 3. vks(1) COMMANDS against `vks help`; one page per group, its OPTIONS the union of the
#    group's --help texts
list=$("$VKS" help); rc=$?
check "vks help exits 0" '[ $rc -eq 0 ]'
cmds=$(sed -nE 's/^  vks ([a-z]+) ([a-z]+) .*/\1 \2/p' <<<"$list")
check "vks help lists commands" '[ "$(wc -l <<<"$cmds")" -ge 7 ]'
listed=$(section "$MAN/vks.1" COMMANDS | sed -nE 's/^       vks ([a-z]+) ([a-z]+)$/\1 \2/p' | LC_ALL=C sort)
check "vks.1 COMMANDS lists exactly the commands of vks help" '[ "$listed" = "$(LC_ALL=C sort <<<"$cmds")" ]'
commands_text=$(section "$MAN/vks.1" COMMANDS)
for g in $(cut -d' ' -f1 <<<"$cmds" | sort -u); do
  check "group $g has its page man/vks-$g.1" '[ -f "$MAN/vks-$g.1" ]'
  ghelp=
  while read -r gg c; do
    [ "$gg" = "$g" ] || continue
    summary=$(sed -nE "s/^  vks $g $c +(.*)$/\1/p" <<<"$list")
    check "vks.1 gives the summary of vks $g $c" '[[ "$commands_text" == *"$summary"* ]]'
    h=$("$VKS" "$g" "$c" --help); rc=$?
    check "vks $g $c --help exits 0" '[ $rc -eq 0 ] && [[ "$h" == "usage: vks $g $c"* ]]'
    check "vks-$g.1 shows vks $g $c in its SYNOPSIS" '[[ "$(section "$MAN/vks-$g.1" SYNOPSIS)" == *"vks $g $c"* ]]'
    ghelp+=$h$'\n'
  done <<<"$cmds"
  if [ "$(ls "$MAN/vks-$g.1" 2>/dev/null)" ] && grep -q -- '--' <<<"$ghelp"; then
    compare "$MAN/vks-$g.1" "$ghelp"; check "vks-$g.1 OPTIONS == the options of the vks $g commands' --help" '[ $? -eq 0 ]'
  fi
done

# 3b. commands without a sub-command (`vks rekey`): their own page, OPTIONS == --help, in vks(1)
for g in rekey; do
  h=$("$VKS" "$g" --help); rc=$?
  check "vks $g --help exits 0" '[ $rc -eq 0 ] && [[ "$h" == "usage: vks $g"* ]]'
  check "vks.1 COMMANDS lists vks $g" '[[ "$(section "$MAN/vks.1" COMMANDS)" == *"vks $g"* ]]'
  compare "$MAN/vks-$g.1" "$h"; check "vks-$g.1 OPTIONS == vks $g --help" '[ $? -eq 0 ]'
done

# 4. the comparison catches a difference both ways
sed 's/^\.B \\-\\-quiet$/.B \\-\\-quiet\n.TP\n.B \\-\\-bogus\nnot an option./' "$MAN/vks-audit.1" > doctored.1
out=$(compare doctored.1 "$("$VKS" audit verify --help)"); rc=$?
check "an OPTIONS entry the program lacks is caught" '[ $rc -eq 1 ] && [[ "$out" == *"not in --help: --bogus"* ]]'
out=$(compare "$MAN/vks-audit.1" "$("$VKS" audit verify --help) --extra-option X"); rc=$?
check "a --help option the page lacks is caught" '[ $rc -eq 1 ] && [[ "$out" == *"no OPTIONS entry in vks-audit.1: --extra-option"* ]]'
printf '.TH X 1\n.SH NAME\nx \\- y\n.SH OPTIONS\n.TP\n.BX \\-\\-z\nq\n' > broken.1
check "a page with a roff error is reported by groff -ww" '[ -n "$(groff -ww -man -z broken.1 2>&1)" ]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
