#!/usr/bin/env bash
# Instructions per request on the PAT path, counted by valgrind's
# callgrind (repeatable whatever else the machine does, unlike wall-clock
# figures): the release proxy forwards 200, then 1,200 keep-alive GETs
# from one client to a static nginx upstream; the difference of the two
# totals divided by 1,000 is the cost of one request.
#
# COUNT=allocations counts heap allocations per request instead (valgrind's
# dhat: its "Total: ... in N blocks").
#
# Usage: scripts/bench-instructions.sh [BASELINE_BIN]
# Installs valgrind and nginx with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
COUNT=${COUNT:-instructions}

install_missing valgrind:valgrind nginx:nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked -q --bin ado-auth-proxy
UP_PORT=${UP_PORT:-18181}
PROXY_PORT=${PROXY_PORT:-18183}
ADMIN_PORT=${ADMIN_PORT:-18184}

# total BIN N: callgrind's instruction total for N requests through BIN.
total() {
  local work; work=$(mktemp -d)
  local tool=(--tool=callgrind --callgrind-out-file="$work/cg.out")
  [ "$COUNT" = allocations ] && tool=(--tool=dhat --dhat-out-file="$work/dhat.out")
  static_upstream "$NGINX" "$work" "$UP_PORT"
  echo bench-pat >"$work/pat"; : >"$work/b.toml"
  ADO_AUTH_PROXY_LISTEN__ADDRESS=127.0.0.1:$PROXY_PORT \
  ADO_AUTH_PROXY_ADMIN__ADDRESS=127.0.0.1:$ADMIN_PORT \
  ADO_AUTH_PROXY_UPSTREAM__URL=http://127.0.0.1:$UP_PORT ADO_AUTH_PROXY_AUTH__MODE=pat \
  ADO_AUTH_PROXY_AUTH__PAT_FILE=$work/pat ADO_AUTH_PROXY_LOG__LEVEL=warn \
  ADO_AUTH_PROXY_LISTEN__SHUTDOWN_DELAY=0s \
    valgrind "${tool[@]}" "$1" --config "$work/b.toml" 2>"$work/v.log" &
  local vp=$!
  python3 - "$PROXY_PORT" "$2" <<'P'
import http.client, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(200):
    try:
        socket.create_connection(('127.0.0.1', port), 1).close(); break
    except OSError:
        time.sleep(0.2)
c = http.client.HTTPConnection('127.0.0.1', port)
for _ in range(n):
    c.request('GET', '/contoso/_apis/projects'); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
P
  kill -TERM "$vp"; wait "$vp" || true
  kill "$(cat "$work/up.pid")"
  if [ "$COUNT" = allocations ]; then
    sed -n 's/.*Total: *[0-9,]* bytes in \([0-9,]*\) blocks.*/\1/p' "$work/v.log" | tr -d ,
  else
    sed -n 's/^summary: //p' "$work/cg.out"
  fi
  rm -rf "$work"
}

per_request() {
  local small large
  small=$(total "$1" 200); large=$(total "$1" 1200)
  python3 -c "print(round(($large - $small) / 1000, 1))"
}

unit="instructions"
[ "$COUNT" = allocations ] && unit="allocations"
echo "proxy: $(per_request target/release/ado-auth-proxy) $unit per request"
if [ $# -ge 1 ]; then
  echo "baseline: $(per_request "$1") $unit per request"
fi
