#!/usr/bin/env bash
# Quick figures for the push-path design: backlog-mirror against the git CLI on a generated
# repository, both through a real git daemon on 127.0.0.1. Prints wall seconds and peak RSS per
# scenario and the ratios. Not run in CI.
#
#   scripts/bench-quick.sh            # 20k commits, 5k files (about 45-120 MB packed)
#   scripts/bench-quick.sh --small    # 1k commits, for a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."

COMMITS=20000 FILES=5000 RUNS=5
if [ "${1:-}" = "--small" ]; then COMMITS=1000 FILES=200 RUNS=3; fi
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }

cargo build --release --locked --quiet
BIN="$PWD/target/release/backlog-mirror"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

W=$(mktemp -d "${TMPDIR:-/tmp}/bm-bench.XXXXXX")
DAEMON_PID=
cleanup() { [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

GEN="target/bench/repo-$COMMITS-$FILES.git"
if [ ! -d "$GEN" ]; then
  echo "generating $GEN ..."
  mkdir -p target/bench
  python3 scripts/gen-repo.py --commits "$COMMITS" --files "$FILES" "$GEN"
fi
mkdir -p "$W/srv"
git clone -q --bare --mirror "$GEN" "$W/srv/source.git"
PACK_MB=$(du -sm "$W/srv/source.git/objects/pack" | cut -f1)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --base-path="$W/srv" --export-all --enable=receive-pack --reuseaddr \
  --listen=127.0.0.1 --port="$PORT" "$W/srv" &
DAEMON_PID=$!
until git ls-remote "git://127.0.0.1:$PORT/source.git" >/dev/null 2>&1; do :; done
SRC="git://127.0.0.1:$PORT/source.git"

# measure NAME CMD...: appends "seconds peak_kb" of one run to $W/NAME
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$W/t" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  cat "$W/t" >> "$W/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
secs() { cut -d' ' -f1 "$W/$1" | median; }
peak() { cut -d' ' -f2 "$W/$1" | sort -n | tail -1; }

fresh_target() { rm -rf "$W/srv/$1.git"; git init -q --bare "$W/srv/$1.git"; }

echo "repository: $COMMITS commits, $FILES files, ${PACK_MB} MB packed; $RUNS runs per figure"

for i in $(seq "$RUNS"); do
  # (a) initial mirror: empty cache, empty target
  fresh_target git-t; rm -rf "$W/git-cache"
  measure git-init-clone git clone -q --mirror "$SRC" "$W/git-cache"
  measure git-init-push git -C "$W/git-cache" push -q --mirror "git://127.0.0.1:$PORT/git-t.git"
  fresh_target bm-t; rm -rf "$W/bm-cache"
  measure bm-init "$BIN" sync -q --source "$SRC" --target "git://127.0.0.1:$PORT/bm-t.git" --cache-dir "$W/bm-cache"
  # (b) no-op
  measure git-noop-fetch git -C "$W/git-cache" fetch -q --prune origin
  measure git-noop-push git -C "$W/git-cache" push -q --mirror "git://127.0.0.1:$PORT/git-t.git"
  measure bm-noop "$BIN" sync -q --source "$SRC" --target "git://127.0.0.1:$PORT/bm-t.git" --cache-dir "$W/bm-cache"
  # (c) small change: 3 commits on main and a new branch
  rm -rf "$W/work"; git clone -q "$SRC" "$W/work"
  for c in 1 2 3; do echo "$i $c" >> "$W/work/bench.txt"; git -C "$W/work" add bench.txt; git -C "$W/work" commit -qm "bench $i $c"; done
  git -C "$W/work" push -q origin "HEAD:main" "HEAD:refs/heads/bench-$i"
  measure git-small-fetch git -C "$W/git-cache" fetch -q --prune origin
  measure git-small-push git -C "$W/git-cache" push -q --mirror "git://127.0.0.1:$PORT/git-t.git"
  measure bm-small "$BIN" sync -q --source "$SRC" --target "git://127.0.0.1:$PORT/bm-t.git" --cache-dir "$W/bm-cache"
done

sum2() { awk -v a="$(secs "$1")" -v b="$(secs "$2")" 'BEGIN {printf "%.2f", a+b}'; }
maxpeak() { a=$(peak "$1"); b=$(peak "$2"); echo $(( a > b ? a : b )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b>0 ? a/b : 0)}'; }

printf '\n%-10s %12s %12s %10s %12s %12s %10s %s\n' scenario "git s" "bm s" "time x" "git MB" "bm MB" "mem x" target
for s in init noop small; do
  gs=$(sum2 "git-$s-$( [ $s = init ] && echo clone || echo fetch)" "git-$s-push")
  bs=$(secs "bm-$s")
  gm=$(maxpeak "git-$s-$( [ $s = init ] && echo clone || echo fetch)" "git-$s-push")
  bm=$(peak "bm-$s")
  case $s in init) tgt="time <= 1.0x, memory <= 1.5x";; *) tgt="faster than git (time < 1.0x)";; esac
  printf '%-10s %12s %12s %10s %12s %12s %10s %s\n' "$s" "$gs" "$bs" "$(ratio "$bs" "$gs")" \
    "$((gm / 1024))" "$((bm / 1024))" "$(ratio "$bm" "$gm")" "$tgt"
done
echo
echo "git = git clone --mirror / fetch --prune + git push --mirror; bm = backlog-mirror sync (push engine auto)."
echo "seconds are medians of $RUNS runs; memory is the peak RSS of the largest process of each step."
