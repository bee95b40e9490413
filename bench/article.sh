#!/usr/bin/env bash
# Side A of the benchmark: the reference article's build phase, as its buildspec runs it, minus
# the `pip3 install git-remote-codecommit` of its install phase (installed once beforehand, which
# favours A). Every build starts in a fresh container, so the caller gives a fresh HOME each run.
#
# Inputs (environment), as the article's buildspec has them:
#   SSH_KEY          the private key, as the buildspec's parameter-store block sets it
#   SOURCE_URL       ssh://user@host:port/path.git (the article's scp form cannot carry a port)
#   SOURCE_HOST, SOURCE_PORT   for ssh-keyscan
#   CACHE_DIR        where the bare mirror is kept between builds
#   REPO_NAME        the mirror is $CACHE_DIR/$REPO_NAME.git
#   CODECOMMIT_URL   codecommit::REGION://REPO (git-remote-codecommit; CODE_COMMIT_ENDPOINT may
#                    point it elsewhere)
set -euo pipefail

eval "$(ssh-agent -s)" >/dev/null
trap 'ssh-agent -k >/dev/null' EXIT
ssh-add -q - <<<"$SSH_KEY"

mkdir -p "$HOME/.ssh"
ssh-keyscan -p "$SOURCE_PORT" "$SOURCE_HOST" >>"$HOME/.ssh/known_hosts" 2>/dev/null
# OpenSSH reads the passwd entry's home, not $HOME: point it at the build's known_hosts.
export GIT_SSH_COMMAND="ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile=$HOME/.ssh/known_hosts"

cd "$CACHE_DIR"
if [ ! -d "$REPO_NAME.git" ]; then
  git clone --quiet --mirror "$SOURCE_URL" "$REPO_NAME.git"
  cd "$REPO_NAME.git"
  git remote add codecommit "$CODECOMMIT_URL"
else
  cd "$REPO_NAME.git"
  git fetch --quiet --prune origin
fi
git push --quiet --mirror codecommit
