#!/usr/bin/env bash
# vks backup create / verify / restore of BACKUP_BENCH_N credentials (default 10000) in vault-dev:
# the recovery time (RTO) figures of docs/backup.md. A measurement, not a test.
exec python3 "$(dirname "$0")/backup_bench.py"
