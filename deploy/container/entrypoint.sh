#!/bin/sh
# The image's one entry: the first argument names the role (Dockerfile, compose files, Railway,
# ECS task definitions). Runs under tini (PID 1), which forwards SIGTERM: gunicorn stops
# gracefully, Celery does a warm shutdown, the relay finishes its pass. Anything else is exec'd
# as given (`neurohub create-user …`, `bash`).
set -eu
DATA=${NEUROHUB_DATA_DIR:-/var/lib/neurohub}
celery_app="celery -A workers.main"
role=${1:-web}
[ $# -gt 0 ] && shift
# Prometheus' multiprocess folder of this container's service (web/metrics/core.py): gunicorn's
# workers and a Celery pool write their metrics there; emptied at every start. The exporters of
# worker, worker-io, relay and beat listen on METRICS_PORT (compose: 9200, METRICS_HOST=0.0.0.0).
metrics_dir() {
  PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-/tmp/neurohub-metrics}
  export PROMETHEUS_MULTIPROC_DIR
  rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
}
case "$role" in
  web)
    metrics_dir
    # Keep-alive: gunicorn's default 2 s, under nginx (its upstream keepalive_timeout is 1s). A
    # proxy must drop an idle connection before gunicorn does, or it reuses one gunicorn has just
    # closed (502): behind an ALB (idle timeout 60 s) set GUNICORN_CMD_ARGS="--keep-alive 75".
    exec gunicorn -c python:web.gunicorn_conf -w "${WEB_WORKERS:-2}" -k gthread \
      --threads "${WEB_THREADS:-4}" -b "${API_HOST:-0.0.0.0}:${API_PORT:-8000}" \
      --graceful-timeout 10 --access-logfile - "$@" 'web:create_app()' ;;
  # Without mingle and gossip (worker-to-worker sync of revokes and clocks, which nothing here
  # uses): with Redis a worker could hang in "mingle: searching for neighbors" and then ignore
  # SIGTERM until it was killed.
  worker)
    metrics_dir
    exec $celery_app worker -Q completions,default -n "fast@%h" --without-mingle \
      --without-gossip -c "${WORKER_CONCURRENCY:-2}" -l INFO "$@" ;;
  worker-io)
    metrics_dir
    exec $celery_app worker -Q printing,io -n "io@%h" --without-mingle --without-gossip -c 1 \
      --prefetch-multiplier 1 -l INFO "$@" ;;
  beat)
    metrics_dir
    exec $celery_app beat -l INFO -s "$DATA/celerybeat-schedule" "$@" ;;
  relay)
    metrics_dir
    exec neurohub relay "$@" ;;
  flower)
    # Every interface of the container, which is the compose network only (the service
    # publishes no port): nginx is the way in at /flower, Prometheus scrapes /flower/metrics
    # from inside. FLOWER_BASIC_AUTH (user:password) is read by Flower itself; nginx sends it
    # once the person's NeuroHub login passed (deploy/RUNBOOK.md "Flower").
    # --max_tasks: Flower keeps its task list in memory (default 100,000), within 256 MB.
    exec $celery_app flower --address=0.0.0.0 --port=5555 \
      --url_prefix=flower --max_tasks=10000 "$@" ;;
  migrate)
    exec neurohub db upgrade "$@" ;;
  printer-sim)
    # Binds every interface: the workers reach it as tcp://printer-sim:9100 (test/demo only).
    exec neurohub printer-sim --host 0.0.0.0 --port 9100 --control-port 9101 --no-render \
      --dir "$DATA/printed-labels" "$@" ;;
  healthcheck)
    # HTTP 200 from this container's own port: `healthcheck [PORT [PATH]]` (web: /healthz).
    exec python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=3)' \
      "${1:-${API_PORT:-8000}}" "${2:-/healthz}" ;;
  *)
    exec "$role" "$@" ;;
esac
