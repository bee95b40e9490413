#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for the test suite, then run every check CI runs:
# formatting, clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "system packages (git, OpenSSH server, GNU time)"
missing=()
command -v git >/dev/null || missing+=(git)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/time ] || missing+=(time)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v objdump >/dev/null || missing+=(binutils)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "all present"
fi

step "Python tools (moto server, cfn-lint, checkov, git-remote-codecommit, botocore)"
py_missing=()
python3 -c 'import moto.server' 2>/dev/null || py_missing+=('moto[server]')
command -v cfn-lint >/dev/null || py_missing+=(cfn-lint)
command -v checkov >/dev/null || py_missing+=(checkov)
python3 -c 'import git_remote_codecommit' 2>/dev/null || py_missing+=(git-remote-codecommit)
python3 -c 'import botocore' 2>/dev/null || py_missing+=(botocore)
python3 -c 'import boto3' 2>/dev/null || py_missing+=(boto3)
python3 -c 'import yaml' 2>/dev/null || py_missing+=(pyyaml)
if [ ${#py_missing[@]} -gt 0 ]; then
  python3 -m pip install --quiet "${py_missing[@]}"
else
  echo "all present"
fi

step "Rust components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked --no-fail-fast
