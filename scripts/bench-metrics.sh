#!/usr/bin/env bash
# What metrics cost (BENCHMARKS.md), on one release broker of 2 shards
# with the load generator beside it, on the same cores:
# 1. a scrape's size and time with 10,000 partitions (one topic), with
#    the default bound on per-partition series and with it raised to
#    10,000 (median of 20 scrapes each);
# 2. loadgen's produce (100 B, 2 partitions, acks=1, 5 s after 1 s of
#    warm-up) with a scrape every second beside none, alternating which
#    goes first, on a fresh broker per round.
# Usage: scripts/bench-metrics.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench-metrics
mkdir -p "$out"
rm -f "$out"/*.json
addr=127.0.0.1:19320
metrics=127.0.0.1:19321
source scripts/bench-lib.sh

echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"

scrapes() {
  python3 - "$metrics" "$1" <<'PY'
import statistics, sys, time, urllib.request
addr, label = sys.argv[1], sys.argv[2]
times, size = [], 0
for _ in range(20):
    t = time.perf_counter()
    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=30).read()
    times.append(time.perf_counter() - t)
    size = len(body)
lines = body.count(b"\n")
print(f"{label}: {size / 1024:.0f} KiB, {lines} lines; median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
PY
}

echo "== a scrape with 10,000 partitions"
for bound in 2000 10000; do
  printf 'metrics_max_partitions = %s\n' "$bound" >"$out/metrics.toml"
  start_broker target/release --metrics-listen "$metrics" --config "$out/metrics.toml"
  ./target/release/shardlog topics create --topic many --partitions 10000 --bootstrap-server "$addr" >/dev/null
  scrapes "10,000 partitions, metrics_max_partitions $bound"
  stop_broker
done

echo "== produce with a scrape every second beside none"
for r in $(seq "$rounds"); do
  order="scraped plain"; [ $((r % 2)) = 0 ] && order="plain scraped"
  for m in $order; do
    start_broker target/release --metrics-listen "$metrics"
    scraper=
    if [ "$m" = scraped ]; then
      # One process scraping every second, as a Prometheus server does.
      python3 - "$metrics" <<'PY' &
import sys, time, urllib.request
while True:
    time.sleep(1)
    try:
        urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read()
    except OSError:
        pass
PY
      scraper=$!
    fi
    ./target/release/loadgen produce --bootstrap-server "$addr" --topic "m$m" --partitions 2 --message-size 100 --acks 1 --warmup 1 --duration 5 --json "$out/$m-$r.json" >/dev/null 2>&1
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null && wait "$scraper" 2>/dev/null || true
    stop_broker
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for m in ("plain", "scraped"):
    xs = [json.load(open(f"{out}/{m}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
    med[m] = statistics.median(xs)
    print(f"{m}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[m]:.2f}")
pairs = [json.load(open(f"{out}/scraped-{r}.json"))["msgs_per_sec"] / json.load(open(f"{out}/plain-{r}.json"))["msgs_per_sec"] for r in range(1, rounds + 1)]
print(f"scraped/plain: {med['scraped'] / med['plain']:.3f} (of the medians); by round " + ", ".join(f"{x:.2f}" for x in pairs) + f", median {statistics.median(pairs):.3f}")
PY
