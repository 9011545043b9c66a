#!/usr/bin/env bash
# Inbound credentials (issue 15): vks-agent's Dovecot-protocol verification vs Dovecot's own auth
# service; see bench/inbound_bench.py. Measurements, not tests.
set -u
cd "$(dirname "$0")/.."
if [ ! -x "${BUILD:-build}/vks-agent" ] || ! command -v dovecot >/dev/null; then
  echo "inbound bench skipped: needs ${BUILD:-build}/vks-agent and dovecot (dovecot-core)"
  exit 0
fi
exec /usr/bin/python3 bench/inbound_bench.py
