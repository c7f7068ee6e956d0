#!/usr/bin/env bash
# The test command (README.md, CI): installs the stock Kafka clients the
# Kafka-protocol tests run against when they are missing (kcat from
# Debian's packages), then runs `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kcat >/dev/null 2>&1; then
  echo "installing kcat (Debian's package) for tests/kafka.rs" >&2
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq kcat >/dev/null
fi
exec cargo test "$@"
