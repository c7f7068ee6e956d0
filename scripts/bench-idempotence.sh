#!/usr/bin/env bash
# What idempotence costs the SDK producer (BENCHMARKS.md): one release
# broker of 2 shards and the load generator beside it, on the same cores.
# Each round starts a fresh broker and runs the SDK producer (100 B, 2
# partitions, 5 s after 1 s of warm-up) idempotent and plain, alternating
# which goes first, with acks=1 and with acks=all. Prints fio, every
# figure and the medians; loadgen JSON goes to target/bench-idempotence/.
# Usage: scripts/bench-idempotence.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench-idempotence
mkdir -p "$out"
rm -f "$out"/*.json
addr=127.0.0.1:19310
source scripts/bench-lib.sh
lg() { ./target/release/loadgen "$@" --bootstrap-server "$addr"; }

echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"

for r in $(seq "$rounds"); do
  start_broker target/release
  order="idempotent plain"; [ $((r % 2)) = 0 ] && order="plain idempotent"
  for acks in 1 all; do
    for m in $order; do
      flag=; [ "$m" = plain ] && flag=--no-idempotence
      lg produce --client sdk $flag --topic "p$m$acks" --partitions 2 --message-size 100 --acks "$acks" --warmup 1 --duration 5 --json "$out/$m-$acks-$r.json" >/dev/null 2>&1
    done
  done
  stop_broker
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for acks in ("1", "all"):
    med = {}
    for m in ("plain", "idempotent"):
        xs = [json.load(open(f"{out}/{m}-{acks}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
        med[m] = statistics.median(xs)
        print(f"acks={acks} {m}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[m]:.2f}")
    print(f"acks={acks} idempotent/plain: {med['idempotent'] / med['plain']:.3f} (of the medians)")
    # Each round's pair ran on the same fresh broker, one after the other:
    # the median of the rounds' ratios is less swayed by a noisy round.
    pairs = [json.load(open(f"{out}/idempotent-{acks}-{r}.json"))["msgs_per_sec"] / json.load(open(f"{out}/plain-{acks}-{r}.json"))["msgs_per_sec"] for r in range(1, rounds + 1)]
    print(f"acks={acks} idempotent/plain by round: " + ", ".join(f"{x:.2f}" for x in pairs) + f"; median {statistics.median(pairs):.3f}")
PY
