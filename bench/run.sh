#!/usr/bin/env bash
# The benchmark's entry point: installs what it drives (sshd, git-remote-codecommit, botocore, a
# font for the chart), then runs bench/mirror.rs with `cargo bench`. Not part of CI.
#
#   bench/run.sh                      # small, medium and large with 10 and 10,000 refs, and pulls, 5 rounds
#   bench/run.sh --quick              # small repository only, 3 rounds: a smoke run
#   bench/run.sh --sizes small,medium --refs 10 --rounds 7
#   bench/run.sh --sizes pulls --sides b,c --scenarios initial,local-path
#   bench/run.sh --sizes pulls --prepare-only   # generate a dataset and say what it holds
#
# Generated repositories are kept in target/bench/; results go to bench/results.{json,png}
# (target/bench/quick/ with --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec cargo bench --locked --bench mirror -- "$@"
