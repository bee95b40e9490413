#!/usr/bin/env bash
# Deploy backlog-mirror on AWS: build the binary, upload it, the mirror list and the template
# into the stack's bucket, create or update the CloudFormation stack of a Backlog space, and
# print the webhook URL to register in Backlog when it is new. See docs/deploy.md.
#
#   scripts/deploy.sh [OPTIONS]                   create the stack, or update it
#   scripts/deploy.sh --rotate-webhook-secret     the same, with a new webhook secret (new URL)
#   scripts/deploy.sh --verify                    check the deployed stack on AWS, end to end
#   scripts/deploy.sh --show-webhook-url          print the webhook URL (it holds the secret)
#   scripts/deploy.sh --delete                    empty the stack's buckets, delete the stack
#   scripts/deploy.sh --render-only FILE          write the template as it would be deployed
#
# Stack and AWS:
#   --stack-name NAME          CloudFormation stack (default: backlog-mirror)
#   --region REGION            AWS region (default: the AWS CLI's, from AWS_REGION or the profile)
#   --profile NAME             AWS CLI profile
#   --template FILE            template (default: cloudformation/backlog-mirror.yaml)
#   --env-file FILE            read options from FILE: KEY=VALUE lines, KEY being an option's
#                              variable below (BACKLOG_MIRROR_...); '#' comments, blank lines
#   --verify-timeout SECONDS   how long --verify waits for builds, metrics and alarms (1200)
#
# The binary (default: scripts/dist.sh builds it for --architecture, and it is uploaded to the
# stack's artifact bucket at bin/<sha256>/backlog-mirror-<rust target>; its SHA-256 is passed
# as BinarySha256, which the build checks before running it):
#   --binary PATH              use this binary instead of building one (a Linux ELF for
#                              --architecture; a static musl build is what CodeBuild can run)
#   --binary-url URL           BinaryUrl: the build downloads the binary from this https URL
#                              instead of the bucket; give --binary or --binary-sha256 with it
#   --binary-sha256 HEX        the SHA-256 of the binary at --binary-url
#
# The mirror list (the repositories the stack mirrors, a TOML file of [[mirror]] tables; see the
# README). It is uploaded like the binary, to config/<sha256>/mirrors.toml in the stack's bucket
# before the stack points at it, and its SHA-256 is passed as MirrorListSha256, which the build
# checks before the binary reads the list:
#   --mirror-list FILE         the list to deploy. Checked here only as far as a shell can
#                              without parsing TOML: UTF-8 text, at least one [[mirror]] table
#                              or a [discover] table (which needs --backlog-api-key-ssm), each
#                              [[mirror]] with a name (PROJECT/repo) given once. The binary
#                              checks the rest (every key, source, target, name) when a build
#                              starts; a bad list fails that build (exit 2, nothing fetched)
#                              and sends the alert
#   --backlog-project KEY      without --mirror-list: a list of one mirror, named PROJECT/repo,
#   --backlog-repo NAME        from these three flags with --backlog-space and --backlog-domain
#   --codecommit-repo NAME     (all three to create a stack; an existing stack keeps its list
#                              when none of them is given)
#
# Stack parameters (not given: a new stack takes the template's default, an existing stack keeps
# the value it has; give an empty value, e.g. --alert-email '', to reset an optional one):
#   --project-name NAME        ProjectName: prefix of every resource name (default backlog-mirror)
#   --backlog-space KEY        BacklogSpaceKey: the space the stack mirrors (required for a new
#                              stack)
#   --backlog-domain DOMAIN    BacklogDomain: backlog.jp or backlog.com
#   --host-key-fingerprint FP  BacklogHostKeyFingerprint: SHA256:... (repeatable, or comma
#                              separated; required for a new stack)
#   --ssh-key-ssm NAME         SshKeyParameterName: the SecureString holding the deploy key
#   --ssh-key-kms-key-arn ARN  SshKeyKmsKeyArn: the customer-managed key encrypting it, if any
#   --backlog-api-key-ssm NAME BacklogApiKeyParameterName: the SecureString holding the Backlog
#                              API key a [discover] table in the list uses ('' for none; the
#                              build may read this parameter only)
#   --backlog-api-key-kms-key-arn ARN
#                              BacklogApiKeyKmsKeyArn: the customer-managed key encrypting it,
#                              if any
#   --codecommit-prefix PREFIX CodeCommitRepositoryPrefix: the build may create, pull from and
#                              force-push to only CodeCommit repositories whose names start
#                              with it. Required for a new stack; '' grants every repository
#                              of the account and region, and is said so
#   --build-concurrency N      BuildConcurrency: builds that may run at once (1-100)
#   --sync-jobs N              SyncJobs: mirrors one build syncs at once (1-16)
#   --architecture ARCH        Architecture: arm64 or x86_64 (a new stack: arm64)
#   --compute-mode MODE        ComputeMode: Lambda or EC2
#   --build-size SIZE          BuildSize: Small, Medium or Large
#   --cache-mode MODE          CacheMode: None, S3 or EFS
#   --vpc-id ID                VpcId (EFS mode)
#   --private-subnet-ids A,B   PrivateSubnetId1 and PrivateSubnetId2 (EFS mode)
#   --allowed-source-ips LIST  AllowedSourceIps: CIDRs allowed to call the webhook, comma
#                              separated ('' allows any)
#   --throttle-rate-limit N    ThrottleRateLimit: webhook requests per second
#   --throttle-burst-limit N   ThrottleBurstLimit
#   --build-timeout-minutes N  BuildTimeoutMinutes
#   --schedule EXPR            ScheduleExpression: the build of every mirror that catches what a
#                              refused webhook left (default rate(10 minutes); '' turns it off)
#   --alert-email ADDRESS      AlertEmail: told when builds start failing and when they recover,
#                              and when no build ran for 3 hours ('' for none)
#   --mirror-metrics MODE      MirrorMetrics: none, or emf for per-mirror CloudWatch metrics
#                              (billed per mirror) and, with alerts, a per-mirror stale alarm
#   --stale-after-hours N      StaleAfterHours: with emf, alarm when a mirror's syncs have all
#                              failed for N hours in a row (1-3)
#   --log-retention-days N     LogRetentionDays
#   --parameter KEY=VALUE      any other template parameter (repeatable)
#
# Actions (flags only, never read from the environment or an env file):
#   --rotate-webhook-secret    generate a new webhook secret (WebhookSecret); the old URL stops
#                              working
#   --verify                   against the deployed stack: post Backlog's request shape through
#                              API Gateway's test-invoke-method (starting a build of the list's
#                              first mirror and, with alerts, one of a name the list lacks,
#                              which fails and alerts once), wait for both builds, check each
#                              alarm's metric has data and that the secret is in no stack
#                              answer; post a project webhook's issue event, which must start
#                              no build; check the Backlog API key's parameter is a SecureString
#                              the build can decrypt (its value is not read); one line per check
#                              (ok, FAILED, unconfirmed) on stdout.
#                              Exit 0 all confirmed, 1 a check failed, 3 some unconfirmed
#   --show-webhook-url         print the webhook URL, read from API Gateway (apigateway:GET)
#   --delete                   empty every bucket of the stack (all versions), delete the stack
#   --render-only FILE         write the rendered template to FILE ('-': stdout) and stop; no
#                              AWS call (the deployment id is computed with an empty secret)
#   -h, --help                 this text
#
# Every option OPT also reads BACKLOG_MIRROR_<OPT> from the environment, upper case with '_' for
# '-' (--backlog-space: BACKLOG_MIRROR_BACKLOG_SPACE); a flag wins over --env-file, which wins
# over the environment. Two more variables: BACKLOG_MIRROR_AWS_CLI (the AWS CLI v2 program,
# default aws) and BACKLOG_MIRROR_AWS_ENDPOINT_URL (passed to every AWS CLI call as
# --endpoint-url: for testing against moto or LocalStack, never needed on AWS).
#
# The webhook secret (48 hex digits, the URL's last path segment) is generated when the stack is
# created and kept by CloudFormation as a NoEcho parameter, in no output; later runs do not pass
# it, so it changes only with --rotate-webhook-secret. The URL is printed once, when the secret
# is new; --show-webhook-url reads it back from API Gateway, where it is the API's path.
#
# Order: a new stack is first created holding its bucket alone; the binary, the list and the
# template are uploaded to it, and only then does the stack become the whole template (read
# from the bucket: no TemplateBody size limit), so no build can start on a missing object. An
# update uploads first too, then changes the stack.
#
# A second run with the same arguments changes nothing: the binary, the list and the template
# are uploaded only when their content-addressed keys are missing (or hold other content), and
# CloudFormation's change set comes back empty, which is reported and not executed. A changed
# list is a new object and a new MirrorListSha256, so the stack is updated.
#
# Output: the webhook URL on stdout when it is new (--verify: its checks); progress on stderr.
# Exit codes: 0 done, 1 an AWS or build step failed, 2 bad usage (one line naming the flag;
# nothing was changed).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
readonly ROOT
readonly PROG=scripts/deploy.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
say() { printf '==> %s\n' "$*" >&2; }
# Bad input: one line naming the flag, exit 2, before anything on AWS changed.
usage_error() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}
fail() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Options that carry a value: the BACKLOG_MIRROR_ suffix, then the template parameter it sets
# (- for the script's own settings).
readonly VALUE_OPTIONS="
STACK_NAME -
REGION -
PROFILE -
TEMPLATE -
BINARY -
BINARY_SHA256 -
PROJECT_NAME ProjectName
LOG_RETENTION_DAYS LogRetentionDays
BACKLOG_SPACE BacklogSpaceKey
BACKLOG_DOMAIN BacklogDomain
BACKLOG_PROJECT -
BACKLOG_REPO -
MIRROR_LIST -
HOST_KEY_FINGERPRINT BacklogHostKeyFingerprint
SSH_KEY_SSM SshKeyParameterName
SSH_KEY_KMS_KEY_ARN SshKeyKmsKeyArn
BACKLOG_API_KEY_SSM BacklogApiKeyParameterName
BACKLOG_API_KEY_KMS_KEY_ARN BacklogApiKeyKmsKeyArn
CODECOMMIT_REPO -
CODECOMMIT_PREFIX CodeCommitRepositoryPrefix
BUILD_CONCURRENCY BuildConcurrency
SYNC_JOBS SyncJobs
STALE_AFTER_HOURS StaleAfterHours
ARCHITECTURE Architecture
COMPUTE_MODE ComputeMode
BUILD_SIZE BuildSize
CACHE_MODE CacheMode
VPC_ID VpcId
PRIVATE_SUBNET_IDS -
ALLOWED_SOURCE_IPS AllowedSourceIps
THROTTLE_RATE_LIMIT ThrottleRateLimit
THROTTLE_BURST_LIMIT ThrottleBurstLimit
BUILD_TIMEOUT_MINUTES BuildTimeoutMinutes
SCHEDULE ScheduleExpression
ALERT_EMAIL AlertEmail
MIRROR_METRICS MirrorMetrics
BINARY_URL BinaryUrl
VERIFY_TIMEOUT -
"
# Parameters the script sets itself; --parameter may not.
readonly MANAGED_PARAMETERS=" WebhookSecret BinarySha256 BinaryUrl Architecture ProjectName AllowedSourceIps MirrorListSha256 "

