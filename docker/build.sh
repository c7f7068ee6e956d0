#!/usr/bin/env bash
# Builds a static shardlog binary (glibc, crt-static: glommio does not
# build for musl) and the image `shardlog:dev` from it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p shardlog
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp target/x86_64-unknown-linux-gnu/release/shardlog "$ctx/"
cp docker/Dockerfile "$ctx/"
docker build -t shardlog:dev "$ctx"
