#!/usr/bin/env bash
# Installs what the tests need when it is missing; run by scripts/test.sh
# and scripts/image-test.sh, and safe to run again (it only installs what
# is absent). Runs from the repository root, wherever it is called from.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test peers: git (with git-http-backend) for the clone/push test, openssl
# to make throwaway TLS certificates, Node.js for the OpenID provider
# (npm oidc-provider), Chromium for the browser tests, Python's venv for
# the azure-devops SDK, redis-server for the shared session store.
missing=()
command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ] || missing+=(git)
git lfs version >/dev/null 2>&1 || missing+=(git-lfs)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# promtool checks and unit-tests the shipped alerts (tests/prometheus/).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# squid is the corporate egress proxy of the egress tests.
[ -x /usr/sbin/squid ] || missing+=(squid)
# The scripts are checked with ShellCheck (scripts/test.sh).
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test peers: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages are installed, not started: no squid or prometheus service.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm peers, pinned by tests/peers/package-lock.json.
if [ ! -d tests/peers/node_modules/oidc-provider ] || [ ! -d tests/peers/node_modules/playwright-core ] \
   || [ tests/peers/package-lock.json -nt tests/peers/node_modules ]; then
  npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error
fi
# Azure DevOps' own Python SDK, a real client for the error-answer tests;
# kubernetes-validate checks manifests against the Kubernetes schemas.
if ! tests/peers/.venv/bin/python -c 'import azure.devops' >/dev/null 2>&1; then
  python3 -m venv tests/peers/.venv
  tests/peers/.venv/bin/pip install -q --disable-pip-version-check azure-devops==7.1.0b4
fi
if [ ! -x tests/peers/.venv/bin/kubernetes-validate ]; then
  tests/peers/.venv/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
# Helm's own Go SDK (helm-python-sdk) renders and lints the chart offline.
if ! tests/peers/.venv/bin/python -c 'import helm_python' >/dev/null 2>&1; then
  tests/peers/.venv/bin/pip install -q --disable-pip-version-check helm-python-sdk==0.2.2
fi
# A real WebSocket client and server for the tunnel tests.
if ! tests/peers/.venv/bin/python -c 'import websockets' >/dev/null 2>&1; then
  tests/peers/.venv/bin/pip install -q --disable-pip-version-check websockets==15.0.1
fi