flag_of() { printf -- '--%s' "$(printf '%s' "$1" | tr 'A-Z_' 'a-z-')"; }
suffix_of() { printf '%s' "${1#--}" | tr 'a-z-' 'A-Z_'; }
# (A pattern match, not `grep -q` in a pipe: grep -q exits at the first match and, under
# pipefail, the writer's SIGPIPE would fail the test at random.)
is_value_option() { [[ "$VALUE_OPTIONS" == *$'\n'"$1 "* ]]; }
param_of() { printf '%s\n' "$VALUE_OPTIONS" | awk -v k="$1" '$1 == k { print $2 }'; }

# opt_<SUFFIX> holds an option's value, has_<SUFFIX> is 1 once it is set (an empty value counts).
set_opt() {
  printf -v "opt_$1" '%s' "$2"
  printf -v "has_$1" '%s' 1
}
has() {
  local v="has_$1"
  [ "${!v:-}" = 1 ]
}
opt() {
  local v="opt_$1"
  printf '%s' "${!v:-}"
}
# opt_or SUFFIX DEFAULT: the option's value if it was set (even to ''), else DEFAULT.
opt_or() {
  if has "$1"; then opt "$1"; else printf '%s' "$2"; fi
}

# ---------------------------------------------------------------------------------------------
# Arguments: flags, then --env-file, then the environment.

ROTATE=0
DELETE=0
VERIFY=0
SHOW_URL=0
RENDER_ONLY=""
ENV_FILE=""
EXTRA_PARAMETERS=()

need_value() {
  [ "$#" -ge 2 ] || usage_error "$1 needs a value (see $PROG --help)"
}

while [ "$#" -gt 0 ]; do
  arg="$1"
  value_given=0
  if [[ "$arg" == --*=* ]]; then
    value="${arg#*=}"
    arg="${arg%%=*}"
    value_given=1
  fi
  case "$arg" in
  -h | --help)
    usage
    exit 0
    ;;
  --rotate-webhook-secret | --delete | --verify | --show-webhook-url)
    [ "$value_given" = 0 ] || usage_error "$arg takes no value"
    case "$arg" in
    --delete) DELETE=1 ;;
    --verify) VERIFY=1 ;;
    --show-webhook-url) SHOW_URL=1 ;;
    *) ROTATE=1 ;;
    esac
    shift
    continue
    ;;
  --render-only | --env-file | --parameter)
    if [ "$value_given" = 0 ]; then
      need_value "$@"
      value="$2"
      shift
    fi
    case "$arg" in
    --render-only) RENDER_ONLY="$value" ;;
    --env-file) ENV_FILE="$value" ;;
    --parameter) EXTRA_PARAMETERS+=("$value") ;;
    esac
    shift
    continue
    ;;
  --*)
    suffix="$(suffix_of "$arg")"
    is_value_option "$suffix" || usage_error "unknown flag $arg (see $PROG --help)"
    if [ "$value_given" = 0 ]; then
      need_value "$@"
      value="$2"
      shift
    fi
    if [ "$suffix" = HOST_KEY_FINGERPRINT ] && has HOST_KEY_FINGERPRINT; then
      value="$(opt HOST_KEY_FINGERPRINT),$value"
    fi
    set_opt "$suffix" "$value"
    shift
    ;;
  *)
    usage_error "unexpected argument '$arg' (flags start with --; see $PROG --help)"
    ;;
  esac
done

if [ -n "$ENV_FILE" ]; then
  if ! [ -f "$ENV_FILE" ] || ! [ -r "$ENV_FILE" ]; then usage_error "--env-file: cannot read $ENV_FILE"; fi
  lineno=0
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%$'\r'}"
    [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?(BACKLOG_MIRROR_[A-Z0-9_]+)=(.*)$ ]] ||
      usage_error "--env-file: $ENV_FILE line $lineno is not KEY=VALUE with KEY a BACKLOG_MIRROR_ variable"
    key="${BASH_REMATCH[2]#BACKLOG_MIRROR_}"
    value="${BASH_REMATCH[3]}"
    if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    fi
    is_value_option "$key" ||
      usage_error "--env-file: $ENV_FILE line $lineno: BACKLOG_MIRROR_$key is not an option of $PROG (see --help)"
    has "$key" || set_opt "$key" "$value"
  done <"$ENV_FILE"
fi

for suffix in $(printf '%s\n' "$VALUE_OPTIONS" | awk 'NF { print $1 }'); do
  var="BACKLOG_MIRROR_$suffix"
  if ! has "$suffix" && [ -n "${!var+x}" ]; then
    set_opt "$suffix" "${!var}"
  fi
done

# ---------------------------------------------------------------------------------------------
# Validation: everything that can be checked without AWS, before any AWS call.

# Report a bad value under the name the user gave it: the flag, or the variable.
check() {
  local suffix="$1" pattern="$2" what="$3" value
  has "$suffix" || return 0
  value="$(opt "$suffix")"
  [[ "$value" =~ $pattern ]] || usage_error "$(flag_of "$suffix"): '$value' is not $what"
}

for suffix in $(printf '%s\n' "$VALUE_OPTIONS" | awk 'NF { print $1 }'); do
  if has "$suffix" && [[ "$(opt "$suffix")" =~ [[:cntrl:]] ]]; then
    usage_error "$(flag_of "$suffix"): control characters are not allowed"
  fi
done

check STACK_NAME '^[A-Za-z][A-Za-z0-9-]{0,127}$' 'a stack name (letters, digits, -; starts with a letter)'
check REGION '^[a-z]{2}(-[a-z]+)+-[0-9]+$' 'an AWS region such as ap-northeast-1'
check PROJECT_NAME '^[A-Za-z][A-Za-z0-9-]{1,40}$' 'a project name (2-41 letters, digits, -; starts with a letter)'
check LOG_RETENTION_DAYS '^(1|3|5|7|14|30|60|90|120|150|180|365|400|545|731|1827|3653)$' 'a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, ... days)'
check BACKLOG_SPACE '^[0-9A-Za-z-]+$' 'a Backlog space key'
check BACKLOG_DOMAIN '^backlog\.(jp|com)$' 'backlog.jp or backlog.com'
check BACKLOG_PROJECT '^[0-9A-Za-z_]+$' 'a Backlog project key'
check BACKLOG_REPO '^[0-9A-Za-z._-]+$' 'a Backlog repository name'
check HOST_KEY_FINGERPRINT '^SHA256:[0-9A-Za-z+/]{43}=?(,SHA256:[0-9A-Za-z+/]{43}=?)*$' 'SHA256:<43 base64 characters> (as ssh-keygen -lf prints)'
check SSH_KEY_SSM '^/[0-9A-Za-z_./-]+$' 'a Parameter Store name starting with /'
check SSH_KEY_KMS_KEY_ARN '^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-zA-Z-]+)?$' 'a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or empty'
check BACKLOG_API_KEY_SSM '^(/[0-9A-Za-z_./-]+)?$' 'a Parameter Store name starting with /, or empty'
check BACKLOG_API_KEY_KMS_KEY_ARN '^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-zA-Z-]+)?$' 'a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or empty'
check CODECOMMIT_REPO '^[0-9A-Za-z._-]{1,100}$' 'a CodeCommit repository name'
check ARCHITECTURE '^(arm64|x86_64)$' 'arm64 or x86_64'
check COMPUTE_MODE '^(Lambda|EC2)$' 'Lambda or EC2'
check BUILD_SIZE '^(Small|Medium|Large)$' 'Small, Medium or Large'
check CACHE_MODE '^(None|S3|EFS)$' 'None, S3 or EFS'
check VPC_ID '^vpc-[0-9a-f]{8,17}$' 'a VPC id (vpc-...)'
check PRIVATE_SUBNET_IDS '^subnet-[0-9a-f]{8,17},subnet-[0-9a-f]{8,17}$' 'two subnet ids, comma separated'
check THROTTLE_RATE_LIMIT '^[0-9]+(\.[0-9]+)?$' 'a number of requests per second'
check THROTTLE_BURST_LIMIT '^[1-9][0-9]*$' 'a positive integer'
check BUILD_TIMEOUT_MINUTES '^([5-9]|[1-5][0-9]|60)$' 'a number of minutes from 5 to 60'
check SCHEDULE '^((rate|cron)\(.+\))?$' 'rate(...), cron(...) or empty'
check ALERT_EMAIL '^([^@[:space:]"\\]+@[^@[:space:]"\\]+\.[^@[:space:]"\\]+)?$' 'an email address or empty'
check BINARY_URL '^https://[^[:space:]"\\]+$' 'an https:// URL'
check BINARY_SHA256 '^[0-9a-f]{64}$' '64 lowercase hex digits'
check CODECOMMIT_PREFIX '^[0-9A-Za-z._-]{0,99}$' 'the start of CodeCommit repository names (letters, digits, . _ -) or empty'
check BUILD_CONCURRENCY '^([1-9][0-9]?|100)$' 'a number of builds from 1 to 100'
check SYNC_JOBS '^([1-9]|1[0-6])$' 'a number of mirrors from 1 to 16'
check STALE_AFTER_HOURS '^[1-3]$' '1, 2 or 3 (CloudWatch evaluates the alarms on the latest 3 hours only)'
check MIRROR_METRICS '^(none|emf)$' 'none or emf'
check VERIFY_TIMEOUT '^[1-9][0-9]{0,4}$' 'a number of seconds from 1 to 99999'

