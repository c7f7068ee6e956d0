#!/usr/bin/env bash
# Builds a static shardlog binary (glibc, crt-static: glommio does not
# build for musl) and the image `shardlog:dev` around it, FROM scratch:
# no base image is pulled. Usage: docker/build.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-shardlog:dev}
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p shardlog
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# Without debug information: the image carries what runs.
objcopy --strip-debug target/x86_64-unknown-linux-gnu/release/shardlog "$ctx/shardlog"
# /data as the image holds it: owned by uid and gid 10001, writable by
# the group (copied as a directory's contents, so its mode is kept).
mkdir -p "$ctx/rootfs" && mkdir -m 0770 "$ctx/rootfs/data"
cp docker/Dockerfile "$ctx/"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag: $(docker image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"
