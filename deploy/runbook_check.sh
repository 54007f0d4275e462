#!/usr/bin/env bash
# Runs the sh blocks of deploy/RUNBOOK.md (from "## 0." on) as written, in order, against scratch
# resources: two PostgreSQL databases (on-prem with demo data, AWS empty), a Redis server of its
# own (on a free port; two of its databases), local directories and a moto_server S3 endpoint. "Start"/"stop" steps (prose in the runbook)
# are `neurohub up` in the background here. Usage (repository root): bash deploy/runbook_check.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
# Absolute (the steps below run in other folders), without resolving the venv's symlink.
PY_BIN=$(cd "$(dirname "$PY")" && pwd)
PY="$PY_BIN/$(basename "$PY")"
export PATH="$PY_BIN:$PATH" PYTHONPATH="$ROOT"
PG_ADMIN=${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}
PG_BASE=${PG_ADMIN%/*}
WORK=$(mktemp -d /tmp/nh-runbook-XXXXXX)
TAG=$(basename "$WORK" | tr -dc 'a-z0-9' | tail -c 8)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port); ONPREM_PORT=$(free_port); AWS_PORT=$(free_port); REDIS_PORT=$(free_port)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 3
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS nh_rb_onprem_$TAG WITH (FORCE)" \
       -c "DROP DATABASE IF EXISTS nh_rb_aws_$TAG WITH (FORCE)" || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql -q "$PG_ADMIN" -c "CREATE DATABASE nh_rb_onprem_$TAG" -c "CREATE DATABASE nh_rb_aws_$TAG"
# A Redis of its own: the shared one's databases belong to the test suites.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$WORK" --logfile "$WORK/redis.log" --pidfile "$WORK/redis.pid"
for _ in $(seq 300); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }
AWS_CREDS="AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_CONFIG_FILE=/dev/null
AWS_SHARED_CREDENTIALS_FILE=/dev/null"
cat > "$WORK/onprem.env" <<EOF
NEUROHUB_ENV=production
SECRET_KEY=runbook-check-secret-key-0123456789-abcdefghij
FLOWER_BASIC_AUTH=ops:runbook
DATABASE_URL=postgresql+psycopg://${PG_BASE#*://}/nh_rb_onprem_$TAG
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/1
NEUROHUB_DATA_DIR=$WORK/onprem
FIRMWARE_DIR=$WORK/onprem/firmware
BACKUP_DIR=$WORK/onprem/backups
API_HOST=127.0.0.1
API_PORT=$ONPREM_PORT
USE_S3=false
EOF
cat > "$WORK/aws.env" <<EOF
NEUROHUB_ENV=production
SECRET_KEY=runbook-check-secret-key-0123456789-abcdefghij
FLOWER_BASIC_AUTH=ops:runbook
DATABASE_URL=postgresql+psycopg://${PG_BASE#*://}/nh_rb_aws_$TAG
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
NEUROHUB_DATA_DIR=$WORK/aws
USE_S3=true
S3_BUCKET=neurohub-mes-runbook
AWS_REGION=ap-northeast-2
AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
$AWS_CREDS
API_HOST=127.0.0.1
API_PORT=$AWS_PORT
EOF

echo "== scratch S3 (moto_server :$S3_PORT), on-prem database with demo data"
(cd "$WORK" && exec setsid "$PY_BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT" > moto.log 2>&1) &
PIDS+=($!)
# Up to a minute: in a fresh venv its first start compiles moto and botocore (seen: over 10 s).
for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$S3_PORT/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$S3_PORT/" >/dev/null || { echo "moto_server did not start:" >&2
  cat "$WORK/moto.log" >&2; exit 1; }
mapfile -t AWS_CREDS_ARGS <<< "$AWS_CREDS"
env "${AWS_CREDS_ARGS[@]}" "$PY" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3_PORT', region_name='ap-northeast-2').create_bucket(Bucket='neurohub-mes-runbook', CreateBucketConfiguration={'LocationConstraint': 'ap-northeast-2'})"

cd "$WORK"
# The runbook's blocks from "## 0." on, one file each.
"$PY" - "$ROOT/deploy/RUNBOOK.md" "$WORK" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = text[text.index("## 0."):]
for i, block in enumerate(re.findall(r"```sh\n(.*?)```", text, re.S)):
    open(f"{sys.argv[2]}/block{i}.sh", "w").write(re.sub(r"(?m)^   ", "", block))
EOF
# shellcheck source=/dev/null
run_block() { echo "== runbook block $1"; sed 's/^/   | /' "$WORK/block$1.sh"; . "$WORK/block$1.sh"; }
# shellcheck source=/dev/null
start() { (cd "$WORK" && set -a && . "./$1.env" && set +a && exec setsid neurohub up > "$WORK/$1-up.log" 2>&1) & UP_PID=$!; PIDS+=("$UP_PID")
  for _ in $(seq 120); do curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0; sleep 0.5; done
  tail -30 "$WORK/$1-up.log"; return 1; }
stop() { kill -INT "$UP_PID"; wait "$UP_PID" || true; echo "   (stopped $1)"; }

run_block 0     # on_prem / on_aws, ONPREM_DB, AWS_DB, LOCAL_DIRS
run_block 1     # check_line
# shellcheck disable=SC2034  # read by the runbook's blocks, sourced above and below
ONPREM_BASE=http://127.0.0.1:$ONPREM_PORT AWS_BASE=http://127.0.0.1:$AWS_PORT
# shellcheck disable=SC2034
NH_USER=supervisor NH_PASS=super-demo-pw NH_PRODUCT=NH-100 NH_STEP=SMT NH_STATION=ST-01
on_prem neurohub db upgrade 2>&1 | tail -1
on_prem env NEUROHUB_ENV=development neurohub seed-demo
echo "== on-prem in production before the migration"
start onprem "$ONPREM_PORT"; BASE="$ONPREM_BASE" check_line; stop onprem

echo "== 1. migration on-prem -> AWS"
run_block 2     # dump
run_block 3     # restore into the AWS database + db upgrade
run_block 4     # storage sync local -> s3
start aws "$AWS_PORT"
run_block 5     # check AWS
stop aws

echo "== 2. rollback AWS -> on-prem"
run_block 6     # dump AWS
run_block 7     # restore on-prem --force
run_block 8     # storage sync s3 -> local
start onprem "$ONPREM_PORT"
run_block 9     # db upgrade + check on-prem
stop onprem
LOTS=$(psql -tA "${ONPREM_DB/+psycopg/}" -c "select count(*) from lots where lot_no like 'LOT-%'")
echo "== on-prem now holds $LOTS lots: its own first check, the AWS check, and the rollback check"
test "$LOTS" = 3
echo "RUNBOOK CHECK PASSED"
