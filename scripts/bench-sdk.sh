#!/usr/bin/env bash
# Runs the SDK-beside-raw benchmark of BENCHMARKS.md: one release broker
# of 2 shards and the load generator beside it, on the same cores. Each
# round starts a fresh broker and measures, alternating which client goes
# first: produce (acks=1, 100 B, 2 partitions) through the raw client and
# through the SDK, then consume of the raw client's topic through each (20 M
# messages, or what the raw producer stored if that is less). Prints
# every figure and the medians; loadgen JSON goes to target/bench-sdk/.
# Usage: scripts/bench-sdk.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench-sdk
mkdir -p "$out"
rm -f "$out"/*.json
addr=127.0.0.1:19300
# The data of a round is gigabytes: gone once the round is measured.
source scripts/bench-lib.sh
lg() { ./target/release/loadgen "$@" --bootstrap-server "$addr"; }

echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"

for r in $(seq "$rounds"); do
  start_broker target/release
  order="raw sdk"; [ $((r % 2)) = 0 ] && order="sdk raw"
  for c in $order; do
    lg produce --client "$c" --topic "p$c" --partitions 2 --message-size 100 --acks 1 --warmup 1 --duration 5 --json "$out/produce-$c-$r.json" >/dev/null 2>&1
  done
  # At most what the raw producer stored (its measured messages; the
  # warmup's come on top), so a slow sitting cannot leave a consumer
  # waiting for messages that were never sent.
  n=$(python3 -c 'import json,sys; print(min(20000000, json.load(open(sys.argv[1]))["messages"]))' "$out/produce-raw-$r.json")
  for c in $order; do
    lg consume --client "$c" --topic praw --partitions 2 --messages "$n" --json "$out/consume-$c-$r.json" >/dev/null 2>&1
  done
  stop_broker
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("produce", "consume"):
    med = {}
    for c in ("raw", "sdk"):
        xs = [json.load(open(f"{out}/{mode}-{c}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
        med[c] = statistics.median(xs)
        print(f"{mode} {c}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[c]:.2f}")
    print(f"{mode} sdk/raw: {med['sdk'] / med['raw']:.2f}x")
PY
