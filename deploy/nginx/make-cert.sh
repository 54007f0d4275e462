#!/bin/sh
# First start of the on-prem stack: a self-signed certificate for nginx when none is mounted.
# Replace tls.crt/tls.key in the certs volume (or bind-mount your own) for a real one.
set -eu
DIR=${1:-/certs}
CN=${TLS_COMMON_NAME:-neurohub.local}
if [ -s "$DIR/tls.crt" ] && [ -s "$DIR/tls.key" ]; then
  echo "certificate present: $DIR/tls.crt"
  exit 0
fi
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$CN" \
  -addext "subjectAltName=DNS:$CN,DNS:localhost,IP:127.0.0.1" \
  -keyout "$DIR/tls.key" -out "$DIR/tls.crt"
chmod 644 "$DIR/tls.crt"
echo "self-signed certificate made for $CN: $DIR/tls.crt"
