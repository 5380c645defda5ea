#!/usr/bin/env bash
# Where the proxy's CPU goes under the benchmark's load: perf samples the
# release build (PAT mode, a static nginx upstream) while wrk sends
# small keep-alive GETs, then prints the hottest symbols (self time) and
# the share of each component (kernel, hyper, tokio, the proxy's own
# code, allocator, ...) as text for docs/benchmarks.md.
#
# Usage: scripts/bench-profile.sh [BIN]   (DURATION=10s CONNECTIONS=64 TOP=30)
# Installs perf (linux-perf), wrk and nginx with apt-get when missing.
# Needs perf_event access (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
TOP=${TOP:-30}
UP_PORT=${UP_PORT:-18281}
PROXY_PORT=${PROXY_PORT:-18283}
ADMIN_PORT=${ADMIN_PORT:-18284}
install_missing perf:linux-perf wrk:wrk nginx:nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
BIN=${1:-}
if [ -z "$BIN" ]; then
  # The release build with line tables (Cargo.toml's profile "profiling").
  cargo build --profile profiling --locked -q --bin ado-auth-proxy
  BIN=target/profiling/ado-auth-proxy
fi

work=$(mktemp -d)
cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  [ -f "$work/up.pid" ] && kill "$(cat "$work/up.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
static_upstream "$NGINX" "$work" "$UP_PORT"
echo bench-pat >"$work/pat"; : >"$work/b.toml"
ADO_AUTH_PROXY_LISTEN__ADDRESS=127.0.0.1:$PROXY_PORT \
ADO_AUTH_PROXY_ADMIN__ADDRESS=127.0.0.1:$ADMIN_PORT \
ADO_AUTH_PROXY_UPSTREAM__URL=http://127.0.0.1:$UP_PORT \
ADO_AUTH_PROXY_AUTH__MODE=pat ADO_AUTH_PROXY_AUTH__PAT_FILE=$work/pat \
ADO_AUTH_PROXY_LOG__LEVEL=warn ADO_AUTH_PROXY_LISTEN__SHUTDOWN_DELAY=0s \
  "$BIN" --config "$work/b.toml" 2>"$work/proxy.log" &
proxy_pid=$!
url="http://127.0.0.1:$PROXY_PORT/contoso/_apis/projects"
for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
wrk -t2 -c"$CONNECTIONS" -d2s "$url" >/dev/null
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$url" >"$work/wrk.txt" &
wrk_pid=$!
sleep 1
perf record -q -F 2999 -g -p "$proxy_pid" -o "$work/perf.data" -- sleep "$(( ${DURATION%s} - 2 ))" 2>/dev/null
wait "$wrk_pid"
echo "load: $(grep -E 'Requests/sec' "$work/wrk.txt" | tr -s ' ')"
echo
echo "Share of samples by component (self time):"
perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -q 2>/dev/null \
  | python3 -c '
import re, sys
groups = {}
rules = [
    ("kernel", lambda d, s: d.startswith("[kernel") or s.startswith("[k]")),
    ("allocator", lambda d, s: re.search(r"\b(malloc|free|realloc|calloc|_int_malloc|_int_free|cfree)\b", s)),
    ("libc (memcpy, syscalls)", lambda d, s: "libc" in d),
    ("hyper (HTTP/1 and HTTP/2 codecs)", lambda d, s: "hyper::" in s or "h2::" in s),
    ("hyper-util (client pool, server)", lambda d, s: "hyper_util::" in s),
    ("tokio (scheduler, timers, IO driver)", lambda d, s: "tokio::" in s or "mio::" in s),
    ("tracing", lambda d, s: "tracing" in s),
    ("prometheus", lambda d, s: "prometheus::" in s),
    ("http, bytes, httparse", lambda d, s: re.search(r"\b(http::|bytes::|httparse::)", s)),
    ("ado-auth-proxy", lambda d, s: "ado_auth_proxy::" in s),
]
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*)$", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    for name, rule in rules:
        if rule(dso, sym):
            groups[name] = groups.get(name, 0) + pct
            break
    else:
        groups["other (std, core, compiler-generated)"] = groups.get("other (std, core, compiler-generated)", 0) + pct
for name, pct in sorted(groups.items(), key=lambda x: -x[1]):
    print(f"  {pct:5.1f}%  {name}")
'
echo
echo "Hottest $TOP symbols (self time):"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -q 2>/dev/null \
  | grep -E '^\s+[0-9.]+%' | head -"$TOP" | cut -c1-150 | sed -E 's/[[:space:]]+$//; s/^[[:space:]]+/  /'
