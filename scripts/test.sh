#!/usr/bin/env bash
# The test command (README.md, CI): installs what the black-box tests run
# against when it is missing (kcat and Prometheus from Debian's packages;
# confluent-kafka and kafka-python from PyPI, pinned), then runs
# `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kcat >/dev/null 2>&1; then
  echo "installing kcat (Debian's package) for tests/kafka.rs" >&2
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq kcat >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (Debian's package) for tests/metrics.rs" >&2
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null
fi
if ! python3 -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
  echo "installing confluent-kafka and kafka-python for tests/kafka.rs" >&2
  python3 -m pip install --quiet --disable-pip-version-check confluent-kafka==2.16.1 kafka-python==3.0.12
fi
exec cargo test "$@"
