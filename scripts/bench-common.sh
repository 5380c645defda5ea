# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run).

# static_upstream NGINX WORK PORT: starts nginx on 127.0.0.1:PORT answering
# every request with the benchmark's small JSON document (one worker;
# its pid in WORK/up.pid, its files in WORK).
static_upstream() {
  local nginx=$1 work=$2 port=$3
  cat >"$work/up.conf" <<C
worker_processes 1; daemon on; pid $work/up.pid; error_log $work/e.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$port; keepalive_requests 1000000;
    location / { default_type application/json;
      return 200 '{"count":1,"value":[{"id":"p1","name":"Project"}]}'; } } }
C
  "$nginx" -c "$work/up.conf" -e "$work/e.log"
}

# install_missing COMMAND:PACKAGE...: installs with apt-get the Debian
# package of every command not found on PATH or in /usr/sbin.
install_missing() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
