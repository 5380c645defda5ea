#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with podman, without a
# registry, and runs the image tests (tests/it/image.rs) against it.
#
# No registry is reachable here, so both bases are made locally from Debian
# packages (mmdebstrap): the runtime base has libc6 and libgcc-s1 only (no
# shell, no package manager, like distroless cc) plus the host's CA bundle;
# the builder base has a shell, and the Dockerfile's PREBUILT argument
# copies the release binary built on the host instead of compiling in the
# container. The Dockerfile's runtime stage is the one users get.
#
# Needs root (podman's overlay storage, runc). Everything podman writes
# stays under target/image-test; nothing global is configured.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "image-test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (podman with overlay storage): run it as root, or set SKIP_IMAGE_TEST=1 for scripts/test.sh to skip it knowingly"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing image test tools: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The image tests render the chart (Helm's Python SDK in the test venv)
# and run check-config: the same peers scripts/test.sh installs, so this
# script also runs on its own on a fresh checkout.
scripts/test-peers.sh

WORK="$PWD/target/image-test"
mkdir -p "$WORK"
# runc: crun fails on this kind of machine's hybrid cgroups; rlimits no
# higher than the host's hard limits (root may lack CAP_SYS_RESOURCE).
hard_nofile=$(ulimit -Hn)
cat >"$WORK/containers.conf" <<CONF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = ["nofile=${hard_nofile}:${hard_nofile}", "nproc=32768:32768"]
CONF
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/graph"
runroot = "$WORK/run"
CONF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

# base NAME PACKAGES: a local image of Debian bookworm packages, extracted
# (no maintainer scripts run), plus the host's CA bundle.
base() {
  local name=$1 packages=$2
  podman image exists "$name" && return 0
  local tar
  tar="$WORK/$(basename "${name%%:*}").tar"
  mmdebstrap --quiet --variant=extract --include="$packages" bookworm "$tar"
  mkdir -p "$WORK/extra/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/extra/etc/ssl/certs/"
  tar -rf "$tar" -C "$WORK/extra" ./etc/ssl/certs/ca-certificates.crt
  podman import -q "$tar" "$name" >/dev/null
  rm -f "$tar"
}
base localhost/ado-test-runtime:bookworm libc6,libgcc-s1
base localhost/ado-test-builder:bookworm dash,coreutils

cargo build --release --locked -q --bin ado-auth-proxy
IMAGE=localhost/ado-auth-proxy:test
podman build -q --pull=never -f deploy/Dockerfile \
  --build-arg BUILDER_IMAGE=localhost/ado-test-builder:bookworm \
  --build-arg RUNTIME_IMAGE=localhost/ado-test-runtime:bookworm \
  --build-arg PREBUILT=/prebuilt/ado-auth-proxy \
  -v "$PWD/target/release:/prebuilt:ro" \
  -t "$IMAGE" . >/dev/null
echo "image-test: built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"

ADO_IMAGE="$IMAGE" cargo test --locked --test it -- --ignored --test-threads 1 image::
