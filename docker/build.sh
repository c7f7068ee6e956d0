#!/usr/bin/env bash
# Builds a static shardlog binary (glibc, crt-static: glommio does not
# build for musl) and the image `shardlog:dev` around it, FROM scratch:
# no base image is pulled. Usage: docker/build.sh [--prometheus] [TAG]
# --prometheus also builds shardlog-prometheus:dev for compose.yaml's
# `monitoring` profile: this host's Prometheus (Debian's package, installed
# if missing) and the C library it links, FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
with_prometheus=
if [ "${1:-}" = --prometheus ]; then with_prometheus=1; shift; fi
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

if [ -n "$with_prometheus" ]; then
  if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null
  fi
  pctx=$(mktemp -d)
  trap 'rm -rf "$ctx" "$pctx"' EXIT
  bin=$(command -v prometheus)
  mkdir -p "$pctx/rootfs/bin" "$pctx/rootfs/etc/prometheus" && mkdir -p -m 0755 "$pctx/data/prometheus"
  cp "$bin" "$pctx/rootfs/bin/prometheus"
  # Its shared libraries and loader, at the paths it was linked against.
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$pctx/rootfs$(dirname "$lib")" && cp -L "$lib" "$pctx/rootfs$lib"
  done
  cat >"$pctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs /
# The data directory, owned by the user Prometheus runs as (copied as a
# directory's contents, so the directory itself takes the owner).
COPY --chown=65534:65534 data /
USER 65534:65534
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
  docker build -q -t shardlog-prometheus:dev "$pctx" >/dev/null
  echo "built shardlog-prometheus:dev ($("$bin" --version 2>&1 | head -1))"
fi
