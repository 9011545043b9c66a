#!/usr/bin/env bash
# The emergency reset's propagation (vks cred reset): 50 running resolvers (vks-policy loops, forking
# Lua hosts, vks-agents) of one credential in vault-dev; the distribution of the time from the
# command's return to each process's first refusal, and the Vault requests the control-record
# check adds per process per second. Numbers for docs/incident-runbook.md; a measurement, not a test.
exec /usr/bin/python3 "$(dirname "$0")/reset_bench.py"
