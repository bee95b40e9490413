#!/usr/bin/env bash
# A first mirror over git:// (git daemon on 127.0.0.1, no hooks): backlog-mirror against plain
# git's `git clone --mirror` + `git push --mirror`, on one bare repository, the sides taking turns
# round after round. Not a timed test, not part of CI.
#
#   bench/initial.sh REPO.git [ROUNDS]      # e.g. a dataset bench/run.sh --prepare-only made
#   BIN=target/debug/backlog-mirror bench/initial.sh REPO.git
#
# Per round and side it prints the wall time, the peak RSS of the largest process of the side
# (GNU time's %M: the binary or one of its git children; git clone or git push for plain git),
# and the bytes the target received (its packs: a fresh target keeps a large push as one pack).
# Then the medians, and backlog-mirror's over git's.
set -euo pipefail
cd "$(dirname "$0")/.."

repo=$(realpath "${1:?give a bare repository}")
rounds=${2:-3}
bin=$(realpath "${BIN:-target/release/backlog-mirror}")
[[ -x /usr/bin/time ]] || { echo "bench/initial.sh needs GNU time (apt-get install time)" >&2; exit 2; }
[[ -x $bin ]] || { echo "no binary at $bin: cargo build --release, or set BIN" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bm-initial-XXXXXX")
daemon=
cleanup() { [[ -n $daemon ]] && kill "$daemon" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

ln -s "$repo" "$work/source.git"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$work" --export-all \
  --enable=receive-pack --informative-errors "$work" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do
  git ls-remote "git://127.0.0.1:$port/source.git" HEAD >/dev/null 2>&1 && break
  sleep 0.1
done
url="git://127.0.0.1:$port"
refs=$(git -C "$repo" for-each-ref | wc -l)
objects=$(git -C "$repo" count-objects -v | awk '/^(count|in-pack):/ {n += $2} END {print n}')
echo "# $repo: $refs refs, $objects objects; $bin; $(nproc) cores; $(date -u +%FT%TZ)"

pack_bytes() { find "$1/objects" -type f -printf '%s\n' | awk '{n += $1} END {print n + 0}'; }

run_side() {
  local side=$1 target="$work/target-$1.git"
  rm -rf "$target" "$work/cache" "$work/clone.git"
  git init -q --bare "$target"
  if [[ $side == B ]]; then
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" sync --quiet --json \
      --source "$url/source.git" --target "$url/target-$side.git" \
      --cache-dir "$work/cache" >"$work/summary.json"
  else
    /usr/bin/time -f '%e %M' -o "$work/time" sh -c \
      'a=$(date +%s.%N); git clone --quiet --mirror "$1" "$2"; b=$(date +%s.%N)
       git -C "$2" push --quiet --mirror "$3"; c=$(date +%s.%N)
       awk -v a="$a" -v b="$b" -v c="$c" "BEGIN { printf \"clone %.2f push %.2f\\n\", b - a, c - b }" >"$4"' \
      sh "$url/source.git" "$work/clone.git" "$url/target-$side.git" "$work/phases"
  fi
  read -r seconds rss <"$work/time"
  [[ $(git -C "$target" for-each-ref | wc -l) == "$refs" ]] || { echo "$side: the target lacks refs" >&2; exit 1; }
  local phases
  if [[ $side == B ]]; then
    phases=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["seconds"]; print("fetch %.2f push %.2f" % (s["fetch"], s["push"]))' "$work/summary.json")
  else
    phases=$(cat "$work/phases")
  fi
  echo "$side $seconds $rss $(pack_bytes "$target") $phases" | tee -a "$work/rows"
}

printf '%-4s %8s %10s %14s %s\n' side seconds rss_kib target_bytes phases
for round in $(seq "$rounds"); do
  if (( round % 2 )); then run_side B; run_side C; else run_side C; run_side B; fi
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {s: [statistics.median(float(r[i]) for r in rows if r[0] == s) for i in (1, 2, 3)]
       for s in ("B", "C")}
for s in ("B", "C"):
    print(f"median {s}: {med[s][0]:.2f} s, {med[s][1] / 1024:.0f} MiB, {med[s][2] / 2**20:.1f} MiB received")
print("B/git: time {:.2f}x, peak memory {:.2f}x, bytes {:.3f}x".format(
    *(med["B"][i] / med["C"][i] for i in range(3))))
PY
