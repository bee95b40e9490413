#!/usr/bin/env bash
# Build the static release binaries that ship: the ones CI tests, the release workflow publishes
# and the deploy command uploads. One recipe, so what is tested is what runs on CodeBuild.
#
#   scripts/dist.sh [--target TARGET]...     (default: every supported target)
#   scripts/dist.sh --help
#
# Targets: x86_64-unknown-linux-musl, aarch64-unknown-linux-musl.
# Writes target/dist/backlog-mirror-<target> and target/dist/backlog-mirror-<target>.sha256
# (sha256sum format, file name only: `cd target/dist && sha256sum -c *.sha256` checks them).
#
# Each binary is built with the release profile as Cargo.toml defines it and the locked
# dependencies, with OpenSSL compiled in (openssl-sys `vendored` for musl targets), and is checked
# before it is published: statically linked (no program interpreter, no shared library), stripped,
# of the right machine, and `--version` names the crate version and the commit (run natively, or
# under qemu-user when the target is foreign and qemu is installed).
#
# It installs what it needs and skips what is present: the rustup target; for the host's own
# architecture musl-gcc (Debian's musl-tools), for the other one cargo-zigbuild and zig from PyPI
# (pinned below, unpacked under target/dist-tools, no system cross toolchain). Re-running it
# rebuilds only what changed. Runs on Linux x86_64 or aarch64 with rustup, Python 3 and pip.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

readonly SUPPORTED=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
readonly CARGO_ZIGBUILD_VERSION=0.24.1
readonly ZIGLANG_VERSION=0.17.1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() {
  echo "dist.sh: error: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (run as root or install sudo)"
  fi
}
trap 'echo "dist.sh: error: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target)
      [ $# -ge 2 ] || { echo "dist.sh: error: --target needs a value: one of ${SUPPORTED[*]}" >&2; exit 2; }
      targets+=("$2")
      shift 2
      ;;
    --target=*)
      targets+=("${1#--target=}")
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "dist.sh: error: unknown argument '$1'; see 'scripts/dist.sh --help'" >&2
      exit 2
      ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${SUPPORTED[@]}")
for target in "${targets[@]}"; do
  case " ${SUPPORTED[*]} " in
    *" $target "*) ;;
    *)
      echo "dist.sh: error: --target '$target' is not supported; use one of: ${SUPPORTED[*]}" >&2
      exit 2
      ;;
  esac
done

[ "$(uname -s)" = Linux ] || die "builds on Linux only (this is $(uname -s))"
host_arch=$(uname -m)
case "$host_arch" in
  x86_64 | aarch64) ;;
  arm64) host_arch=aarch64 ;;
  *) die "builds on x86_64 or aarch64 Linux only (this is $host_arch)" ;;
esac
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs), then open a new shell"
command -v rustup >/dev/null || die "rustup not found: the musl targets are added with rustup (https://rustup.rs)"

# Tools every build needs: readelf for the checks, perl and make for OpenSSL's own build.
missing=()
command -v readelf >/dev/null || missing+=(binutils)
command -v perl >/dev/null || missing+=(perl)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc)
for target in "${targets[@]}"; do
  if [ "${target%%-*}" = "$host_arch" ] && ! command -v musl-gcc >/dev/null; then
    missing+=(musl-tools)
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  step "system packages: ${missing[*]}"
  command -v apt-get >/dev/null ||
    die "missing ${missing[*]} and no apt-get to install them: install them with your package manager"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -n "$target_dir" ] || die "cannot read the target directory from 'cargo metadata'"
