#!/usr/bin/env bash
# systemd-analyze verify for deploy/systemd/ units (usage: verify_units.sh UNIT…). verify insists
# that every ExecStart binary exists, so the units are checked with the install prefix
# /opt/neurohub/bin put to a scratch folder of stand-in executables; nothing else is changed.
# The template neurohub-web@.service is verified as its instance neurohub-web@8001.service.
set -euo pipefail
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$WORK/units"
for b in gunicorn celery neurohub; do
  printf '#!/bin/sh\nexit 0\n' > "$WORK/bin/$b"
  chmod +x "$WORK/bin/$b"
done
names=()
for unit in "$@"; do
  name=$(basename "$unit")
  sed "s|/opt/neurohub/bin/|$WORK/bin/|g" "$unit" > "$WORK/units/$name"
  case "$name" in
    *@.service) ln -s "$name" "$WORK/units/${name%@.service}@8001.service"; name=${name%@.service}@8001.service ;;
  esac
  names+=("$WORK/units/$name")
done
cd "$WORK/units"
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "${names[@]}"
