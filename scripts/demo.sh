#!/usr/bin/env bash
# Build backlog-mirror and show it working on this machine, with nothing but git and cargo:
# a local source repository with history is mirrored to a local bare target, the source changes
# (new commit, force-push, deleted branch and tag), and a second sync brings the target along.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v git >/dev/null; then
  say "installing git"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq git; else sudo apt-get update -qq && sudo apt-get install -y -qq git; fi
fi

say "building (cargo build --release)"
cargo build --release --locked --quiet
BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/backlog-mirror"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/backlog-mirror-demo.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  echo "keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

# Demo git runs must not depend on the user's git configuration.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="Demo" GIT_AUTHOR_EMAIL="demo@example.com"
export GIT_COMMITTER_NAME="Demo" GIT_COMMITTER_EMAIL="demo@example.com"
g() { git -C "$WORK/work" "$@"; }

say "a source repository with history (stands in for Backlog)"
git init -q -b main "$WORK/work"
for i in 1 2 3; do echo "line $i" >> "$WORK/work/app.txt"; g add app.txt; g commit -qm "change $i"; done
g tag v1.0
g tag -a v1.1 -m "release 1.1"
g branch feature
g branch old-experiment
g notes add -m "reviewed"
git init -q --bare -b main "$WORK/source.git"
g push -q --mirror "$WORK/source.git"
git -C "$WORK/source.git" for-each-ref --format='  %(refname)'

say "an empty bare target (stands in for CodeCommit)"
git init -q --bare "$WORK/target.git"

SYNC=("$BIN" sync --source "$WORK/source.git" --target "$WORK/target.git" --cache-dir "$WORK/cache")

say "first sync: ${SYNC[*]}"
"${SYNC[@]}"

say "the source moves: new commit on main, feature force-pushed, a branch and a tag deleted"
echo "line 4" >> "$WORK/work/app.txt"; g commit -qam "change 4"
g checkout -q feature; g commit -q --amend -m "feature, rewritten"; g checkout -q main
g branch -D -q old-experiment
g tag -d v1.0 >/dev/null
g push -q --mirror "$WORK/source.git"

say "second sync"
"${SYNC[@]}"

say "source and target side by side"
paste <(git -C "$WORK/source.git" for-each-ref --format='%(objectname:short) %(refname)') \
      <(git -C "$WORK/target.git" for-each-ref --format='%(objectname:short) %(refname)') | column -t
if diff <(git -C "$WORK/source.git" for-each-ref) <(git -C "$WORK/target.git" for-each-ref) >/dev/null; then
  echo "the target is an exact mirror of the source"
else
  echo "MISMATCH: the target differs from the source" >&2
  exit 1
fi

say "a no-op sync, as JSON on stdout (nothing fetched, no push opened)"
"${SYNC[@]}" --json --quiet
