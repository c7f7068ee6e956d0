#!/usr/bin/env bash
# Runs the replication benchmarks of BENCHMARKS.md: three release brokers
# on this host (one shard each, the quorum among them) and the load
# generator beside them, all on the same cores. For each round it measures
# RF1 and RF3 in the same sitting: saturation with 100 B messages in
# batches of 1000 (acks=1 and acks=all), then end-to-end latency at
# 100K msg/s with acks=all. Results (loadgen JSON) go to target/bench-repl/.
# Usage: scripts/bench-replication.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench-repl
mkdir -p "$out"
base=19400
voters="1@127.0.0.1:$((base + 11)),2@127.0.0.1:$((base + 12)),3@127.0.0.1:$((base + 13))"
boot="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
pids=()
start_cluster() {
  pids=()
  for i in 1 2 3; do
    rm -rf "$out/data$i"
    ./target/release/shardlog broker --data-dir "$out/data$i" --listen "127.0.0.1:$((base + i))" --shards 1 \
      --node-id "$i" --quorum-voters "$voters" --metrics-listen 127.0.0.1:0 2>"$out/broker$i.log" &
    pids+=($!)
  done
  for _ in $(seq 100); do
    n=$(./target/release/shardlog cluster info --bootstrap-server "$boot" 2>/dev/null | grep -c $'\tlive' || true)
    [ "$n" = 3 ] && return
    sleep 0.2
  done
  echo "the cluster did not start" >&2; exit 1
}
# The data of a round is gigabytes: gone once the round is measured.
stop_cluster() { kill -TERM "${pids[@]}"; wait "${pids[@]}" || true; rm -rf "$out"/data1 "$out"/data2 "$out"/data3; }
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
lg() { ./target/release/loadgen "$@" --bootstrap-server "127.0.0.1:$((base + 1))"; }

echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"

for r in $(seq "$rounds"); do
  start_cluster
  for rf in 1 3; do
    lg produce --topic "sat$rf" --replication-factor "$rf" --partitions 3 --message-size 100 --batch-size 1000 --acks 1 --warmup 2 --duration 10 --json "$out/sat-rf$rf-acks1-$r.json"
    lg produce --topic "all$rf" --replication-factor "$rf" --partitions 3 --message-size 100 --batch-size 1000 --acks all --warmup 2 --duration 10 --json "$out/sat-rf$rf-acksall-$r.json"
    lg e2e --topic "e2e$rf" --replication-factor "$rf" --partitions 3 --message-size 100 --batch-size 100 --rate 100000 --acks all --warmup 2 --duration 10 --json "$out/e2e-rf$rf-$r.json"
  done
  stop_cluster
done
