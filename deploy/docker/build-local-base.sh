#!/usr/bin/env bash
# Build a local stand-in for the `python:3.11-slim` base image from Debian packages, for machines that
# cannot pull from a container registry (air-gapped builders, CI without registry access).
#
#   deploy/docker/build-local-base.sh [IMAGE]          # default IMAGE: localhost/modelport-base:bookworm
#   podman build --build-arg BASE_IMAGE=localhost/modelport-base:bookworm -f deploy/docker/Dockerfile .
#
# Needs root, debootstrap and podman (or docker: CONTAINER_TOOL=docker). The result is Debian bookworm
# "minbase" plus python3 (3.11), venv support and CA certificates - what the Dockerfile expects of its base:
# a Debian-like system with `python` on PATH that can create a venv.
#
# Environment:
#   DEBIAN_MIRROR   apt mirror for debootstrap (default: the first URI in /etc/apt/sources.list.d/debian.sources,
#                   else http://deb.debian.org/debian)
#   EXTRA_CA_BUNDLE a PEM bundle to trust inside the image (e.g. a TLS-intercepting proxy's CA); it replaces the
#                   image's bundle and PIP_CERT points at it, so `pip install` works behind such a proxy
#   CONTAINER_TOOL  podman (default) or docker
#   PODMAN_OPTS     extra global options for podman, e.g. "--storage-driver vfs"
set -euo pipefail

IMAGE="${1:-localhost/modelport-base:bookworm}"
SUITE="${SUITE:-bookworm}"
CONTAINER_TOOL="${CONTAINER_TOOL:-podman}"
PODMAN_OPTS="${PODMAN_OPTS:-}"

if [[ -z "${DEBIAN_MIRROR:-}" ]]; then
    DEBIAN_MIRROR="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi

command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install debootstrap" >&2; exit 2; }
command -v "$CONTAINER_TOOL" >/dev/null || { echo "$CONTAINER_TOOL not found" >&2; exit 2; }

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"

echo "debootstrap $SUITE from $DEBIAN_MIRROR ..." >&2
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$workdir/debootstrap.log" 2>&1 \
    || { tail -20 "$workdir/debootstrap.log" >&2; exit 1; }

changes=(--change "ENV=LANG=C.UTF-8" --change "CMD=[\"python3\"]")
if [[ -n "${EXTRA_CA_BUNDLE:-}" ]]; then
    cp "$EXTRA_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    changes+=(--change "ENV=PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
fi
# Leave apt's lists out, as the official slim images do.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

# shellcheck disable=SC2086  # PODMAN_OPTS is a list of options
tar -C "$rootfs" -c . | "$CONTAINER_TOOL" $PODMAN_OPTS import "${changes[@]}" - "$IMAGE" >/dev/null
echo "$IMAGE"