# ---------------------------------------------------------------------------------------------
# The mirror list: a file, or one mirror written from the single-repository flags.

readonly MIRROR_NAME='^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$'
# What a shell reads of a TOML list: table headers, and simple key = "..." lines.
readonly ANY_HEADER='^[[:space:]]*\['
readonly MIRROR_HEADER='^[[:space:]]*\[\[[[:space:]]*mirror[[:space:]]*\]\][[:space:]]*(#.*)?$'
readonly DISCOVER_HEADER='^[[:space:]]*\[[[:space:]]*discover[[:space:]]*\][[:space:]]*(#.*)?$'
readonly NAME_KEY='^[[:space:]]*(name|"name"|'"'name'"')[[:space:]]*='
readonly SIMPLE_VALUE='^[^=]*=[[:space:]]*("([^"\\]*)"|'"'([^']*)'"')[[:space:]]*(#.*)?$'
LIST_FROM_FLAGS=0
if has BACKLOG_PROJECT || has BACKLOG_REPO || has CODECOMMIT_REPO; then LIST_FROM_FLAGS=1; fi

# check_mirror_list FILE: what a shell can check of a TOML mirror list without parsing TOML
# (table headers and simple name = "..." lines; a multi-line string could hide either, so with
# one in the file the names are not required). The binary checks the whole file at build time.
# LIST_DISCOVERS is 1 when the list has a [discover] table.
LIST_DISCOVERS=0
check_mirror_list() {
  local file="$1" size lineno=0 line header=0 named=0 mirrors=0 multiline=0 name names=$'\n' earlier
  if ! [ -f "$file" ] || ! [ -r "$file" ]; then usage_error "--mirror-list: cannot read $file"; fi
  size="$(wc -c <"$file" | tr -d ' ')"
  [ "$size" -le 1048576 ] || usage_error "--mirror-list: $file has $size bytes; a mirror list is a text file of at most 1 MiB"
  [ "$(tr -d '\000' <"$file" | wc -c | tr -d ' ')" = "$size" ] ||
    usage_error "--mirror-list: $file holds NUL bytes: it is not a TOML text file"
  if command -v iconv >/dev/null 2>&1 && ! iconv -f UTF-8 -t UTF-8 <"$file" >/dev/null 2>&1; then
    usage_error "--mirror-list: $file is not UTF-8 text, which TOML requires"
  fi
  if grep -q -e '"""' -e "'''" "$file"; then multiline=1; fi
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%$'\r'}"
    if [[ "$line" =~ $ANY_HEADER ]]; then
      if [ "$header" -gt 0 ] && [ "$named" = 0 ] && [ "$multiline" = 0 ]; then
        usage_error "--mirror-list: $file line $header: a [[mirror]] table without a name (name = \"PROJECT/repo\")"
      fi
      header=0
      if [[ "$line" =~ $DISCOVER_HEADER ]]; then LIST_DISCOVERS=1; fi
      if [[ "$line" =~ $MIRROR_HEADER ]]; then
        header=$lineno
        named=0
        mirrors=$((mirrors + 1))
      fi
    elif [ "$header" -gt 0 ] && [[ "$line" =~ $NAME_KEY ]]; then
      named=1
      [[ "$line" =~ $SIMPLE_VALUE ]] || continue
      name="${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
      if ! [[ "$name" =~ $MIRROR_NAME ]] || [ "${#name}" -gt 100 ]; then
        usage_error "--mirror-list: $file line $lineno: '$name' is not a mirror name (PROJECT/repo: letters, digits, '.', '_', '-'; at most 100)"
      fi
      if [[ "$names" == *$'\n'"$name "* ]]; then
        earlier="${names#*$'\n'"$name "}"
        usage_error "--mirror-list: $file line $lineno: the name '$name' is taken by line ${earlier%%$'\n'*}"
      fi
      names+="$name $lineno"$'\n'
    fi
  done <"$file"
  if [ "$header" -gt 0 ] && [ "$named" = 0 ] && [ "$multiline" = 0 ]; then
    usage_error "--mirror-list: $file line $header: a [[mirror]] table without a name (name = \"PROJECT/repo\")"
  fi
  [ "$mirrors" -gt 0 ] || [ "$LIST_DISCOVERS" = 1 ] ||
    usage_error "--mirror-list: $file has no [[mirror]] table and no [discover] table (see the README's mirror list)"
}

if has MIRROR_LIST; then
  [ "$LIST_FROM_FLAGS" = 0 ] ||
    usage_error "--mirror-list: give either the list or --backlog-project, --backlog-repo and --codecommit-repo (a list of one mirror), not both"
  check_mirror_list "$(opt MIRROR_LIST)"
fi

if has ALLOWED_SOURCE_IPS; then
  ips="$(opt ALLOWED_SOURCE_IPS | tr -d '[:space:]')"
  if [ -n "$ips" ]; then
    IFS=, read -r -a cidrs <<<"$ips"
    for cidr in "${cidrs[@]}"; do
      if [[ "$cidr" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]]; then
        for octet in "${BASH_REMATCH[@]:1:4}"; do
          [ "$((10#$octet))" -le 255 ] || usage_error "--allowed-source-ips: '$cidr' is not an IPv4 CIDR"
        done
        [ "$((10#${BASH_REMATCH[5]}))" -le 32 ] || usage_error "--allowed-source-ips: '$cidr' is not an IPv4 CIDR"
      elif ! [[ "$cidr" =~ ^[0-9A-Fa-f:]+:[0-9A-Fa-f:]*/[0-9]{1,3}$ ]]; then
        usage_error "--allowed-source-ips: '$cidr' is not a CIDR such as 203.0.113.0/24"
      fi
    done
  fi
  set_opt ALLOWED_SOURCE_IPS "$ips"
fi

for entry in ${EXTRA_PARAMETERS[@]+"${EXTRA_PARAMETERS[@]}"}; do
  [[ "$entry" =~ ^([A-Za-z0-9]+)=(.*)$ ]] || usage_error "--parameter: '$entry' is not KEY=VALUE"
  key="${BASH_REMATCH[1]}"
  [[ "$MANAGED_PARAMETERS" != *" $key "* ]] ||
    usage_error "--parameter: $key is set by $PROG itself (see --help for its flag)"
  for suffix in $(printf '%s\n' "$VALUE_OPTIONS" | awk -v k="$key" '$2 == k { print $1 }'); do
    usage_error "--parameter: $key has its own flag, $(flag_of "$suffix")"
  done
  if [ "$key" = PrivateSubnetId1 ] || [ "$key" = PrivateSubnetId2 ]; then
    usage_error "--parameter: $key has its own flag, --private-subnet-ids"
  fi
  if [[ "${BASH_REMATCH[2]}" =~ [[:cntrl:]] ]]; then
    usage_error "--parameter: control characters are not allowed"
  fi
done

actions=0
for action in "$DELETE" "$ROTATE" "$VERIFY" "$SHOW_URL"; do actions=$((actions + action)); done
[ -z "$RENDER_ONLY" ] || actions=$((actions + 1))
[ "$actions" -le 1 ] ||
  usage_error "--delete, --rotate-webhook-secret, --verify, --show-webhook-url and --render-only are separate actions: give one"

STACK_NAME="$(opt_or STACK_NAME backlog-mirror)"
TEMPLATE="$(opt_or TEMPLATE "$ROOT/cloudformation/backlog-mirror.yaml")"
if [ "$DELETE" = 0 ] && [ "$VERIFY" = 0 ] && [ "$SHOW_URL" = 0 ]; then
  if ! [ -f "$TEMPLATE" ] || ! [ -r "$TEMPLATE" ]; then usage_error "--template: cannot read $TEMPLATE"; fi
  grep -Eq '^  WebhookDeployment:' "$TEMPLATE" ||
    usage_error "--template: $TEMPLATE has no WebhookDeployment resource to render"
  for entry in ${EXTRA_PARAMETERS[@]+"${EXTRA_PARAMETERS[@]}"}; do
    key="${entry%%=*}"
    grep -Eq "^  $key:" "$TEMPLATE" || usage_error "--parameter: $key is not a parameter of $TEMPLATE"
  done
fi

# ---------------------------------------------------------------------------------------------
# Rendering: the API deployment's logical id carries a hash of what shapes the API, so any change
# to it creates a new deployment, which is what makes API Gateway serve the change.

sha256_of_stdin() {
  if command -v sha256sum >/dev/null; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi
}

