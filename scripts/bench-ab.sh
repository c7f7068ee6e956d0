#!/usr/bin/env bash
# Two builds side by side, alternated round by round in one sitting, as
# BENCHMARKS.md's before-and-after sections use: each round and build
# starts a fresh 2-shard broker of that build and runs that build's
# loadgen: produce (raw, then SDK; acks=1, 100 B, 2 partitions, 5 s),
# consume of the raw topic (raw, then SDK), and the console producer
# piping 1 M lines (acks=all). Prints fio, every figure and the medians.
# Build the old one in a worktree with its own target directory, e.g.
#   git worktree add ../old COMMIT && (cd ../old && CARGO_TARGET_DIR=../old-target cargo build --release -p shardlog -p shardlog-loadgen)
# Usage: scripts/bench-ab.sh OLD_RELEASE_DIR NEW_RELEASE_DIR [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A bin=([old]=$(realpath "$1") [new]=$(realpath "$2"))
rounds=${3:-5}
out=target/bench-ab
mkdir -p "$out"; rm -f "$out"/*.json "$out"/*.txt
addr=127.0.0.1:19322
source scripts/bench-lib.sh
seq 1 1000000 | sed 's/^/line-/' > "$out/lines.txt"
echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"
for r in $(seq "$rounds"); do
  order="old new"; [ $((r % 2)) = 0 ] && order="new old"
  for b in $order; do
    B=${bin[$b]}
    start_broker "$B"
    for c in raw sdk; do
      "$B/loadgen" produce --client "$c" --bootstrap-server "$addr" --topic "p$c" --partitions 2 --message-size 100 --acks 1 --warmup 1 --duration 5 --json "$out/produce-$c-$b-$r.json" >/dev/null 2>&1
    done
    n=$(python3 -c 'import json,sys; print(min(10000000, json.load(open(sys.argv[1]))["messages"]))' "$out/produce-raw-$b-$r.json")
    for c in raw sdk; do
      "$B/loadgen" consume --client "$c" --bootstrap-server "$addr" --topic praw --partitions 2 --messages "$n" --json "$out/consume-$c-$b-$r.json" >/dev/null 2>&1
    done
    "$B/shardlog" topics create --bootstrap-server "$addr" --topic cli --partitions 2 >/dev/null
    t0=$(date +%s.%N)
    "$B/shardlog" produce --bootstrap-server "$addr" --topic cli < "$out/lines.txt"
    t1=$(date +%s.%N)
    python3 -c "print(1e6/($t1-$t0))" > "$out/cli-$b-$r.txt"
    stop_broker
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("produce", "consume"):
    for c in ("raw", "sdk"):
        med = {}
        for b in ("old", "new"):
            xs = [json.load(open(f"{out}/{mode}-{c}-{b}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
            med[b] = statistics.median(xs)
            print(f"{mode} {c} {b}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[b]:.2f}")
        print(f"{mode} {c} new/old: {med['new'] / med['old']:.3f}")
med = {}
for b in ("old", "new"):
    xs = [float(open(f"{out}/cli-{b}-{r}.txt").read()) / 1e6 for r in range(1, rounds + 1)]
    med[b] = statistics.median(xs)
    print(f"console produce {b}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M lines/s, median {med[b]:.2f}")
print(f"console produce new/old: {med['new'] / med['old']:.3f}")
PY
