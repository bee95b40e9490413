#!/usr/bin/env bash
# Soak the sync against git as the oracle: run the differential suite (tests/differential.rs)
# for many seeds per combination of transport, path and push engine, and report what ran, what
# failed and how to replay each failure. Bounded: it runs the seeds asked for (or stops starting
# new work at --minutes) and cleans up after itself. See docs/testing.md.
#
#   scripts/soak.sh --seeds 200 [--transports local,git,http,ssh,codecommit] [--jobs 2]
#                   [--rounds 4] [--base 1] [--chunk 10] [--minutes 0] [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

seeds="" transports="local,git,http,ssh,codecommit" jobs=2 rounds="" base=1 chunk=10 minutes=0
profile=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --transports) transports="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --chunk) chunk="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --release) profile=(--release); shift ;;
    -h|--help) usage ;;
    *) echo "soak.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
number() { [[ "$2" =~ ^[0-9]+$ ]] || { echo "soak.sh: $1 must be a number, not '$2'" >&2; exit 2; }; }
[ -n "$seeds" ] || { echo "soak.sh: --seeds N is required" >&2; exit 2; }
number --seeds "$seeds"; number --jobs "$jobs"; number --base "$base"; number --chunk "$chunk"
number --minutes "$minutes"; [ -z "$rounds" ] || number --rounds "$rounds"
[ "$jobs" -ge 1 ] && [ "$chunk" -ge 1 ] || { echo "soak.sh: --jobs and --chunk must be at least 1" >&2; exit 2; }

# Which groups of the matrix each transport brings in (a group runs every combination in it).
tests=()
add() { for t in "$@"; do [[ " ${tests[*]-} " == *" $t "* ]] || tests+=("$t"); done; }
IFS=, read -r -a wanted <<<"$transports"
for transport in "${wanted[@]}"; do
  case "$transport" in
    local|file) add local_paths ;;
    git|http) add network_sources_warm network_targets_warm relay seeded ;;
    ssh) add ssh ;;
    codecommit) add codecommit ;;
    *) echo "soak.sh: unknown transport '$transport' (local, file, git, http, ssh, codecommit)" >&2; exit 2 ;;
  esac
done

echo "==> building the test binary${profile:+ (release)}"
binary=$(cargo test "${profile[@]}" --test main --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "main" and m.get("executable"):
        print(m["executable"])')
[ -x "$binary" ] || { echo "soak.sh: no test binary built (run cargo test --test main --no-run)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
runner=""
# The runner is started as a job of its own process group, so stopping it stops every test
# binary it started (and each binary's servers and syncs die with it).
trap '[ -z "$runner" ] || kill -TERM -- "-$runner" 2>/dev/null || true; rm -rf "$work"' EXIT
trap 'echo "soak.sh: interrupted" >&2; exit 130' INT TERM
stats="$work/stats"
: >"$stats"

# One work item per group and chunk of seeds.
items="$work/items"
: >"$items"
for test in "${tests[@]}"; do
  for ((start = base; start < base + seeds; start += chunk)); do
    n=$((base + seeds - start < chunk ? base + seeds - start : chunk))
    echo "$test $start $n" >>"$items"
  done
done

started=$(date +%s)
deadline=$((minutes > 0 ? started + minutes * 60 : 0))
echo "==> ${#tests[@]} group(s) [${tests[*]}], seeds $base..$((base + seeds - 1)) per combination, $jobs job(s), $(wc -l <"$items") item(s)"

run_item() {
  local test=$1 start=$2 n=$3
  if [ "$deadline" -gt 0 ] && [ "$(date +%s)" -ge "$deadline" ]; then
    echo "skipped $test $start" >>"$work/skipped"
    return 0
  fi
  local log="$work/log-$test-$start"
  env BACKLOG_MIRROR_DIFF_SEEDS="$n" BACKLOG_MIRROR_DIFF_SEED_BASE="$start" \
    BACKLOG_MIRROR_DIFF_STATS="$stats" ${rounds:+BACKLOG_MIRROR_DIFF_ROUNDS="$rounds"} \
    "$binary" "differential::$test" --exact --test-threads=1 >"$log" 2>&1 || true
  if grep -q "^test differential::$test ... ok" "$log"; then
    rm -f "$log"
  fi
  printf '.' >&2
}
export -f run_item
export binary work stats rounds deadline
set -m
xargs -P "$jobs" -L 1 bash -c 'run_item "$@"' _ <"$items" &
runner=$!
set +m
wait "$runner" || true
runner=""
echo >&2

elapsed=$(($(date +%s) - started))
histories=$(wc -l <"$stats")
syncs=$(awk '{s += $4} END {print s + 0}' "$stats")
failed=$(grep -c ' FAIL$' "$stats" || true)
echo "==> $histories histories ($(awk '{print $2}' "$stats" | sort -u | wc -l) distinct seeds over $(awk '{print $1}' "$stats" | sort -u | wc -l) combinations), $syncs syncs, $failed failed, ${elapsed}s"
[ ! -s "$work/skipped" ] || echo "    $(wc -l <"$work/skipped") item(s) not started: --minutes $minutes ran out"
status=0
for log in "$work"/log-*; do
  [ -e "$log" ] || continue
  status=1
  if grep -q '^seed [0-9]*, round' "$log"; then
    # Each failure: its header line and the replay command under it.
    grep -A1 '^seed [0-9]*, round' "$log" | grep -v '^--$'
  else
    echo "$(basename "$log"): the test binary failed without a history failure:"
    tail -n 20 "$log"
  fi
done
# Histories that failed whose log did not name them (a crash of the harness itself).
if [ "$failed" -gt 0 ] && [ "$status" -eq 0 ]; then status=1; fi
exit "$status"
