#!/usr/bin/env bash
# The storage figures of BENCHMARKS.md in one sitting, with the disk's own
# limits (fio) and, when given, the peer broker Apache Iggy measured right
# after shardlog with the same parameters.
#
#   scripts/bench-storage.sh                 # fio and shardlog
#   IGGY_BIN_DIR=DIR scripts/bench-storage.sh  # and Iggy: DIR holds Iggy's
#                                            # iggy-server and iggy-bench
#
# This project does not build Iggy; point IGGY_BIN_DIR at binaries built
# from its source. Everything runs on 127.0.0.1 and under target/bench-storage/.
# The broker, the load generator and Iggy share this host's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shardlog -p shardlog-loadgen
out=$PWD/target/bench-storage
rm -rf "$out"
mkdir -p "$out"
addr=127.0.0.1:19092
rounds=${ROUNDS:-3}
lg() { ./target/release/loadgen "$@" --bootstrap-server "$addr"; }
broker=""
start_broker() {
  ./target/release/shardlog broker --data-dir "$out/data" --listen "$addr" --shards 2 2>"$out/broker.log" &
  broker=$!
  for _ in $(seq 600); do grep -q "listening on" "$out/broker.log" && return; sleep 0.05; done
  echo "broker did not start" >&2
  exit 1
}
stop_broker() { kill -TERM "$broker"; wait "$broker" || true; broker=""; }
trap '[ -n "$broker" ] && kill -9 "$broker" 2>/dev/null; [ -n "${iggy:-}" ] && kill -9 "$iggy" 2>/dev/null; true' EXIT
rss_peak_kib() { # PID SECONDS: the largest VmRSS seen, sampled every 100 ms
  local peak=0 v
  for _ in $(seq $(($2 * 10))); do
    v=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$peak" ] && peak=$v
    sleep 0.1
  done
  echo "$peak"
}

echo "== fio (the disk's limits)"
scripts/fio-limits.sh "$out"

echo "== shardlog: produce and consume, 100 B x 1000"
# A fresh data directory for each run: ten seconds at this rate is ~8 GB.
fresh() { rm -rf "$out/data"; start_broker; }
for i in $(seq "$rounds"); do
  fresh
  lg produce --topic p1 --partitions 1 --acks 1 --message-size 100 --batch-size 1000 --warmup 2 --duration 10 --json "$out/produce-1p-acks1-$i.json"
  lg consume --topic p1 --partitions 1 --consumers 1 --messages 20000000 --json "$out/consume-1p-$i.json"
  stop_broker
  fresh
  lg produce --topic p2 --partitions 2 --acks 1 --message-size 100 --batch-size 1000 --warmup 2 --duration 10 --json "$out/produce-2p-acks1-$i.json"
  stop_broker
  fresh
  lg produce --topic a2 --partitions 2 --acks all --message-size 100 --batch-size 1000 --warmup 2 --duration 10 --json "$out/produce-2p-acksall-$i.json"
  stop_broker
done

echo "== shardlog: 10,000 partitions, broker RSS under load"
fresh
lg produce --topic many --partitions 10000 --acks 1 --message-size 100 --batch-size 1000 --duration 1 >/dev/null
lg produce --topic many --partitions 10000 --acks 1 --message-size 100 --batch-size 1000 --duration 15 --json "$out/produce-10000p.json" &
load=$!
sleep 2
echo "broker RSS peak under load: $(rss_peak_kib "$broker" 12) KiB" | tee "$out/rss-10000p.txt"
wait "$load"
stop_broker

echo "== shardlog: restart after SIGKILL with 10 GiB stored"
fresh
lg produce --topic big --partitions 2000 --acks 1 --message-size 1000 --batch-size 100 --messages 11000000 >/dev/null
kill -9 "$broker"; wait "$broker" 2>/dev/null || true; broker=""
stored=$(du -sb "$out/data" | awk '{print $1}')
t0=$(date +%s.%N)
start_broker
t1=$(date +%s.%N)
echo "stored $((stored / 1024 / 1024)) MiB; restart to 'listening on': $(python3 -c "print(round($t1 - $t0, 2))") s" | tee "$out/restart.txt"
stop_broker
rm -rf "$out/data"

if [ -n "${IGGY_BIN_DIR:-}" ]; then
  echo "== Iggy: the same parameters, right after"
  for i in $(seq "$rounds"); do
    rm -rf "$out/iggy"
    mkdir -p "$out/iggy"
    # Iggy's server makes up a root password unless it is given one; its
    # bench client signs in as iggy/iggy.
    (cd "$out/iggy" && exec env IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy IGGY_SYSTEM_PATH="$out/iggy/data" \
      "$IGGY_BIN_DIR/iggy-server" >"$out/iggy/server.log" 2>&1) &
    iggy=$!
    for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/8090) 2>/dev/null && break; sleep 0.1; done
    sleep 1
    # Iggy's pinned producer gives each producer its own one-partition
    # stream: 1 and 2 producers are its 1 and 2 partitions.
    for p in 1 2; do
      "$IGGY_BIN_DIR/iggy-bench" --message-size 100 --messages-per-batch 1000 --message-batches 20000 \
        pinned-producer --streams "$p" --producers "$p" tcp >"$out/iggy-produce-${p}p-$i.txt" 2>&1 || true
    done
    "$IGGY_BIN_DIR/iggy-bench" --message-size 100 --messages-per-batch 1000 --message-batches 20000 \
      pinned-consumer --streams 1 --consumers 1 tcp >"$out/iggy-consume-$i.txt" 2>&1 || true
    kill -TERM "$iggy" 2>/dev/null || true; wait "$iggy" 2>/dev/null || true; iggy=""
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8090) 2>/dev/null || break; sleep 0.1; done
  done
fi

echo "== summary (medians of $rounds)"
python3 - "$out" "$rounds" <<'EOF'
import glob, json, re, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def med(xs):
    return statistics.median(xs) if xs else float("nan")
for name in ("produce-1p-acks1", "produce-2p-acks1", "produce-2p-acksall", "consume-1p"):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{name}-*.json"))]
    rates = [r["msgs_per_sec"] for r in runs]
    p99 = [r.get("latency_us", {}).get("p99", 0) / 1000 for r in runs]
    print(f"shardlog {name}: {med(rates)/1e6:.2f} M msg/s ({', '.join(f'{x/1e6:.2f}' for x in rates)}), p99 {med(p99):.1f} ms")
for f in ("produce-10000p",):
    try:
        r = json.load(open(f"{d}/{f}.json"))
        print(f"shardlog {f}: {r['msgs_per_sec']/1e6:.2f} M msg/s")
    except FileNotFoundError:
        pass
for name in ("iggy-produce-1p", "iggy-produce-2p", "iggy-consume"):
    rates, p99s = [], []
    for f in sorted(glob.glob(f"{d}/{name}-*.txt")):
        m = re.findall(r"Total throughput: [0-9.]+ MB/s, ([0-9.]+) messages/s.*?p99 latency: ([0-9.]+) ms", open(f).read())
        if m:
            rates.append(float(m[-1][0]))
            p99s.append(float(m[-1][1]))
    if rates:
        print(f"{name}: {med(rates)/1e6:.2f} M msg/s ({', '.join(f'{x/1e6:.2f}' for x in rates)}), p99 {med(p99s):.2f} ms")
EOF
