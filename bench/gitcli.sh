#!/usr/bin/env bash
# Side C of the benchmark: plain git, the floor backlog-mirror is held to. The same
# commands as the article (`git clone --mirror` or `git fetch --prune`, then `git push --mirror`)
# without its per-build set-up (ssh-agent, ssh-keyscan, git-remote-codecommit's Python): the key
# and known_hosts come as files, and git signs for CodeCommit through a credential helper, the
# one git-native way (here backlog-mirror's own helper, as B's git push uses; the AWS CLI's
# `aws codecommit credential-helper` does the same job slower).
#
# Inputs (environment):
#   GIT_SSH_COMMAND    ssh with the key file and known_hosts
#   SOURCE_URL         ssh://user@host:port/path.git
#   CACHE_DIR, REPO_NAME   the bare mirror is $CACHE_DIR/$REPO_NAME.git
#   TARGET_URL         https://HOST:PORT/v1/repos/NAME
#   CREDENTIAL_HELPER  the backlog-mirror binary
set -euo pipefail

export GIT_CONFIG_COUNT=3
export GIT_CONFIG_KEY_0=credential.helper GIT_CONFIG_VALUE_0="!'$CREDENTIAL_HELPER' credential-helper"
export GIT_CONFIG_KEY_1=credential.useHttpPath GIT_CONFIG_VALUE_1=true
export GIT_CONFIG_KEY_2=http.proactiveAuth GIT_CONFIG_VALUE_2=basic

cd "$CACHE_DIR"
if [ ! -d "$REPO_NAME.git" ]; then
  git clone --quiet --mirror "$SOURCE_URL" "$REPO_NAME.git"
  cd "$REPO_NAME.git"
else
  cd "$REPO_NAME.git"
  git fetch --quiet --prune origin
fi
git push --quiet --mirror "$TARGET_URL"
