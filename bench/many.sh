#!/usr/bin/env bash
# One run over a mirror list of many small repositories, all already in sync: what a scheduled
# build of a whole Backlog space costs when nothing moved. Not a timed test, not part of CI.
#
#   bench/many.sh                 # 50 mirrors, --jobs 8, the release binary
#   bench/many.sh 20 4            # 20 mirrors, --jobs 4
#   SOURCES=git bench/many.sh     # sources served by git daemon on 127.0.0.1 (libgit2 over TCP;
#                                 # its listen backlog is 5: above --jobs 5 a SYN may wait 1 s)
#   DISCOVER=1 bench/many.sh      # the same mirrors found by [discover] through a stand-in of
#                                 # Backlog's API (tests/support/backlog_api.py) instead of listed;
#                                 # sources are then served by git daemon (SOURCES=git), as
#                                 # discovery takes remote URLs only
#   KEEP=/tmp/s.json bench/many.sh  # keep the measured run's JSON summary
#   BIN=target/debug/backlog-mirror bench/many.sh
#
# Each repository is generated with git (a few commits, branches and tags); the first run fills
# every target and cache, the later (measured) runs find nothing to do. Prints wall time and
# memory against the many-mirror targets (< 3 s, < 200 MB in total):
# - wall time and the binary's own peak RSS, from GNU time (its %M is the largest single
#   process of the run, which is the binary);
# - the peak of the whole process tree (the binary and its git children at once), from a second
#   identical run whose tree is sampled from /proc every 20 ms: a sample can miss a short peak,
#   so this is a lower bound, and the sampling costs that run some time.
set -euo pipefail
cd "$(dirname "$0")/.."

mirrors=${1:-50}
jobs=${2:-8}
bin=${BIN:-target/release/backlog-mirror}
sources=${SOURCES:-path}
discover=${DISCOVER:-0}
[[ $discover == 1 ]] && sources=git
[[ -x /usr/bin/time ]] || { echo "bench/many.sh needs GNU time (apt-get install time)" >&2; exit 2; }
[[ -x $bin ]] || cargo build --release --locked
work=$(mktemp -d "${TMPDIR:-/tmp}/bm-many-XXXXXX")
daemon=
api=
trap '[[ -n $daemon ]] && kill "$daemon"; [[ -n $api ]] && kill "$api"; [[ -n ${KEEP:-} ]] && cp "$work/summary.json" "$KEEP"; rm -rf "$work"' EXIT
if [[ $sources == git ]]; then
  port=$((20000 + RANDOM % 20000))
  mkdir -p "$work/src"
  git daemon --listen=127.0.0.1 --port="$port" --export-all --base-path="$work/src" \
    --reuseaddr "$work/src" 2>/dev/null &
  daemon=$!
fi
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench \
  GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

list=$work/mirrors.toml
printf '[defaults]\nretries = 0\n\n' >"$list"
repos_json=
for i in $(seq -w 1 "$mirrors"); do
  repo=$work/work/r$i
  git init -q -b main "$repo"
  for c in 1 2 3 4 5; do
    echo "$i $c" >"$repo/file$c.txt"
    git -C "$repo" add -A
    git -C "$repo" commit -q -m "commit $c of repo $i"
  done
  git -C "$repo" branch -q feature
  git -C "$repo" tag v1
  git init -q --bare "$work/src/r$i.git"
  git init -q --bare "$work/dst/r$i.git"
  git -C "$repo" push -q --mirror "$work/src/r$i.git"
  source=$work/src/r$i.git
  [[ $sources == git ]] && source=git://127.0.0.1:$port/r$i.git
  if [[ $discover == 1 ]]; then
    repos_json+="${repos_json:+,}{\"id\":1$i,\"name\":\"r$i\",\"httpUrl\":\"$source\",\"sshUrl\":\"$source\"}"
  else
    printf '[[mirror]]\nname = "PROJ/r%s"\nsource = "%s"\ntarget = "%s"\n\n' \
      "$i" "$source" "$work/dst/r$i.git" >>"$list"
  fi
done
if [[ $discover == 1 ]]; then
  # The API stand-in answers until its stdin closes: a FIFO this shell holds open.
  printf '{"key":"bench-key","projects":[{"id":1,"projectKey":"PROJ","name":"p","archived":false}],"repositories":{"PROJ":[%s]}}' \
    "$repos_json" >"$work/space.json"
  printf 'bench-key' >"$work/api-key"
  mkfifo "$work/hold"
  python3 tests/support/backlog_api.py --config "$work/space.json" --log "$work/api.log" \
    <"$work/hold" >"$work/api.out" &
  api=$!
  exec 9>"$work/hold"
  until grep -q READY "$work/api.out" 2>/dev/null; do sleep 0.05; done
  api_port=$(cut -d' ' -f2 "$work/api.out")
  printf '[discover]\napi-url = "http://127.0.0.1:%s"\nbacklog-api-key-file = "%s"\nsource-url = "https"\ntarget = "%s/dst/{repo}.git"\n' \
    "$api_port" "$work/api-key" "$work" >>"$list"
fi

run() {
  "$bin" sync --config "$list" --cache-dir "$work/cache" --jobs "$jobs" --quiet "$@"
}
run
/usr/bin/time -f '%e %M' -o "$work/time" "$bin" sync --config "$list" --cache-dir "$work/cache" \
  --jobs "$jobs" --json >"$work/summary.json" 2>"$work/summary.txt"
read -r wall rss_kb <"$work/time"
# The second measured run, its process tree's total RSS sampled.
"$bin" sync --config "$list" --cache-dir "$work/cache" --jobs "$jobs" --quiet &
root=$!
tree_kb=0
while kill -0 "$root" 2>/dev/null; do
  kb=$(ps -eo pid=,ppid=,rss= | awk -v root="$root" '
    { parent[$1] = $2; rss[$1] = $3 }
    END {
      for (p in rss) {
        q = p
        while (q != root && q in parent && q > 1) q = parent[q]
        if (q == root) total += rss[p]
      }
      print total + 0
    }')
  (( kb > tree_kb )) && tree_kb=$kb
  sleep 0.02
done
wait "$root"
changed=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(m["refs"]["created"]+m["refs"]["updated"]+m["refs"]["forced"]+m["refs"]["deleted"] for m in d["mirrors"]), d["exit_code"], len(d["mirrors"]))' "$work/summary.json")
read -r refs_changed code count <<<"$changed"
rss_mb=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
how=listed
[[ $discover == 1 ]] && how="discovered through the API stand-in"
echo "backlog-mirror $($bin --version | cut -d' ' -f2) on $(nproc) cores: $count mirrors $how ($sources sources), --jobs $jobs, no-op run (exit $code, $refs_changed refs changed)"
echo "  wall time  ${wall} s   (target < 3 s)"
tree_mb=$(awk -v k="$tree_kb" 'BEGIN { printf "%.1f", k / 1024 }')
echo "  peak RSS   ${rss_mb} MB, the binary alone"
echo "  peak RSS   ${tree_mb} MB, binary and git children together, sampled (target < 200 MB)"
ok=$(awk -v w="$wall" -v r="$tree_mb" -v s="$rss_mb" 'BEGIN { print (w < 3 && r < 200 && s < 200) ? "met" : "MISSED" }')
echo "  targets    $ok"
