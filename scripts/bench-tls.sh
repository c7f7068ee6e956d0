#!/usr/bin/env bash
# What TLS costs produce and consume (BENCHMARKS.md): one release broker of
# 2 shards and the load generator beside it, on the same cores. Each round
# starts a fresh broker in plaintext and one with TLS on its client
# listener (certificates from docker/gen-certs.sh, P-256; rustls picks
# TLS 1.3 with AES-128-GCM), alternating which goes first, and runs the
# raw client: produce (100 B messages in batches of 1000, 2 partitions,
# acks=1, 5 s after 1 s of warm-up), then consume 10 M of them from the
# beginning. Prints fio, every figure, the medians and their ratios;
# loadgen JSON goes to target/bench-tls/.
# Usage: scripts/bench-tls.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release -p shardlog -p shardlog-loadgen
out=target/bench-tls
mkdir -p "$out"
rm -f "$out"/*.json
addr=127.0.0.1:19320
source scripts/bench-lib.sh
docker/gen-certs.sh "$out/certs" >/dev/null 2>&1
tls_flags=(--tls-cert "$out/certs/server.crt" --tls-key "$out/certs/server.key")

echo "== fio (the disk's limits, in the same sitting)"
scripts/fio-limits.sh "$out"

for r in $(seq "$rounds"); do
  order="plain tls"; [ $((r % 2)) = 0 ] && order="tls plain"
  for m in $order; do
    if [ "$m" = tls ]; then
      probe_flags="--tls-ca $out/certs/ca.crt"; client=(--tls-ca "$out/certs/ca.crt")
      start_broker target/release --metrics-listen off "${tls_flags[@]}"
    else
      probe_flags=; client=()
      start_broker target/release --metrics-listen off
    fi
    lg() { ./target/release/loadgen "$@" --bootstrap-server "$addr" "${client[@]}"; }
    lg produce --topic t --partitions 2 --message-size 100 --batch-size 1000 --acks 1 --warmup 1 --duration 5 --json "$out/$m-produce-$r.json" >"$out/loadgen.log" 2>&1 || { cat "$out/loadgen.log" "$out/broker.log"; exit 1; }
    lg consume --topic t --partitions 2 --messages 10000000 --json "$out/$m-consume-$r.json" >"$out/loadgen.log" 2>&1 || { cat "$out/loadgen.log" "$out/broker.log"; exit 1; }
    stop_broker
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for op in ("produce", "consume"):
    med = {}
    for m in ("plain", "tls"):
        xs = [json.load(open(f"{out}/{m}-{op}-{r}.json"))["msgs_per_sec"] / 1e6 for r in range(1, rounds + 1)]
        med[m] = statistics.median(xs)
        print(f"{op} {m}: " + ", ".join(f"{x:.2f}" for x in xs) + f" M msg/s, median {med[m]:.2f}")
    pairs = [json.load(open(f"{out}/tls-{op}-{r}.json"))["msgs_per_sec"] / json.load(open(f"{out}/plain-{op}-{r}.json"))["msgs_per_sec"] for r in range(1, rounds + 1)]
    print(f"{op} tls/plain: {med['tls'] / med['plain']:.3f} of the medians; by round " + ", ".join(f"{x:.2f}" for x in pairs) + f", median {statistics.median(pairs):.3f}")
PY
