#!/usr/bin/env bash
# Session store figures for docs/benchmarks.md: cached lookup cost at 1k/100k/1M
# sessions, RSS per session (2 KiB access tokens), embedded store write and
# cold-read rates, and the real binary's start-to-ready time over an empty
# database and over one holding STORED sessions (after a clean stop and
# after a crash). Prints markdown tables.
#
# Usage: scripts/bench-sessions.sh        (STORED=100000)
# Needs ~6 GiB of memory for the 1M-session step.
set -euo pipefail
cd "$(dirname "$0")/.."
STORED=${STORED:-100000}
cargo build --release --locked -q --bin ado-auth-proxy --example session_bench
target/release/examples/session_bench target/release/ado-auth-proxy "$STORED"
