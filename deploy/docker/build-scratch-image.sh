#!/usr/bin/env bash
# Builds the lokilab runtime image FROM scratch from a binary built here, for
# machines that have a Docker engine but cannot pull base images. The image
# is the one Dockerfile builds; see Dockerfile.scratch for the layout.
#
#   deploy/docker/build-scratch-image.sh [TAG]        default lokilab:local
#
# LOKILAB_BINARY=path uses a binary already built with CGO_ENABLED=0
# instead of building one.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-lokilab:local}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

mkdir -p "$ctx/usr/bin"
if [ -n "${LOKILAB_BINARY:-}" ]; then
  cp "$LOKILAB_BINARY" "$ctx/usr/bin/lokilab"
else
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/usr/bin/lokilab" ./cmd/lokilab
fi
mkdir -p "$ctx/etc/ssl/certs" "$ctx/data/store" "$ctx/data/kafka" "$ctx/tmp"
chmod 1777 "$ctx/tmp"
cp deploy/docker/rootfs/etc/passwd deploy/docker/rootfs/etc/group "$ctx/etc/"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/"
else
  echo "no /etc/ssl/certs/ca-certificates.crt here: the image cannot verify TLS (MinIO over http is fine)" >&2
  : > "$ctx/etc/ssl/certs/ca-certificates.crt"
fi
cp Dockerfile.scratch "$ctx/Dockerfile"

# The classic builder when BuildKit's buildx plugin is missing (Debian's
# docker.io has none): FROM scratch needs nothing BuildKit adds.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
docker build -q -t "$tag" "$ctx"
echo "built $tag"
