#!/usr/bin/env bash
# Throughput and latency of ado-auth-proxy against nginx, in one run on
# loopback:
#   (a) direct  - wrk -> static upstream (nginx, 1 worker, small JSON body)
#   (b) nginx   - wrk -> nginx proxy_pass (keep-alive upstream pool, static
#                 Authorization header) -> static upstream
#   (c) proxy   - wrk -> ado-auth-proxy (pat mode, release build) -> static upstream
#   (d) floor   - wrk -> examples/hyper_floor (hyper server + pooled client,
#                 nothing else) -> static upstream: what any hyper-based
#                 proxy costs on this machine, to tell our own overhead apart
# Each target is measured ROUNDS times, interleaved; medians are printed
# with the ratios proxy/nginx, proxy/floor and proxy/direct, as a markdown table.
#
#   (e) baseline - only with BASELINE_BIN=path/to/another/ado-auth-proxy:
#                 the same proxy config on an older build, for A/B runs
#
# Usage: scripts/bench.sh            (DURATION=10s CONNECTIONS=64 ROUNDS=3)
# Installs wrk and nginx with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
UP_PORT=${UP_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
PROXY_PORT=${PROXY_PORT:-18083}
ADMIN_PORT=${ADMIN_PORT:-18084}
FLOOR_PORT=${FLOOR_PORT:-18085}
BASELINE_PORT=${BASELINE_PORT:-18086}
BASELINE_BIN=${BASELINE_BIN:-}
PATH_UNDER_TEST=/contoso/_apis/projects

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked -q --bin ado-auth-proxy --example hyper_floor
BIN=target/release/ado-auth-proxy

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/up.pid" ] && kill "$(cat "$work/up.pid")" 2>/dev/null || true
  [ -f "$work/px.pid" ] && kill "$(cat "$work/px.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

common="error_log $work/error.log warn; events { worker_connections 4096; }"
http_common="access_log off; client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;"

cat >"$work/up.conf" <<EOF
worker_processes 1; daemon on; pid $work/up.pid; $common
http { $http_common
  server { listen 127.0.0.1:$UP_PORT; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"count":1,"value":[{"id":"p1","name":"Project"}]}'; } } }
EOF
cat >"$work/px.conf" <<EOF
worker_processes auto; daemon on; pid $work/px.pid; $common
http { $http_common
  upstream ado { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 1000000;
    location / { proxy_pass http://ado; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Basic OmJlbmNoLXBhdA==";
      proxy_set_header X-TFS-FedAuthRedirect Suppress; } } }
EOF
"$NGINX" -c "$work/up.conf" -e "$work/error.log"
"$NGINX" -c "$work/px.conf" -e "$work/error.log"

echo "bench-pat" >"$work/pat"
# start_proxy BINARY PORT ADMIN_PORT LOG
start_proxy() {
  ADO_AUTH_PROXY_LISTEN__ADDRESS=127.0.0.1:$2 \
  ADO_AUTH_PROXY_ADMIN__ADDRESS=127.0.0.1:$3 \
  ADO_AUTH_PROXY_UPSTREAM__URL=http://127.0.0.1:$UP_PORT \
  ADO_AUTH_PROXY_AUTH__MODE=pat ADO_AUTH_PROXY_AUTH__PAT_FILE=$work/pat \
  ADO_AUTH_PROXY_LOG__LEVEL=warn \
    "$1" --config "$work/bench.toml" 2>"$4" &
}
# Everything comes from the environment, so an older build (BASELINE_BIN)
# that does not know today's keys reads the same configuration.
: >"$work/bench.toml"
start_proxy "$BIN" "$PROXY_PORT" "$ADMIN_PORT" "$work/proxy.log"
pids+=($!)
proxy_pid=$!
targets="direct nginx proxy floor"
ports="$UP_PORT $NGINX_PORT $PROXY_PORT $FLOOR_PORT"
if [ -n "$BASELINE_BIN" ]; then
  start_proxy "$BASELINE_BIN" "$BASELINE_PORT" "$((BASELINE_PORT + 1))" "$work/baseline.log"
  pids+=($!)
  baseline_pid=$!
  targets="$targets baseline"
  ports="$ports $BASELINE_PORT"
fi
target/release/examples/hyper_floor 127.0.0.1:$FLOOR_PORT http://127.0.0.1:$UP_PORT &
pids+=($!)
floor_pid=$!

for port in $ports; do
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port$PATH_UNDER_TEST" && break
    sleep 0.1
  done
done

# RSS in KiB of a process and its children (nginx master + workers).
rss_kib() {
  local total=0 p
  for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# CPU time in clock ticks (user + system) of a process and its children.
cpu_ticks() {
  local total=0 p
  for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
TICKS_PER_SECOND=$(getconf CLK_TCK)

results="$work/results.tsv"
for round in $(seq "$ROUNDS"); do
  for target in $targets; do
    case $target in
      direct) port=$UP_PORT; pid=$(cat "$work/up.pid") ;;
      nginx) port=$NGINX_PORT; pid=$(cat "$work/px.pid") ;;
      proxy) port=$PROXY_PORT; pid=$proxy_pid ;;
      floor) port=$FLOOR_PORT; pid=$floor_pid ;;
      baseline) port=$BASELINE_PORT; pid=$baseline_pid ;;
    esac
    before=$(cpu_ticks "$pid")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port$PATH_UNDER_TEST")
    ticks=$(($(cpu_ticks "$pid") - before))
    printf '%s\t%s\t%s\t%s\n' "$target" "$(rss_kib "$pid")" "$ticks" "$(echo "$out" | tr '\n' '|')" >>"$results"
    echo "round $round $target: $(echo "$out" | grep -E 'Requests/sec|Non-2xx' | tr -s ' ' | tr '\n' ' ')" >&2
  done
