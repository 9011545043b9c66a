#!/usr/bin/env bash
# vks-agent benchmarks (issue 11): see bench/agent_bench.py. Measurements, not tests.
set -u
cd "$(dirname "$0")/.."
if [ ! -x "${BUILD:-build}/vks-agent" ] || ! command -v postmap >/dev/null; then
  echo "agent bench skipped: needs ${BUILD:-build}/vks-agent and postfix's postmap"
  exit 0
fi
exec /usr/bin/python3 bench/agent_bench.py