# H = the first 12 hex digits of SHA-256 over the template's bytes followed by
# "\nWebhookSecret=<s>\nAllowedSourceIps=<cidrs, no spaces>\nProjectName=<p>\n".
deployment_hash() {
  { cat "$TEMPLATE" && printf '\nWebhookSecret=%s\nAllowedSourceIps=%s\nProjectName=%s\n' "$1" "$2" "$3"; } |
    sha256_of_stdin | cut -c1-12
}

# render OUT SECRET IPS PROJECT: every whole-word WebhookDeployment becomes WebhookDeployment<H>.
render() {
  local hash
  hash="$(deployment_hash "$2" "$3" "$4")"
  # The loop catches an occurrence whose leading boundary the previous match consumed.
  sed -E ':again
s/(^|[^A-Za-z0-9_])WebhookDeployment([^A-Za-z0-9_]|$)/\1WebhookDeployment'"$hash"'\2/
t again' "$TEMPLATE" >"$1"
}

if [ -n "$RENDER_ONLY" ]; then
  project="$(opt_or PROJECT_NAME backlog-mirror)"
  if [ "$RENDER_ONLY" = - ]; then
    render /dev/stdout "" "$(opt ALLOWED_SOURCE_IPS)" "$project"
  else
    render "$RENDER_ONLY" "" "$(opt ALLOWED_SOURCE_IPS)" "$project" ||
      usage_error "--render-only: cannot write $RENDER_ONLY"
  fi
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The binary: which one, and that it is what the stack's architecture runs.

rust_target_of() {
  case "$1" in
  arm64) echo aarch64-unknown-linux-musl ;;
  x86_64) echo x86_64-unknown-linux-musl ;;
  esac
}

# check_elf PATH ARCH FLAG: a 64-bit ELF file for ARCH.
check_elf() {
  local header machine want
  header="$(od -An -tx1 -N20 "$1" 2>/dev/null | tr -d ' \n')"
  [ "${header:0:10}" = 7f454c4602 ] || usage_error "$3: $1 is not a 64-bit Linux (ELF) executable"
  machine="${header:36:4}"
  case "$2" in
  arm64) want=b700 ;;
  x86_64) want=3e00 ;;
  esac
  [ "$machine" = "$want" ] ||
    usage_error "$3: $1 is not built for $2 (give --architecture to match it, or the binary for $2)"
}

if has BINARY; then
  BINARY="$(opt BINARY)"
  if ! [ -f "$BINARY" ] || ! [ -r "$BINARY" ]; then usage_error "--binary: cannot read $BINARY"; fi
fi
if has BINARY_URL && [ -n "$(opt BINARY_URL)" ]; then
  has BINARY || has BINARY_SHA256 ||
    usage_error "--binary-url: give --binary-sha256 (or --binary, to compute it) with it"
elif has BINARY_SHA256; then
  usage_error "--binary-sha256: only meaningful with --binary-url (the uploaded binary's checksum is computed)"
fi

# ---------------------------------------------------------------------------------------------
# AWS.

AWS_CLI="${BACKLOG_MIRROR_AWS_CLI:-aws}"
command -v "$AWS_CLI" >/dev/null 2>&1 ||
  usage_error "the AWS CLI v2 is required: '$AWS_CLI' was not found (install it, or set BACKLOG_MIRROR_AWS_CLI)"
cli_version="$("$AWS_CLI" --version 2>&1 | head -n1 || true)"
[[ "$cli_version" == aws-cli/2.* ]] ||
  usage_error "the AWS CLI v2 is required; '$AWS_CLI --version' says: ${cli_version:-nothing} (set BACKLOG_MIRROR_AWS_CLI to a v2)"
export AWS_PAGER=""
AWS_ARGS=()
has REGION && AWS_ARGS+=(--region "$(opt REGION)")
has PROFILE && AWS_ARGS+=(--profile "$(opt PROFILE)")
[ -n "${BACKLOG_MIRROR_AWS_ENDPOINT_URL:-}" ] && AWS_ARGS+=(--endpoint-url "$BACKLOG_MIRROR_AWS_ENDPOINT_URL")

WORK="$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/backlog-mirror-deploy.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

aws_() { "$AWS_CLI" "${AWS_ARGS[@]}" "$@"; }

# aws_or_fail WHAT ARGS...: run, and on failure exit 1 with the CLI's own last line.
aws_or_fail() {
  local what="$1" out
  shift
  if ! out="$(aws_ "$@" 2>"$WORK/stderr")"; then
    fail "$what: $(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
  fi
  printf '%s' "$out"
}

# The stack's status, or NONE.
stack_status() {
  local out
  if out="$(aws_ cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query 'Stacks[0].StackStatus' --output text 2>"$WORK/stderr")"; then
    printf '%s' "$out"
  elif grep -q 'does not exist' "$WORK/stderr"; then
    printf NONE
  else
    fail "reading stack $STACK_NAME: $(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
  fi
}

# stack_output KEY: the output's value, empty when absent.
stack_output() {
  local v
  v="$(aws_or_fail "reading the outputs of $STACK_NAME" cloudformation describe-stacks \
    --stack-name "$STACK_NAME" --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue | [0]" --output text)"
  [ "$v" = None ] && v=""
  printf '%s' "$v"
}

# The stack's current parameters, as cur_<Key> variables.
load_current_parameters() {
  local key value
  # (The last line has no newline: aws_or_fail prints what the CLI printed, trimmed.)
  while IFS=$'\t' read -r key value || [ -n "$key" ]; do
    [[ "$key" =~ ^[A-Za-z0-9]+$ ]] || continue
    printf -v "cur_$key" '%s' "$value"
    printf -v "curhas_$key" '%s' 1
  done < <(aws_or_fail "reading the parameters of $STACK_NAME" cloudformation describe-stacks \
    --stack-name "$STACK_NAME" --query 'Stacks[0].Parameters[].[ParameterKey,ParameterValue]' --output text)
}
cur() {
  local v="cur_$1"
  printf '%s' "${!v:-}"
}
curhas() {
  local v="curhas_$1"
  [ "${!v:-}" = 1 ]
}

# stack_resource LOGICAL_ID: its physical id, empty when the stack has no such resource.
stack_resource() {
  local v
  v="$(aws_or_fail "listing the resources of $STACK_NAME" cloudformation list-stack-resources \
    --stack-name "$STACK_NAME" \
    --query "StackResourceSummaries[?LogicalResourceId=='$1' && ResourceStatus!='DELETE_COMPLETE'].PhysicalResourceId | [0]" \
    --output text)"
  [ "$v" = None ] && v=""
  printf '%s' "$v"
}

# The webhook secret of a complete stack: the path part of WebhookResource. DescribeStacks does
# not show it (NoEcho, in no output); apigateway:GET on the API does, since it is the API's path.
read_secret() {
  local api resource secret
  api="$(stack_resource WebhookApi)"
  resource="$(stack_resource WebhookResource)"
  [ -n "$api" ] && [ -n "$resource" ] || fail "stack $STACK_NAME has no webhook API"
  secret="$(aws_or_fail "reading the webhook secret (apigateway:GET on API $api)" apigateway get-resource \
    --rest-api-id "$api" --resource-id "$resource" --query pathPart --output text)"
  [[ "$secret" =~ ^[0-9A-Za-z_-]{32,}$ ]] ||
    fail "the webhook resource of stack $STACK_NAME is not a secret path: run again with --rotate-webhook-secret"
  printf '%s' "$secret"
}

# Every S3 bucket of the stack (the artifact bucket, and a cache bucket if the template has one).
stack_buckets() {
  aws_or_fail "listing the resources of $STACK_NAME" cloudformation list-stack-resources \
    --stack-name "$STACK_NAME" \
    --query "StackResourceSummaries[?ResourceType=='AWS::S3::Bucket' && ResourceStatus!='DELETE_COMPLETE'].PhysicalResourceId" \
    --output text | tr '\t' '\n' | grep -v '^None$' | grep -v '^$' || true
}

# Delete every object version and delete marker, 1,000 at a time (a versioned bucket keeps
# every overwritten binary and cache object, and CloudFormation cannot delete a bucket with any).
empty_bucket() {
  local bucket="$1" batch count total=0
  while :; do
    # shellcheck disable=SC2016 # `true` is a JMESPath literal
    if ! batch="$(aws_ s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
      --query '{Objects: [Versions[].{Key: Key, VersionId: VersionId}, DeleteMarkers[].{Key: Key, VersionId: VersionId}][][], Quiet: `true`}' \
      2>"$WORK/stderr")"; then
      grep -q NoSuchBucket "$WORK/stderr" && return 0
      fail "listing s3://$bucket: $(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
    fi
    printf '%s' "$batch" >"$WORK/delete.json"
    count="$(grep -c '"VersionId"' "$WORK/delete.json" || true)"
    [ "$count" -gt 0 ] || break
    aws_or_fail "emptying s3://$bucket" s3api delete-objects --bucket "$bucket" \
      --delete "file://$WORK/delete.json" >/dev/null
    total=$((total + count))
  done
  say "emptied s3://$bucket ($total object versions and delete markers)"
}

if [ "$DELETE" = 1 ]; then
  status="$(stack_status)"
  if [ "$status" = NONE ]; then
    say "stack $STACK_NAME does not exist: nothing to delete"
    exit 0
  fi
  case "$status" in
  DELETE_IN_PROGRESS | *_COMPLETE | *_FAILED | REVIEW_IN_PROGRESS) ;;
  *) fail "stack $STACK_NAME is busy ($status): wait until it is done, then delete it" ;;
  esac
  for attempt in 1 2; do
    buckets="$(stack_buckets)"
    for bucket in $buckets; do empty_bucket "$bucket"; done
    say "deleting stack $STACK_NAME"
    aws_or_fail "deleting stack $STACK_NAME" cloudformation delete-stack --stack-name "$STACK_NAME" >/dev/null
    if aws_ cloudformation wait stack-delete-complete --stack-name "$STACK_NAME" 2>"$WORK/stderr"; then
      say "stack $STACK_NAME deleted"
      exit 0
    fi
    # A build that wrote to the cache while the bucket was emptied makes the delete fail: empty
    # the buckets again and retry once.
    if [ "$attempt" = 1 ]; then
      say "the delete did not finish ($(stack_status)); emptying the buckets again and retrying"
    fi
  done
  fail "deleting stack $STACK_NAME failed ($(stack_status)): see aws cloudformation describe-stack-events --stack-name $STACK_NAME"
