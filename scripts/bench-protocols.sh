#!/usr/bin/env bash
# The Kafka path beside the native one, in one sitting: each round starts
# a fresh 2-shard broker and runs loadgen produce (acks=1, 100 B,
# 2 partitions, 5 s) then consume of what it stored, through the native
# protocol and through Kafka's (--protocol kafka), alternating which goes
# first. Prints fio, every figure, the medians and kafka/native.
# Usage: scripts/bench-protocols.sh RELEASE_DIR [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "$1")
rounds=${2:-5}
out=target/bench-protocols
mkdir -p "$out"; rm -f "$out"/*.json
addr=127.0.0.1:19323
source scripts/bench-lib.sh
echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"
for r in $(seq "$rounds"); do
  order="native kafka"; [ $((r % 2)) = 0 ] && order="kafka native"
  start_broker "$B"
  for p in $order; do
    "$B/loadgen" produce --protocol "$p" --bootstrap-server "$addr" --topic "t$p" --partitions 2 --message-size 100 --acks 1 --warmup 1 --duration 5 --json "$out/produce-$p-$r.json" >/dev/null 2>&1
    n=$(python3 -c 'import json,sys; print(min(10000000, json.load(open(sys.argv[1]))["messages"]))' "$out/produce-$p-$r.json")
    "$B/loadgen" consume --protocol "$p" --bootstrap-server "$addr" --topic "t$p" --partitions 2 --messages "$n" --json "$out/consume-$p-$r.json" >/dev/null 2>&1
  done
  stop_broker
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("produce", "consume"):
    med = {}
    for p in ("native", "kafka"):
        xs = [json.load(open(f"{out}/{mode}-{p}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
        med[p] = statistics.median(xs)
        print(f"{mode} {p}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[p]:.2f}")
    print(f"{mode} kafka/native: {med['kafka'] / med['native']:.3f}")
PY
