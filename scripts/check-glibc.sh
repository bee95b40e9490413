#!/usr/bin/env bash
# Fail when a binary needs a newer glibc than the build image provides.
#
#   scripts/check-glibc.sh BINARY [MAX_GLIBC]     (MAX_GLIBC defaults to 2.34, Amazon Linux 2023)
#
# Prints the newest GLIBC_x.y symbol version the binary requires ("none" for static binaries,
# such as the musl release builds) and exits 1 if it is newer than MAX_GLIBC.
set -euo pipefail
binary=${1:?usage: check-glibc.sh BINARY [MAX_GLIBC]}
max=${2:-2.34}
command -v objdump >/dev/null || { echo "objdump missing: apt-get install binutils" >&2; exit 2; }
needed=$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1 || true)
if [ -z "$needed" ]; then
  echo "$binary: needs no glibc (static)"
  exit 0
fi
newest=$(printf '%s\n%s\n' "$needed" "$max" | sort -V | tail -1)
if [ "$newest" != "$max" ]; then
  echo "$binary: needs glibc $needed, newer than $max" >&2
  exit 1
fi
echo "$binary: needs glibc $needed (<= $max)"