fi

if ! account="$(aws_ sts get-caller-identity --query Account --output text 2>"$WORK/stderr")"; then
  if grep -q 'must specify a region' "$WORK/stderr"; then
    usage_error "--region: no region given, and the AWS CLI has none configured"
  fi
  fail "checking the AWS credentials: $(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
fi
# FULL: the stack is the whole template. BOOTSTRAP: it holds its bucket alone (a create that
# stopped before the whole template, or whose first update was rolled back). NONE: no stack.
status="$(stack_status)"
case "$status" in
NONE | REVIEW_IN_PROGRESS) STATE=NONE ;;
CREATE_COMPLETE | UPDATE_COMPLETE | UPDATE_ROLLBACK_COMPLETE | IMPORT_COMPLETE | IMPORT_ROLLBACK_COMPLETE)
  if [ -n "$(stack_resource WebhookResource)" ]; then STATE=FULL; else STATE=BOOTSTRAP; fi
  ;;
ROLLBACK_COMPLETE | ROLLBACK_FAILED | CREATE_FAILED | DELETE_FAILED)
  fail "stack $STACK_NAME is $status after a failed create or delete: see aws cloudformation describe-stack-events --stack-name $STACK_NAME, then remove it with $PROG --delete --stack-name $STACK_NAME"
  ;;
*) fail "stack $STACK_NAME is busy ($status): wait until it is done (aws cloudformation describe-stacks --stack-name $STACK_NAME), then run again" ;;
esac

# ---------------------------------------------------------------------------------------------
# --verify: what the tests of this repository cannot answer without AWS, asked of AWS once.

V_OK=0
V_FAILED=0
V_UNCONFIRMED=0
# verdict ok|FAILED|unconfirmed TEXT: one line on stdout per check.
verdict() {
  printf '%-11s %s\n' "$1" "$2"
  case "$1" in
  ok) V_OK=$((V_OK + 1)) ;;
  FAILED) V_FAILED=$((V_FAILED + 1)) ;;
  *) V_UNCONFIRMED=$((V_UNCONFIRMED + 1)) ;;
  esac
}