done

python3 - "$results" "$DURATION" "$CONNECTIONS" "$THREADS" "$ROUNDS" "$TICKS_PER_SECOND" <<'PY'
import re, statistics, sys
path, duration, conns, threads, rounds, tck = sys.argv[1:]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
runs = {}
for line in open(path):
    target, rss, ticks, out = line.rstrip("\n").split("\t")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"99%\s+(\S+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = int(ticks) / int(tck) * 1e6 / max(requests, 1)
    errors = "Non-2xx" in out or "Socket errors" in out
    runs.setdefault(target, []).append((rps, p50, p99, int(rss), cpu_us, errors))
med = {t: [statistics.median(x[i] for x in r) for i in range(5)] for t, r in runs.items()}
print(f"wrk -t{threads} -c{conns} -d{duration}, {rounds} interleaved rounds, medians; RSS after the run;")
print("CPU = user+system time of the target's own processes per request")
print()
print("| target | req/s | p50 ms | p99 ms | RSS MiB | CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|")
for t in [t for t in ("direct", "nginx", "proxy", "floor", "baseline") if t in med]:
    rps, p50, p99, rss, cpu = med[t]
    flag = " (errors!)" if any(x[5] for x in runs[t]) else ""
    print(f"| {t}{flag} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rss/1024:.1f} | {cpu:.1f} |")
print()
p, n, d, f = med["proxy"], med["nginx"], med["direct"], med["floor"]
print(f"- throughput proxy/nginx: **{p[0]/n[0]:.2f}** (target >= 1.0)")
print(f"- p99 latency proxy/nginx: **{p[2]/n[2]:.2f}** (target <= 1.2)")
print(f"- throughput proxy/floor (bare hyper proxy): {p[0]/f[0]:.2f}; floor/nginx: {f[0]/n[0]:.2f}")
print(f"- throughput proxy/direct: {p[0]/d[0]:.2f}")
print(f"- CPU per request proxy/nginx: {p[4]/n[4]:.2f}; proxy/floor: {p[4]/f[4]:.2f}")
if "baseline" in med:
    b = med["baseline"]
    print(f"- proxy/baseline: throughput {p[0]/b[0]:.2f}, p99 {p[2]/b[2]:.2f}, CPU per request {p[4]/b[4]:.2f}")
PY
