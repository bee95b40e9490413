#!/usr/bin/env bash
# Install what the test suite and the benchmark drive for real on a fresh Debian/Ubuntu machine:
# git, OpenSSH's sshd, GNU time, OpenSSL, musl-gcc for the static build, a font for the benchmark's
# chart, and the Python tools (moto server, cfn-lint, checkov, git-remote-codecommit, botocore).
# Skips what is present.
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "system packages (git, OpenSSH server, GNU time, OpenSSL, musl-tools, DejaVu font)"
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
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# The static release binary (scripts/dist.sh): musl-gcc for C dependencies, perl and make for
# the OpenSSL it compiles in; unshare (util-linux) for tests/dist.rs's mount namespaces.
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v perl >/dev/null || missing+=(perl)
command -v make >/dev/null || missing+=(make)
command -v unshare >/dev/null || missing+=(util-linux)
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

