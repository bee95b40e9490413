#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for the test suite, then run every check CI runs:
# formatting, clippy with warnings as errors, the static release binary, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

./scripts/install-deps.sh

step "Rust components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The static binary that ships, built by the release recipe; tests/dist.rs and the buildspec run
# drive it (the rest of the suite drives the host's debug build).
dist_target="$(uname -m | sed 's/^arm64$/aarch64/')-unknown-linux-musl"
step "scripts/dist.sh --target $dist_target"
./scripts/dist.sh --target "$dist_target"
export BACKLOG_MIRROR_DIST_BINARY="$PWD/target/dist/backlog-mirror-$dist_target"

step "cargo test"
cargo test --locked --no-fail-fast
