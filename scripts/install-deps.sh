#!/usr/bin/env bash
# Install what the test suite and the benchmark drive for real on a fresh Debian/Ubuntu machine:
# git, OpenSSH's sshd, Squid (a forward proxy), GNU time, OpenSSL, musl-gcc for the static build, a font for the benchmark's
# chart, the AWS CLI v2 (Debian's awscli, for scripts/deploy.sh) and the pinned Python tools of
# scripts/requirements-test.txt.
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
# scripts/deploy.sh needs the AWS CLI v2; tests/deploy.rs drives Debian's (/usr/bin/aws) against moto.
[ -x /usr/bin/aws ] || missing+=(awscli)
# A real forward proxy for tests/proxy.rs (HTTP_PROXY, HTTPS_PROXY's CONNECT, NO_PROXY).
command -v squid >/dev/null || [ -x /usr/sbin/squid ] || missing+=(squid)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  # Debian starts the proxy it installs as a service; the tests start their own.
  if [[ " ${missing[*]} " == *" squid "* ]]; then as_root service squid stop >/dev/null 2>&1 || true; fi
else
  echo "all present"
fi

step "Python tools (scripts/requirements-test.txt: moto, cfn-lint, checkov, the AWS CLI v1, airspeed-ext...)"
# Installed when any pinned version is missing: pip's own check is the source of truth.
requirements="$(dirname "$0")/requirements-test.txt"
if python3 - "$requirements" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    name = name.split("[")[0]
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  echo "all present"
else
  python3 -m pip install --quiet --root-user-action=ignore -r "$requirements"
fi