# urlencode TEXT: as a form field value (RFC 3986 unreserved characters kept).
urlencode() {
  local LC_ALL=C text="$1" out="" c i
  for ((i = 0; i < ${#text}; i++)); do
    c="${text:i:1}"
    case "$c" in
    [A-Za-z0-9._~-]) out+="$c" ;;
    *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s' "$out"
}

# first_mirror FILE: the name of the list's first [[mirror]] table, if written simply.
first_mirror() {
  local line in_mirror=0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    if [[ "$line" =~ $ANY_HEADER ]]; then
      in_mirror=0
      if [[ "$line" =~ $MIRROR_HEADER ]]; then in_mirror=1; fi
    elif [ "$in_mirror" = 1 ] && [[ "$line" =~ $NAME_KEY ]] && [[ "$line" =~ $SIMPLE_VALUE ]]; then
      printf '%s' "${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
      return 0
    fi
  done <"$1"
}

# test_invoke RESOURCE PATH BODY [CONTENT-TYPE]: API Gateway's test-invoke-method of POST on
# RESOURCE with Backlog's headers (a repository webhook's form, unless a content type is given),
# which calls the integration for real. Sets INV_STATUS, INV_BODY and INV_LOG (the execution log).
test_invoke() {
  local out type="${4:-application/x-www-form-urlencoded; charset=UTF-8}"
  local args=(apigateway test-invoke-method --rest-api-id "$V_API" --resource-id "$1" --http-method POST
    --headers "{\"Content-Type\": \"$type\", \"User-Agent\": \"Backlog Webhook\"}"
    --body "$3" --query '[to_string(status), body, log]' --output text)
  [ -z "$2" ] || args+=(--path-with-query-string "$2")
  if ! out="$(aws_ "${args[@]}" 2>"$WORK/stderr")"; then
    INV_STATUS=error
    INV_BODY="$(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
    INV_LOG=""
    return 0
  fi
  INV_STATUS="${out%%$'\t'*}"
  out="${out#*$'\t'}"
  INV_BODY="${out%%$'\t'*}"
  INV_BODY="${INV_BODY%$'\n'}"
  INV_LOG="${out#*$'\t'}"
}

# started WHAT: the verdict on the API's answer to the last test_invoke; STARTED is the build's
# id, empty when none started.
started() {
  STARTED=""
  if [ "$INV_STATUS" = 200 ] && [[ "$INV_BODY" =~ \"started\":\ *true ]] &&
    [[ "$INV_BODY" =~ \"build\":\ *\"([^\"]+)\" ]]; then
    STARTED="${BASH_REMATCH[1]}"
    verdict ok "the webhook answered 200 to $1: $INV_BODY"
  else
    verdict FAILED "the webhook answered $INV_STATUS to $1 (want 200 and a build): $INV_BODY"
  fi
}

# routed NAME: does the request CodeBuild received (test-invoke's log, from the mapped body to
# the endpoint's answer) name mirror NAME?
routed() {
  local mapped
  if [[ "$INV_LOG" != *"Endpoint request body after transformations:"* ]]; then
    verdict unconfirmed "which mirror the request named: the execution log shows no request body after transformations"
    return 0
  fi
  mapped="${INV_LOG#*Endpoint request body after transformations:}"
  mapped="${mapped%%Sending request*}"
  mapped="${mapped%%Endpoint response*}"
  mapped="$(printf '%s' "$mapped" | tr -s '\n\r\t' '   ')"
  mapped="${mapped//\\\//\/}"
  if [[ "$mapped" == *'"BACKLOG_MIRROR_REPO"'* ]] && [[ "$mapped" == *"\"value\": \"$1\""* ]]; then
    verdict ok "API Gateway took the form template for 'application/x-www-form-urlencoded; charset=UTF-8' and named mirror $1 in StartBuild"
  else
    verdict FAILED "the StartBuild request does not name mirror $1:$mapped"
  fi
}

# wait_build ID: its status once it ended, or IN_PROGRESS at the deadline.
wait_build() {
  local s
  while :; do
    s="$(aws_or_fail "reading build $1" codebuild batch-get-builds --ids "$1" \
      --query 'builds[0].buildStatus' --output text)"
    if [ "$s" != IN_PROGRESS ] || [ "$(date +%s)" -ge "$V_DEADLINE" ]; then break; fi
    sleep "$V_POLL"
  done
  printf '%s' "$s"
}

# judge_build ID WHAT WANT WHY: wait for the build of WHAT, and the verdict on its ending WANT.
judge_build() {
  local status
  status="$(wait_build "$1")"
  if [ "$status" = "$3" ]; then
    verdict ok "build $1 of $2 $3$4"
  elif [ "$status" = IN_PROGRESS ]; then
    verdict unconfirmed "build $1 of $2 still runs after $(opt_or VERIFY_TIMEOUT 1200) s"
  elif [ "$3" = SUCCEEDED ]; then
    verdict FAILED "build $1 of $2 ended $status: $(failed_phase "$1")"
  else
    verdict FAILED "build $1 of $2 ended $status, not $3"
  fi
}

# failed_phase ID: "PHASE: message" of the build's failed phase.
failed_phase() {
  aws_ codebuild batch-get-builds --ids "$1" --output text \
    --query "builds[0].phases[?phaseStatus=='FAILED'] | [0].[phaseType, contexts[0].message]" 2>/dev/null |
    tr '\t\n' '  ' || true
}

# log_tail ID: the last lines of the build's log, on stderr (for the reader, not a check).
log_tail() {
  local group stream logs
  logs="$(aws_ codebuild batch-get-builds --ids "$1" --output text \
    --query 'builds[0].logs.[groupName, streamName]' 2>/dev/null || true)"
  read -r group stream <<<"$logs"
  if [ -z "$group" ] || [ "$group" = None ] || [ -z "$stream" ] || [ "$stream" = None ]; then
    say "build $1 names no log stream"
    return 0
  fi
  say "the last lines of build $1 ($group $stream):"
  aws_ logs get-log-events --log-group-name "$group" --log-stream-name "$stream" --limit 15 \
    --query 'events[].message' --output text 2>/dev/null | tr '\t' '\n' | sed 's/^/  | /' >&2 || true
}

# ignored WHAT: the verdict on the API's answer to the last test_invoke, a project webhook's event
# that names no repository: 200, and no build (the template's BatchGetProjects, not StartBuild).
ignored() {
  if [ "$INV_STATUS" = 200 ] && [[ "$INV_BODY" =~ \"started\":\ *false ]] && [[ "$INV_BODY" == *'"ignored"'* ]]; then
    verdict ok "the webhook answered 200 to $1 and started no build: $(printf '%s' "$INV_BODY" | tr -s '\n' ' ')"
  else
    verdict FAILED "the webhook answered $INV_STATUS to $1 (want 200 and no build): $INV_BODY"
  fi
}

# api_key_readable NAME KMS-ARN: the verdict on the Backlog API key's parameter, from its
# description (its value is not read): a SecureString the build can decrypt.
api_key_readable() {
  local described type key arn
  if ! described="$(aws_ ssm describe-parameters --parameter-filters "Key=Name,Values=$1" \
    --query 'Parameters[0].[Type, KeyId]' --output text 2>"$WORK/stderr")"; then
    verdict unconfirmed "the Backlog API key's parameter $1: $(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)"
    return 0
  fi
  read -r type key <<<"$described"
  if [ "$type" = None ] || [ -z "$type" ]; then
    verdict FAILED "the Backlog API key's parameter $1 does not exist: put the key there as a SecureString (docs/deploy.md, A whole Backlog space)"
  elif [ "$type" != SecureString ]; then
    verdict FAILED "the Backlog API key's parameter $1 is a $type, not a SecureString"
  elif [ -z "$key" ] || [ "$key" = None ] || [ "$key" = alias/aws/ssm ]; then
    verdict ok "the Backlog API key's parameter $1 is a SecureString under the default aws/ssm key"
  elif [ -z "$2" ]; then
    verdict FAILED "the Backlog API key's parameter $1 is encrypted with $key, which the build may not use: give --backlog-api-key-kms-key-arn"
  else
    arn="$(aws_ kms describe-key --key-id "$key" --query KeyMetadata.Arn --output text 2>/dev/null || true)"
    if [ "$arn" = "$2" ]; then
      verdict ok "the Backlog API key's parameter $1 is a SecureString under $2, which the build may decrypt"
    elif [ -z "$arn" ]; then
      verdict unconfirmed "the Backlog API key's parameter $1 is encrypted with $key, which could not be described (kms:DescribeKey) to compare with $2"
    else
      verdict FAILED "the Backlog API key's parameter $1 is encrypted with $arn, not BacklogApiKeyKmsKeyArn $2"
    fi
  fi
}

# has_data ALARM: does the metric the alarm watches have data since the verification began?
has_data() {
  local namespace metric dimension value count described
  described="$(aws_or_fail "reading alarm $1" cloudwatch describe-alarms --alarm-names "$1" --output text \
    --query 'MetricAlarms[0].[MetricName, Namespace, Dimensions[0].Name, Dimensions[0].Value]')"
  read -r metric namespace dimension value <<<"$described"
  if [ "$metric" = None ]; then
    # A Metrics Insights alarm (MirrorMetrics emf): the mirror's metric, extracted from the log.
    count="$(aws_or_fail "listing metrics" cloudwatch list-metrics --namespace "BacklogMirror/$V_PROJECT" \
      --metric-name Succeeded --dimensions "Name=Mirror,Value=$V_MIRROR" --query 'length(Metrics)' --output text)"
    V_WATCHED="BacklogMirror/$V_PROJECT Succeeded (Mirror=$V_MIRROR)"
  else
    count="$(aws_or_fail "reading metric $metric" cloudwatch get-metric-statistics --namespace "$namespace" \
      --metric-name "$metric" --dimensions "Name=$dimension,Value=$value" --statistics Sum --period 60 \
      --start-time "$((V_START - 900))" --end-time "$(($(date +%s) + 300))" \
      --query 'length(Datapoints)' --output text)"
    V_WATCHED="$namespace $metric ($dimension=$value)"
  fi
  [ "${count:-0}" != None ] && [ "${count:-0}" -gt 0 ]
}

verify() {
  local list_sha payload build probe pending alarm leaked call out
  V_START="$(date +%s)"
  V_DEADLINE=$((V_START + $(opt_or VERIFY_TIMEOUT 1200)))
  V_POLL=$(($(opt_or VERIFY_TIMEOUT 1200) / 10))
  [ "$V_POLL" -le 15 ] || V_POLL=15
  [ "$V_POLL" -ge 1 ] || V_POLL=1
  load_current_parameters
  V_PROJECT="$(stack_output ProjectName)"
  V_API="$(stack_resource WebhookApi)"
  V_SECRET="$(read_secret)"
  list_sha="$(cur MirrorListSha256)"
  aws_or_fail "copying the stack's mirror list" s3 cp --only-show-errors \
    "s3://$(stack_output ArtifactBucketName)/config/$list_sha/mirrors.toml" "$WORK/mirrors.toml" >/dev/null
  V_MIRROR="$(first_mirror "$WORK/mirrors.toml")"
  [ -n "$V_MIRROR" ] || grep -Eq "$DISCOVER_HEADER" "$WORK/mirrors.toml" ||
    fail "cannot read a mirror's name in the stack's list (config/$list_sha/mirrors.toml)"

  # 1. Backlog's push for the first mirror, as Backlog sends it: one form field, payload, holding
  # the JSON, under a Content-Type with a charset (a repository's own URL when the name is not
  # PROJECT/repo). A list that only discovers names none to push.
  build=""
  if [ -z "$V_MIRROR" ]; then
    verdict unconfirmed "a push starting a build: the list has no [[mirror]] to name (it discovers its repositories); the schedule's builds show whether they sync"
  elif [[ "$V_MIRROR" =~ ^([A-Za-z0-9_]+)/([A-Za-z0-9._-]+)$ ]]; then
    payload="{\"before\": \"$(printf '0%.0s' {1..40})\", \"after\": \"$(printf '0%.0s' {1..40})\", \"ref\": \"refs/heads/main\", \"repository\": {\"url\": \"https://$(cur BacklogSpaceKey).$(cur BacklogDomain)/git/$V_MIRROR\", \"name\": \"${BASH_REMATCH[2]}\", \"description\": \"\"}, \"revisions\": []}"
    say "posting Backlog's push of $V_MIRROR through test-invoke-method (it starts a build)"
    test_invoke "$(stack_resource WebhookResource)" "" "payload=$(urlencode "$payload")"
  else
    say "posting to $V_MIRROR's own webhook URL through test-invoke-method (it starts a build)"
    test_invoke "$(stack_resource WebhookRepositoryResource)" "/$V_SECRET/$V_MIRROR" "payload=%7B%7D"
  fi
  if [ -n "$V_MIRROR" ]; then
    started "Backlog's push of $V_MIRROR"
    build="$STARTED"
    routed "$V_MIRROR"
  fi

  # 2. A project webhook's event about no repository (an issue updated, type 2), as Backlog posts
  # it (JSON): API Gateway must call BatchGetProjects for StartBuild (the template's override of
  # X-Amz-Target, which no test here can run on AWS) and answer 200 without a build.
  say "posting a project webhook's issue event through test-invoke-method (it must start no build)"
  test_invoke "$(stack_resource WebhookResource)" "" \
    '{"id": 1, "project": {"id": 1, "projectKey": "VERIFY", "name": "backlog-mirror --verify"}, "type": 2, "content": {"id": 1, "key_id": 1, "summary": "backlog-mirror --verify", "description": "", "changes": []}, "notifications": [], "createdUser": {"id": 1, "name": "backlog-mirror"}, "created": "2026-01-01T00:00:00Z"}' \
    application/json
  ignored "a project webhook's issue event"

  # 3. Discovery's API key, when the stack has one.
  [ -z "$(cur BacklogApiKeyParameterName)" ] ||
    api_key_readable "$(cur BacklogApiKeyParameterName)" "$(cur BacklogApiKeyKmsKeyArn)"

  # 4. With alarms, a build that must fail: a name no list holds (exit 2, nothing touched). It
  # gives FailedBuilds a datapoint and the failing alarm a reason to email once.
  probe=""
  if [ -n "$(stack_output AlertTopicArn)" ]; then
    say "posting a name not in the list, to fail one build on purpose (the failing alarm emails once, then clears)"
    test_invoke "$(stack_resource WebhookRepositoryResource)" "/$V_SECRET/backlog-mirror-verify/not-in-the-list" "payload=%7B%7D"
    started "a name not in the list"
    probe="$STARTED"
  fi

  if [ -n "$build" ]; then
    judge_build "$build" "$V_MIRROR" SUCCEEDED \
      ": the compute ran the buildspec (bash, its cache block), the binary and the list, and the mirror is in sync"
    log_tail "$build"
  fi
  [ -z "$probe" ] || judge_build "$probe" "a name not in the list" FAILED ", as it must (exit 2, nothing touched)"


  # 5. Each alarm's metric has data (CodeBuild publishes a few minutes after a build ends).
  for alarm in $(aws_or_fail "listing the resources of $STACK_NAME" cloudformation list-stack-resources \
    --stack-name "$STACK_NAME" --output text \
    --query "StackResourceSummaries[?ResourceType=='AWS::CloudWatch::Alarm'].PhysicalResourceId"); do
    until has_data "$alarm" || [ "$(date +%s)" -ge "$V_DEADLINE" ]; do sleep "$V_POLL"; done
    if has_data "$alarm"; then
      verdict ok "alarm $alarm: its metric $V_WATCHED has data"
    else
      verdict unconfirmed "alarm $alarm: its metric $V_WATCHED has no data after $(opt_or VERIFY_TIMEOUT 1200) s"
    fi
    if [ -n "$probe" ] && [[ "$alarm" == *-mirror-failing ]]; then
      until [ "$(aws_ cloudwatch describe-alarms --alarm-names "$alarm" --query 'MetricAlarms[0].StateValue' \
        --output text 2>/dev/null)" = ALARM ] || [ "$(date +%s)" -ge "$V_DEADLINE" ]; do sleep "$V_POLL"; done
      if [ "$(aws_ cloudwatch describe-alarms --alarm-names "$alarm" --query 'MetricAlarms[0].StateValue' \
        --output text 2>/dev/null)" = ALARM ]; then
        verdict ok "alarm $alarm went to ALARM after the failed build: the topic sent its email"
      else
        verdict unconfirmed "alarm $alarm did not go to ALARM after the failed build within $(opt_or VERIFY_TIMEOUT 1200) s"
      fi
    fi
  done
  if [ -n "$(stack_output AlertTopicArn)" ]; then
    pending="$(aws_or_fail "listing the alert subscriptions" sns list-subscriptions-by-topic \
      --topic-arn "$(stack_output AlertTopicArn)" --query 'Subscriptions[].SubscriptionArn' --output text)"
    if [[ "$pending" == *PendingConfirmation* ]]; then
      verdict unconfirmed "the alert email is not confirmed: no alert arrives until the link SNS sent is followed"
    else
      verdict ok "the alert email subscription is confirmed"
    fi
  fi

  # 6. The secret is in no answer of CloudFormation's (NoEcho, no output).
  leaked=""
  for call in describe-stacks describe-stack-events get-template; do
    out="$(aws_or_fail "reading stack $STACK_NAME" cloudformation "$call" --stack-name "$STACK_NAME" --output json)"
    [[ "$out" != *"$V_SECRET"* ]] || leaked+=" $call"
  done
  if [ -z "$leaked" ]; then
    verdict ok "the webhook secret shows in no CloudFormation answer (describe-stacks, describe-stack-events, get-template)"
  else
    verdict FAILED "the webhook secret shows in cloudformation$leaked"
  fi

  say "verify: $V_OK confirmed, $V_FAILED failed, $V_UNCONFIRMED unconfirmed"
  [ "$V_FAILED" = 0 ] || exit 1
  [ "$V_UNCONFIRMED" = 0 ] || exit 3
  exit 0
}

if [ "$SHOW_URL" = 1 ] || [ "$VERIFY" = 1 ]; then
  [ "$STATE" = FULL ] || fail "stack $STACK_NAME is not deployed ($status): run $PROG first"
  ENDPOINT="$(stack_output WebhookEndpoint)"
  [ -n "$ENDPOINT" ] || fail "stack $STACK_NAME has no WebhookEndpoint output: update it with $PROG first"
  if [ "$SHOW_URL" = 1 ]; then
    printf '%s%s\n' "$ENDPOINT" "$(read_secret)"
    exit 0
  fi
  verify
fi

# ---------------------------------------------------------------------------------------------
# Create or update.

CREATING=0
[ "$STATE" = FULL ] || CREATING=1
if [ "$CREATING" = 1 ]; then
  for required in BACKLOG_SPACE HOST_KEY_FINGERPRINT; do
    if [ -z "$(opt "$required")" ]; then
      usage_error "$(flag_of "$required") is required to create stack $STACK_NAME"
    fi
  done
  has CODECOMMIT_PREFIX ||
    usage_error "--codecommit-prefix is required to create stack $STACK_NAME: the start of the names of the CodeCommit repositories the build may create and force-push to ('' for every repository of the account)"
  PROJECT_NAME="$(opt_or PROJECT_NAME backlog-mirror)"
  ALLOWED_SOURCE_IPS="$(opt ALLOWED_SOURCE_IPS)"
  ARCHITECTURE="$(opt_or ARCHITECTURE arm64)"
else
  load_current_parameters
  PROJECT_NAME="$(opt_or PROJECT_NAME "$(cur ProjectName)")"
  ALLOWED_SOURCE_IPS="$(opt_or ALLOWED_SOURCE_IPS "$(cur AllowedSourceIps | tr -d '[:space:]')")"
  ARCHITECTURE="$(opt_or ARCHITECTURE "$(cur Architecture)")"
  ARCHITECTURE="${ARCHITECTURE:-arm64}"
fi
RUST_TARGET="$(rust_target_of "$ARCHITECTURE")"

# The webhook secret: a new one on create or rotation, else the stack's (which is not passed, so
# CloudFormation keeps it; it is only needed for the deployment hash).
if [ "$CREATING" = 1 ] || [ "$ROTATE" = 1 ]; then
  WEBHOOK_SECRET="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  [[ "$WEBHOOK_SECRET" =~ ^[0-9a-f]{48}$ ]] || fail "could not read 24 random bytes from /dev/urandom"
  PASS_SECRET=1
else
  WEBHOOK_SECRET="$(read_secret)"
  PASS_SECRET=0
fi

# The mirror list: the file given; else one mirror from the single-repository flags (on an
# existing stack, a stack from before mirror lists gives their old parameters); else the stack's
# list stays (MirrorListSha256 is not passed, so CloudFormation keeps it).
LIST_FILE=""
if has MIRROR_LIST; then
  LIST_FILE="$(opt MIRROR_LIST)"
  LIST_WHAT="$LIST_FILE"
elif [ "$LIST_FROM_FLAGS" = 1 ] || [ "$CREATING" = 1 ] || ! curhas MirrorListSha256; then
  list_project="$(opt_or BACKLOG_PROJECT "$(cur BacklogProjectKey)")"
  list_repo="$(opt_or BACKLOG_REPO "$(cur BacklogRepositoryName)")"
  list_target="$(opt_or CODECOMMIT_REPO "$(cur CodeCommitRepositoryName)")"
  for required in BACKLOG_PROJECT BACKLOG_REPO CODECOMMIT_REPO; do
    case "$required" in
    BACKLOG_PROJECT) value="$list_project" ;;
    BACKLOG_REPO) value="$list_repo" ;;
    CODECOMMIT_REPO) value="$list_target" ;;
    esac
    [ -n "$value" ] ||
      usage_error "$(flag_of "$required") is required for a list of one mirror (or give --mirror-list FILE)"
  done
  list_name="$list_project/$list_repo"
  if ! [[ "$list_name" =~ $MIRROR_NAME ]] || [ "${#list_name}" -gt 100 ]; then
    usage_error "--backlog-repo: the mirror name '$list_name' must start each part with a letter or digit and have at most 100 characters"
  fi
  list_prefix="$(opt_or CODECOMMIT_PREFIX "$(cur CodeCommitRepositoryPrefix)")"
  [[ "$list_target" == "$list_prefix"* ]] ||
    usage_error "--codecommit-repo: '$list_target' does not start with the CodeCommit prefix '$list_prefix', so the build could not push to it (--codecommit-prefix)"
  list_domain="$(opt_or BACKLOG_DOMAIN "$(cur BacklogDomain)")"
  LIST_FILE="$WORK/mirrors.toml"
  {
    printf '# The mirror list of one repository, written by scripts/deploy.sh from --backlog-project,\n'
    printf '# --backlog-repo and --codecommit-repo. Give --mirror-list FILE to deploy a list of your own.\n'
    printf '[defaults]\nbacklog-space = "%s"\nbacklog-domain = "%s"\n' \
      "$(opt_or BACKLOG_SPACE "$(cur BacklogSpaceKey)")" "${list_domain:-backlog.jp}"
    printf '\n[[mirror]]\nname = "%s"\nbacklog-project = "%s"\nbacklog-repo = "%s"\ncodecommit-repo = "%s"\n' \
      "$list_name" "$list_project" "$list_repo" "$list_target"
  } >"$LIST_FILE"
  LIST_WHAT="of one mirror, $list_name"
fi
# A list that discovers asks Backlog's API with the key the build may read: the stack's.
if [ "$LIST_DISCOVERS" = 1 ] && [ -z "$(opt_or BACKLOG_API_KEY_SSM "$(cur BacklogApiKeyParameterName)")" ]; then
  usage_error "--backlog-api-key-ssm: $LIST_FILE has a [discover] table, which needs the Backlog API key: give the Parameter Store SecureString holding it (the build may read only that parameter)"
fi
LIST_SHA256=""
if [ -n "$LIST_FILE" ]; then
  LIST_SHA256="$(sha256_of_stdin <"$LIST_FILE")"
  LIST_KEY="config/$LIST_SHA256/mirrors.toml"
fi

# The binary and where the build takes it from.
UPLOAD=1
if has BINARY_URL && [ -n "$(opt BINARY_URL)" ]; then
  UPLOAD=0
  BINARY_URL="$(opt BINARY_URL)"
else
  BINARY_URL=""
fi
if has BINARY; then
  check_elf "$BINARY" "$ARCHITECTURE" --binary
elif [ "$UPLOAD" = 1 ]; then
  [ -x "$ROOT/scripts/dist.sh" ] ||
    usage_error "--binary: scripts/dist.sh is missing, so give the binary to deploy"
  say "building backlog-mirror for $RUST_TARGET (scripts/dist.sh)"
  "$ROOT/scripts/dist.sh" --target "$RUST_TARGET" >&2 || fail "scripts/dist.sh --target $RUST_TARGET failed"
  BINARY="$ROOT/target/dist/backlog-mirror-$RUST_TARGET"
  [ -f "$BINARY" ] || fail "scripts/dist.sh did not produce $BINARY"
  check_elf "$BINARY" "$ARCHITECTURE" --binary
fi
if has BINARY; then
  BINARY_SHA256="$(sha256_of_stdin <"$BINARY")"
  if has BINARY_SHA256 && [ "$(opt BINARY_SHA256)" != "$BINARY_SHA256" ]; then
    usage_error "--binary-sha256: does not match the SHA-256 of --binary ($BINARY_SHA256)"
  fi
else
  BINARY_SHA256="$(opt BINARY_SHA256)"
fi
BINARY_KEY="bin/$BINARY_SHA256/backlog-mirror-$RUST_TARGET"

# Every flag is checked by now: what follows is progress, not usage.
[ -z "$LIST_SHA256" ] || say "mirror list $LIST_WHAT (sha256 $LIST_SHA256)"
if [ -z "$(opt_or CODECOMMIT_PREFIX "$(cur CodeCommitRepositoryPrefix)")" ]; then
  say "warning: --codecommit-prefix '': the build may create, pull from and force-push to every CodeCommit repository of account $account in this region"
fi

render "$WORK/template.yaml" "$WEBHOOK_SECRET" "$ALLOWED_SOURCE_IPS" "$PROJECT_NAME"
TEMPLATE_SHA256="$(sha256_of_stdin <"$WORK/template.yaml")"
TEMPLATE_KEY="templates/$TEMPLATE_SHA256/backlog-mirror.yaml"

# put_object BUCKET KEY FILE SHA256 WHAT: put FILE at its content-addressed KEY, unless an object
# there carries that checksum already.
put_object() {
  local bucket="$1" key="$2" file="$3" sha="$4" what="$5" stored size
  stored="$(aws_ s3api head-object --bucket "$bucket" --key "$key" \
    --query 'Metadata.sha256' --output text 2>/dev/null || true)"
  if [ "$stored" = "$sha" ]; then
    say "$what already in s3://$bucket/$key"
    return 0
  fi
  say "uploading the $what to s3://$bucket/$key"
  aws_or_fail "uploading the $what" s3 cp --only-show-errors --metadata "sha256=$sha" \
    "$file" "s3://$bucket/$key" >/dev/null
  size="$(aws_or_fail "checking the upload" s3api head-object --bucket "$bucket" --key "$key" \
    --query ContentLength --output text)"
  [ "$size" = "$(wc -c <"$file" | tr -d ' ')" ] || fail "the uploaded $what has $size bytes, not the file's"
}

# upload BUCKET: the binary (unless the build downloads it), the mirror list (unless the stack
# keeps its own) and the template the stack is changed to.
upload() {
  local kept
  if [ "$UPLOAD" = 1 ]; then put_object "$1" "$BINARY_KEY" "$BINARY" "$BINARY_SHA256" binary; fi
  if [ -n "$LIST_SHA256" ]; then
    put_object "$1" "$LIST_KEY" "$LIST_FILE" "$LIST_SHA256" "mirror list"
  else
    # The stack keeps its list: it must still be there, or every build would fail to copy it.
    kept="config/$(cur MirrorListSha256)/mirrors.toml"
    aws_ s3api head-object --bucket "$1" --key "$kept" >/dev/null 2>&1 ||
      fail "the stack's mirror list s3://$1/$kept is gone: deploy the list again with --mirror-list FILE"
  fi
  put_object "$1" "$TEMPLATE_KEY" "$WORK/template.yaml" "$TEMPLATE_SHA256" template
}

# The parameters passed: those given and those the script decides; the others keep the stack's
# value (UsePreviousValue) or, new to the stack, take the template's default.
json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}
OVERRIDDEN=" "
override() {
  printf -v "ov_$1" '%s' "$2"
  OVERRIDDEN+="$1 "
}
override ProjectName "$PROJECT_NAME"
override AllowedSourceIps "$ALLOWED_SOURCE_IPS"
override Architecture "$ARCHITECTURE"
override BinarySha256 "$BINARY_SHA256"
override BinaryUrl "$BINARY_URL"
if [ "$PASS_SECRET" = 1 ]; then override WebhookSecret "$WEBHOOK_SECRET"; fi
if [ -n "$LIST_SHA256" ]; then override MirrorListSha256 "$LIST_SHA256"; fi
for suffix in $(printf '%s\n' "$VALUE_OPTIONS" | awk 'NF { print $1 }'); do
  param="$(param_of "$suffix")"
  if [ "$param" = - ] || ! has "$suffix"; then continue; fi
  [[ "$MANAGED_PARAMETERS" == *" $param "* ]] && continue
  override "$param" "$(opt "$suffix")"
done
if has PRIVATE_SUBNET_IDS; then
  override PrivateSubnetId1 "$(opt PRIVATE_SUBNET_IDS | cut -d, -f1)"
  override PrivateSubnetId2 "$(opt PRIVATE_SUBNET_IDS | cut -d, -f2)"
fi
for entry in ${EXTRA_PARAMETERS[@]+"${EXTRA_PARAMETERS[@]}"}; do
  override "${entry%%=*}" "${entry#*=}"
done
{
  printf '['
  separator=""
  for key in $(awk '/^Parameters:/ { p = 1; next } p && /^[^ #]/ { p = 0 }
      p && /^  [A-Za-z0-9]+:/ { sub(/^  /, ""); sub(/:.*/, ""); print }' "$WORK/template.yaml"); do
    if [[ "$OVERRIDDEN" == *" $key "* ]]; then
      value="ov_$key"
      printf '%s{"ParameterKey": "%s", "ParameterValue": %s}' "$separator" "$key" "$(json_string "${!value}")"
    elif [ "$CREATING" = 0 ] && curhas "$key"; then
      printf '%s{"ParameterKey": "%s", "UsePreviousValue": true}' "$separator" "$key"
    else
      continue
    fi
    separator=", "
  done
  printf ']\n'
} >"$WORK/parameters.json"

# bootstrap_template OUT: a new stack's first version, the artifact bucket and its policy as the
# template defines them (so that the whole template, its first update, leaves them as they are)
# and the output naming the bucket. Nothing in it can start a build.
bootstrap_template() {
  {
    printf 'AWSTemplateFormatVersion: "2010-09-09"\n'
    printf 'Description: backlog-mirror, being created by scripts/deploy.sh (its bucket first, for the uploads)\n'
    printf 'Resources:\n'
    awk '/^Resources:/ { r = 1; next } r && /^[^ #]/ { r = 0 }
      r && /^  [A-Za-z0-9]+:/ { keep = ($1 == "ArtifactBucket:" || $1 == "ArtifactBucketPolicy:") }
      r && keep' "$TEMPLATE"
    printf 'Outputs:\n  ArtifactBucketName:\n    Value: !Ref ArtifactBucket\n'
  } >"$1"
}

# change_set TYPE TEMPLATE-ARGS...: create a change set and wait for it, then execute it and wait
# for the stack, unless it is empty (reported). CHANGED says which.
change_set() {
  local type="$1" name reason waiter
  shift
  name="deploy-$(date -u +%Y%m%dT%H%M%S)-$$"
  aws_or_fail "creating a change set of stack $STACK_NAME" cloudformation create-change-set \
    --stack-name "$STACK_NAME" --change-set-name "$name" --change-set-type "$type" \
    --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM "$@" >/dev/null
  if ! aws_ cloudformation wait change-set-create-complete --stack-name "$STACK_NAME" \
    --change-set-name "$name" 2>"$WORK/stderr"; then
    reason="$(aws_ cloudformation describe-change-set --stack-name "$STACK_NAME" --change-set-name "$name" \
      --query StatusReason --output text 2>/dev/null || true)"
    case "$reason" in
    *"didn't contain changes"* | *"No updates are to be performed"*)
      aws_ cloudformation delete-change-set --stack-name "$STACK_NAME" --change-set-name "$name" >/dev/null 2>&1 || true
      say "stack $STACK_NAME is up to date: no change set executed"
      CHANGED=0
      return 0
      ;;
    esac
    fail "the change set of stack $STACK_NAME failed: ${reason:-$(grep -v '^[[:space:]]*$' "$WORK/stderr" | tail -n1)}"
  fi
  aws_or_fail "executing the change set of stack $STACK_NAME" cloudformation execute-change-set \
    --stack-name "$STACK_NAME" --change-set-name "$name" >/dev/null
  waiter=stack-update-complete
  [ "$type" = UPDATE ] || waiter=stack-create-complete
  aws_ cloudformation wait "$waiter" --stack-name "$STACK_NAME" 2>"$WORK/stderr" ||
    fail "deploying stack $STACK_NAME failed ($(stack_status)): see aws cloudformation describe-stack-events --stack-name $STACK_NAME"
  CHANGED=1
}

if [ "$STATE" = NONE ]; then
  say "creating stack $STACK_NAME in account $account: its bucket first"
  bootstrap_template "$WORK/bootstrap.yaml"
  change_set CREATE --template-body "file://$WORK/bootstrap.yaml"
fi
BUCKET="$(stack_output ArtifactBucketName)"
[ -n "$BUCKET" ] || fail "stack $STACK_NAME has no ArtifactBucketName output to upload to"
upload "$BUCKET"

# The template, read by CloudFormation from the bucket (up to 1 MB; a TemplateBody takes 51,200
# bytes): its regional virtual-hosted URL, region and partition from the stack's id.
stack_id="$(aws_or_fail "reading stack $STACK_NAME" cloudformation describe-stacks \
  --stack-name "$STACK_NAME" --query 'Stacks[0].StackId' --output text)"
IFS=: read -r _ partition _ region _ <<<"$stack_id"
suffix=amazonaws.com
[ "$partition" != aws-cn ] || suffix=amazonaws.com.cn
if [ "$CREATING" = 1 ]; then
  say "making stack $STACK_NAME the whole template: the build, the webhook API, the schedule"
else
  say "updating stack $STACK_NAME in account $account"
fi
change_set UPDATE --template-url "https://$BUCKET.s3.$region.$suffix/$TEMPLATE_KEY" \
  --parameters "file://$WORK/parameters.json"
[ "$CHANGED" = 0 ] || say "stack $STACK_NAME deployed"

ENDPOINT="$(stack_output WebhookEndpoint)"
[ -n "$ENDPOINT" ] || fail "stack $STACK_NAME has no WebhookEndpoint output"
if [ "$PASS_SECRET" = 0 ]; then
  say "the webhook URL is unchanged: $ENDPOINT<secret> ($PROG --show-webhook-url prints it)"
  exit 0
fi
if [ "$CREATING" = 1 ]; then
  say "webhook URL, printed this once ($PROG --show-webhook-url reads it back; register it in Backlog: Project settings > Git > the repository > Webhook):"
else
  say "the webhook secret was rotated: register the new URL in Backlog; the old one now gets 403. The new URL, printed this once:"
fi
printf '%s%s\n' "$ENDPOINT" "$WEBHOOK_SECRET"
