#!/usr/bin/env bash
# The one test command (README's quick start, and what CI runs):
# installs what the tests need when missing, then runs the format check,
# clippy with warnings as errors, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain rust-toolchain.toml pins: a machine whose stable is that
# version links it under the pinned name instead of downloading it.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -qE "^${pinned}(-| |\$)"; then
  stable=$(rustup run stable rustc --version | cut -d' ' -f2)
  if [ "$stable" = "$pinned" ]; then
    rustup toolchain link "$pinned" "$(rustup run stable rustc --print sysroot)"
  fi
fi

# Test peers (apt packages, npm and PyPI packages), installed when missing.
scripts/test-peers.sh
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

cargo fmt --all -- --check
shellcheck scripts/*.sh .ci/run
# Licenses, duplicate versions and sources of the dependency tree
# (deny.toml); cargo-deny is built from crates.io when missing (~2 min).
command -v cargo-deny >/dev/null 2>&1 || cargo install -q --locked cargo-deny --version 0.20.2
cargo deny --locked check bans licenses sources
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
# The container image, built from deploy/Dockerfile and run with podman
# (needs root). SKIP_IMAGE_TEST=1 skips it on a machine without root, and
# says so; CI never sets it.
if [ "${SKIP_IMAGE_TEST:-}" = 1 ]; then
  echo "######## image test SKIPPED (SKIP_IMAGE_TEST=1): the image is untested ########" >&2
else
  scripts/image-test.sh
fi
