#!/usr/bin/env bash
# Every reader of a file refuses what is not a regular file, promptly and by name (vks_file):
# a FIFO without a writer (which blocks a plain open(2) forever), /dev/zero and /dev/null
# (character devices), a directory, a unix socket, a symlink to a FIFO, and a file over the
# reader's size cap. Readers: the file keysource, ~/.vault-token, the AppRole secret_id file and
# ca_cert (vks.setup), the raw key file and the keyring file (vks envelope keys), the audit key
# file and the audit log (vks audit verify), and the policy host's data files (kumo.toml_load,
# kumo.json_load). Each run is under `timeout 10`: a hang is exit 124 and fails the check.
set -u
VKS="$ROOT/$BUILD/vks"
HOST="$ROOT/$BUILD/vks-policy"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }

# the specimens: name -> path and the words the refusal must hold
rm -rf kinds && mkdir kinds
mkfifo kinds/fifo
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' kinds/sock
ln -s "$W/kinds/fifo" kinds/link-to-fifo
head -c 70000 /dev/zero | tr '\0' 'x' > kinds/big
declare -A PATHS=( [fifo]="$W/kinds/fifo" [zero]=/dev/zero [null]=/dev/null [dir]="$W/kinds"
                   [sock]="$W/kinds/sock" [link]="$W/kinds/link-to-fifo" [big]="$W/kinds/big" )
declare -A WORDS=( [fifo]="is a FIFO (named pipe), not a regular file" [zero]="is a character device"
                   [null]="is a character device" [dir]="is a directory, not a regular file"
                   [sock]="is a socket" [link]="is a FIFO" [big]="is larger than" )
KINDS="fifo zero null dir sock link big"

# run NAME KIND CMD...: CMD (with $P the specimen path) must end within 10 s, fail, and print
# the specimen's path and kind
run() {
  local name=$1 kind=$2; shift 2
  local P=${PATHS[$kind]} out rc
  out=$(P="$P" timeout 10 bash -c "$*" 2>&1); rc=$?
  if [ $rc -eq 124 ]; then bad "$name / $kind: hung (killed after 10 s)"; return; fi
  if [[ "$out" == *"$P"* && "$out" == *"${WORDS[$kind]}"* ]]; then
    ok "$name / $kind: refused promptly, naming the file and the kind"
  else
    bad "$name / $kind: rc=$rc, output: $out"
  fi
}

LUA="lua5.4 -e"
for k in $KINDS; do
  run "file keysource (vks.resolve)" $k \
    "$LUA \"local v = require 'vault_keysource'; local x, m, c = v.resolve(os.getenv('P')); print(c, m)\""
done

mkdir -p home
for k in $KINDS; do
  rm -rf home/.vault-token
  ln -s "${PATHS[$k]}" home/.vault-token
  PATHS[tok]="$W/home/.vault-token"; WORDS[tok]=${WORDS[$k]}
  out=$(HOME="$W/home" timeout 10 lua5.4 -e "print(pcall(require('vault_keysource').setup, {}))" 2>&1); rc=$?
  if [ $rc -ne 124 ] && [[ "$out" == *".vault-token"* && "$out" == *"${WORDS[$k]}"* ]]; then
    ok "token file ~/.vault-token / $k: refused promptly, naming the file and the kind"
  else
    bad "token file ~/.vault-token / $k: rc=$rc, output: $out"
  fi
done
rm -f home/.vault-token

for k in $KINDS; do
  run "AppRole secret_id_file (vks.setup)" $k \
    "$LUA \"print(pcall(require('vault_keysource').setup, { auth = 'approle', role_id = 'r', secret_id_file = os.getenv('P') }))\""
done
for k in fifo zero null dir sock link; do
  run "ca_cert (vks.setup)" $k \
    "$LUA \"print(pcall(require('vault_keysource').setup, { ca_cert = os.getenv('P') }))\""
done

for k in $KINDS; do
  run "raw key file (VKS_ENCRYPTION_KEY_FILE)" $k "VKS_ENCRYPTION_KEY_FILE=\$P '$VKS' envelope keys"
  run "keyring file (VKS_ENCRYPTION_KEYRING_FILE)" $k "VKS_ENCRYPTION_KEYRING_FILE=\$P '$VKS' envelope keys"
  run "audit key file (vks audit verify --key-file)" $k "'$VKS' audit verify --key-file \$P /etc/hostname"
done
for k in fifo zero null dir sock link; do
  run "audit log (vks audit verify)" $k "'$VKS' audit verify \$P"
done

cat > host.lua <<'EOF'
local kumo = require 'kumo'
print(pcall(kumo.toml_load, os.getenv('P')))
print(pcall(kumo.json_load, os.getenv('P')))
EOF
for k in fifo zero null dir sock link; do
  run "policy host data file (kumo.toml_load / json_load)" $k "'$HOST' --script '$W/host.lua'"
done

# a regular file, and a symlink to one, still read (k8s secrets are symlinks)
printf 'pw-45-regular' > kinds/regular.pw
ln -s "$W/kinds/regular.pw" kinds/link.pw
out=$(timeout 10 lua5.4 -e "local v = require 'vault_keysource'
print(v.resolve('$W/kinds/regular.pw') == 'pw-45-regular', v.resolve('$W/kinds/link.pw') == 'pw-45-regular')" 2>&1)
if [ "$out" = "true	true" ]; then ok "a regular file and a symlink to one still read"; else bad "regular read: $out"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
