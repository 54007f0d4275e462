#!/usr/bin/env bash
# Makes the local base image the tests build the Dockerfile from (no registry here): Debian
# bookworm minbase from the configured Debian mirror, with Python 3.11 and its venv module,
# imported with `podman import`. Cached under a content key: the tag is a hash of this script, so
# a second run only prints the tag. Prints the image name (BASE_IMAGE for `podman build`).
set -euo pipefail
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,ca-certificates
KEY=$( { cat "$0"; echo "$MIRROR"; } | sha256sum | cut -c1-16)
IMAGE=localhost/neurohub-base:bookworm-$KEY
if podman image exists "$IMAGE"; then echo "$IMAGE"; exit 0; fi
ROOTFS=$(mktemp -d /tmp/nh-base-XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOTFS" "$MIRROR" >&2
# What a slim image leaves out: apt lists, caches, translations, docs and man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/*
tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >&2
echo "$IMAGE"
