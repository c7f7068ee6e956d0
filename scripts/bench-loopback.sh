#!/usr/bin/env bash
# Runs the loopback benchmarks of BENCHMARKS.md: a release broker with two
# shards and the load generator on the same host, each figure three times.
# Results (loadgen JSON) go to target/bench/. Usage: scripts/bench-loopback.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench
mkdir -p "$out"
addr=127.0.0.1:19092
lg() { ./target/release/loadgen "$@" --bootstrap-server "$addr"; }
start_broker() {
  rm -rf "$out/data"
  ./target/release/shardlog broker --data-dir "$out/data" --listen "$addr" --shards 2 2>"$out/broker.log" &
  broker=$!
  for _ in $(seq 50); do grep -q "listening on" "$out/broker.log" && return; sleep 0.1; done
  echo "broker did not start" >&2; exit 1
}
stop_broker() { kill -TERM "$broker"; wait "$broker"; }
trap 'kill $broker 2>/dev/null || true' EXIT

for i in 1 2 3; do
  start_broker
  lg produce --topic t --partitions 2 --message-size 100 --batch-size 1000 --acks 1 --warmup 2 --duration 10 --json "$out/produce-100B-$i.json"
  lg consume --topic t --partitions 2 --consumers 2 --messages 20000000 --json "$out/consume-100B-$i.json"
  lg consume --topic t --partitions 2 --consumers 1 --fetch-max-bytes 65536 --messages 2000000 --json "$out/fetch-latency-$i.json"
  lg produce --topic r1 --partitions 2 --message-size 100 --batch-size 100 --rate 100000 --acks 1 --warmup 2 --duration 10 --json "$out/produce-rate-acks1-$i.json"
  lg produce --topic ra --partitions 2 --message-size 100 --batch-size 100 --rate 100000 --acks all --warmup 2 --duration 10 --json "$out/produce-rate-acksall-$i.json"
  lg e2e --topic e --partitions 2 --message-size 100 --batch-size 100 --rate 100000 --acks all --warmup 2 --duration 10 --json "$out/e2e-$i.json" --hgrm "$out/e2e-$i.hgrm" --plot "$out/e2e-$i.svg"
  lg produce --topic k --partitions 2 --message-size 1024 --batch-size 100 --acks 1 --warmup 2 --duration 10 --json "$out/produce-1KiB-$i.json"
  stop_broker
done