# target/dist whatever CARGO_TARGET_DIR says: the path the deploy command and the docs name.
dist_dir="$PWD/target/dist"
crate_version=$(cargo pkgid --locked)
crate_version=${crate_version##*[@#]}

# cargo-zigbuild and zig, unpacked with pip --target (no virtualenv, nothing installed into the
# system Python) into a directory named for their versions; made in a temporary directory and
# renamed into place, so an interrupted install is never taken for a finished one.
zig_tools() {
  local dir="$PWD/target/dist-tools/zigbuild-$CARGO_ZIGBUILD_VERSION-zig-$ZIGLANG_VERSION"
  if [ ! -x "$dir/bin/cargo-zigbuild" ] || [ ! -x "$dir/ziglang/zig" ]; then
    step "cargo-zigbuild $CARGO_ZIGBUILD_VERSION and zig $ZIGLANG_VERSION (PyPI)" >&2
    command -v python3 >/dev/null || die "python3 not found: needed to install cargo-zigbuild and zig from PyPI"
    python3 -m pip --version >/dev/null 2>&1 || die "pip not found: install it (Debian: apt-get install python3-pip)"
    mkdir -p "$PWD/target/dist-tools"
    rm -rf "$PWD/target/dist-tools"/.install.* # what an interrupted install left
    local tmp
    tmp=$(mktemp -d "$PWD/target/dist-tools/.install.XXXXXX")
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
      --target "$tmp" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION" >&2 ||
      { rm -rf "$tmp"; die "pip could not install cargo-zigbuild==$CARGO_ZIGBUILD_VERSION ziglang==$ZIGLANG_VERSION"; }
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  echo "$dir"
}

# The checks a binary passes before it is published.
verify() {
  local binary=$1 target=$2 machine
  local headers program dynamic sections
  headers=$(readelf -hW "$binary") || die "$binary is not an ELF file"
  program=$(readelf -lW "$binary")
  dynamic=$(readelf -dW "$binary")
  sections=$(readelf -SW "$binary")
  case "$target" in
    x86_64-*) machine="Advanced Micro Devices X86-64" ;;
    aarch64-*) machine="AArch64" ;;
  esac
  grep -q "Machine: *$machine\$" <<<"$headers" ||
    die "$binary: wrong machine: $(grep Machine: <<<"$headers")"
  ! grep -q 'INTERP' <<<"$program" || die "$binary is not static: it names a program interpreter"
  ! grep -q '(NEEDED)' <<<"$dynamic" ||
    die "$binary is not static: it needs $(grep '(NEEDED)' <<<"$dynamic" | grep -o '\[.*\]' | tr '\n' ' ')"
  ! grep -Eq ' \.(symtab|debug_[a-z]+) ' <<<"$sections" || die "$binary is not stripped"

  local runner=()
  if [ "${target%%-*}" != "$host_arch" ]; then
    if command -v "qemu-${target%%-*}" >/dev/null; then
      runner=("qemu-${target%%-*}")
    else
      echo "$binary: static, stripped, $machine (not run: no qemu-${target%%-*} on this host)"
      return 0
    fi
  fi
  local version
  version=$("${runner[@]}" "$binary" --version) || die "$binary --version failed"
  [[ "$version" =~ ^backlog-mirror\ ${crate_version//./\\.}\ \(([0-9a-f]{12}(-dirty)?|unknown)\)$ ]] ||
    die "$binary --version printed '$version', want 'backlog-mirror $crate_version (<commit>)'"
  echo "$binary: static, stripped, $machine, $version"
}

for target in "${targets[@]}"; do
  step "rustup target $target"
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"

  step "cargo build --release --target $target"
  started=$SECONDS
  if [ "${target%%-*}" = "$host_arch" ]; then
    env "CC_${target//-/_}=musl-gcc" "AR_${target//-/_}=ar" \
      cargo build --release --locked --target "$target"
  else
    tools=$(zig_tools)
    env PATH="$tools/bin:$PATH" CARGO_ZIGBUILD_ZIG_PATH="$tools/ziglang/zig" \
      cargo zigbuild --release --locked --target "$target"
  fi
  echo "built in $((SECONDS - started)) s"

  step "check and publish target/dist/backlog-mirror-$target"
  built="$target_dir/$target/release/backlog-mirror"
  verify "$built" "$target"
  mkdir -p "$dist_dir"
  name="backlog-mirror-$target"
  # The old checksum goes first and the new one is written last, each by rename: an interrupted
  # run leaves a binary without a checksum, never a checksum that vouches for another binary.
  rm -f "$dist_dir/$name.sha256"
  tmp=$(mktemp "$dist_dir/.$name.XXXXXX")
  cp "$built" "$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$dist_dir/$name"
  tmp=$(mktemp "$dist_dir/.$name.sha256.XXXXXX")
  (cd "$dist_dir" && sha256sum "$name") >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$dist_dir/$name.sha256"
  (cd "$dist_dir" && sha256sum -c --quiet "$name.sha256")
  echo "$(cat "$dist_dir/$name.sha256")  ($(stat -c %s "$dist_dir/$name") bytes)"
done
