#!/usr/bin/env bash
# The seed's walkthrough on the three-broker compose cluster (docker/):
# builds the image, starts the cluster on free host ports, creates topic
# `test` (three replicas) through broker 1, produces the seed's four
# messages on broker 1 (inside its container), consumes them
# --from-beginning on broker 2 (from the host) and broker 3 (inside its
# container) and checks both byte for byte; stops the partition's leader
# and checks the other two still serve and still hold the messages; starts
# it again and checks it catches up. Tears everything down, volumes too, whatever
# happens. Also checks the containers run as non-root users under the
# shipped seccomp profile. Needs docker and docker-compose (or `docker
# compose`). Usage: tests/docker-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if command -v docker-compose >/dev/null 2>&1; then
  compose() { (cd "$root/docker" && docker-compose -p "$SHARDLOG_NAME" -f compose.yaml ${SECURE:+-f compose.secure.yaml} "$@"); }
else
  compose() { (cd "$root/docker" && docker compose -p "$SHARDLOG_NAME" -f compose.yaml ${SECURE:+-f compose.secure.yaml} "$@"); }
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export SHARDLOG_NAME="slgtest$$"
export SHARDLOG_PORT1=$(free_port) SHARDLOG_PORT2=$(free_port) SHARDLOG_PORT3=$(free_port)
export SHARDLOG_METRICS_PORT1=$(free_port) SHARDLOG_METRICS_PORT2=$(free_port) SHARDLOG_METRICS_PORT3=$(free_port)
export SHARDLOG_PROMETHEUS_PORT=$(free_port)
c1="$SHARDLOG_NAME-broker1" c2="$SHARDLOG_NAME-broker2" c3="$SHARDLOG_NAME-broker3"

teardown() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    for c in "$c1" "$c2" "$c3"; do echo "--- $c"; docker logs --tail 30 "$c" 2>&1 || true; done
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  exit $rc
}
trap teardown EXIT

echo "== build the images (the broker's, and Prometheus' for the monitoring profile)"
docker/build.sh --prometheus "shardlog:dev"
cli=target/x86_64-unknown-linux-gnu/release/shardlog

echo "== io_uring refused by seccomp: the broker says so"
nouring=$(mktemp)
python3 - "$root/docker/seccomp.json" "$nouring" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["syscalls"] = [s for s in p["syscalls"] if "io_uring_setup" not in s["names"]]
json.dump(p, open(sys.argv[2], "w"))
PY
refused=$(docker run --rm --security-opt "seccomp=$nouring" shardlog:dev broker --data-dir /data --listen 0.0.0.0:9092 2>&1 || true)
rm -f "$nouring"
echo "$refused" | grep -q "refused io_uring_setup (EPERM)" || { echo "without io_uring the broker said: $refused"; exit 1; }
echo "$refused"

echo "== start the cluster (host ports $SHARDLOG_PORT1, $SHARDLOG_PORT2, $SHARDLOG_PORT3)"
compose up -d
running=$(compose ps --services --filter status=running 2>/dev/null || compose ps --services)
echo "$running" | grep -q prometheus && { echo "Prometheus started without its profile"; exit 1; }
wait_healthy() {
  for _ in $(seq 180); do
    local ok=0
    for c in "$@"; do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ] && ok=$((ok + 1))
    done
    [ "$ok" = "$#" ] && return 0
    sleep 0.5
  done
  echo "not healthy within 90 s: $*"; return 1
}
wait_healthy "$c1" "$c2" "$c3"

echo "== non-root, the shipped seccomp profile"
for c in "$c1" "$c2" "$c3"; do
  user=$(docker inspect -f '{{.Config.User}}' "$c")
  case "$user" in 0|0:*|root*|"") echo "$c runs as root ($user)"; exit 1;; esac
  sec=$(docker inspect -f '{{json .HostConfig.SecurityOpt}}' "$c")
  if echo "$sec" | grep -q unconfined || ! echo "$sec" | grep -q io_uring_setup; then
    echo "$c does not run under docker/seccomp.json: $sec"; exit 1
  fi
  echo "$c: user $user, seccomp profile with io_uring_setup, no 'unconfined'"
done

expected=$'123\n测试数据\ntest data\n阿牛\n'
echo "== the seed's walkthrough"
for _ in $(seq 60); do
  $cli topics create --topic test --partitions 1 --replication-factor 3 --bootstrap-server "127.0.0.1:$SHARDLOG_PORT1" && break
  sleep 1
done
printf '%s' "$expected" | docker exec -i "$c1" /shardlog produce --topic test --bootstrap-server broker1:9092
got2=$($cli consume --topic test --from-beginning --max-messages 4 --timeout-ms 20000 --bootstrap-server "127.0.0.1:$SHARDLOG_PORT2"; echo x)
got3=$(docker exec "$c3" /shardlog consume --topic test --from-beginning --max-messages 4 --timeout-ms 20000 --bootstrap-server broker3:9092; echo x)
[ "${got2%x}" = "$expected" ] || { echo "broker 2 (from the host) printed:"; printf '%s' "${got2%x}" | od -c | head; exit 1; }
[ "${got3%x}" = "$expected" ] || { echo "broker 3 (inside) printed:"; printf '%s' "${got3%x}" | od -c | head; exit 1; }
echo "brokers 2 and 3 printed the four messages byte for byte"

echo "== kcat from the host, through the published ports (the external listener)"
command -v kcat >/dev/null || { echo "kcat is not installed (scripts/test.sh installs it)"; exit 1; }
listing=$(kcat -b "127.0.0.1:$SHARDLOG_PORT1" -L)
for i in 1 2 3; do
  v="SHARDLOG_PORT$i"
  echo "$listing" | grep -q "broker $i at 127.0.0.1:${!v}" || { echo "kcat -L does not list broker $i at its host port:"; echo "$listing"; exit 1; }
done
got=$(kcat -b "127.0.0.1:$SHARDLOG_PORT2" -C -t test -o beginning -c 4 -e; echo x)
[ "${got%x}" = "$expected" ] || { echo "kcat through broker 2 printed:"; printf '%s' "${got%x}" | od -c | head; exit 1; }
echo "kcat lists the three brokers at their published addresses and reads the four messages"
$cli topics describe --topic test --bootstrap-server "127.0.0.1:$SHARDLOG_PORT3"

# The broker to stop: the partition's leader, the harder case.
leader=$($cli topics describe --topic test --bootstrap-server "127.0.0.1:$SHARDLOG_PORT3" | sed -n 's/.*Partition: 0.*Leader: \([0-9]*\).*/\1/p')
case "$leader" in 1|2|3) ;; *) echo "no leader for partition 0: '$leader'"; exit 1;; esac
others=()
for i in 1 2 3; do [ "$i" != "$leader" ] && others+=("$i"); done
port() { local v="SHARDLOG_PORT$1"; echo "${!v}"; }
stopped="$SHARDLOG_NAME-broker$leader" a=${others[0]} b=${others[1]}

echo "== stop broker $leader (the leader): brokers $a and $b serve and hold the messages"
docker stop "$stopped" >/dev/null
got=$($cli consume --topic test --from-beginning --max-messages 4 --timeout-ms 30000 --bootstrap-server "127.0.0.1:$(port "$a")"; echo x)
[ "${got%x}" = "$expected" ] || { echo "without broker $leader, broker $a printed: ${got%x}"; exit 1; }
printf 'after\n' | $cli produce --topic test --bootstrap-server "127.0.0.1:$(port "$b")"
got=$(docker exec "$SHARDLOG_NAME-broker$b" /shardlog consume --topic test --from-beginning --max-messages 5 --timeout-ms 20000 --bootstrap-server "broker$b:9092"; echo x)
[ "${got%x}" = "${expected}after"$'\n' ] || { echo "without broker $leader, broker $b printed: ${got%x}"; exit 1; }
$cli topics describe --topic test --bootstrap-server "127.0.0.1:$(port "$a")"
echo "without broker $leader: the messages are there and a new one was stored"

echo "== start broker $leader again: it catches up"
docker start "$stopped" >/dev/null
wait_healthy "$stopped"
for i in $(seq 60); do
  line=$($cli topics describe --topic test --bootstrap-server "127.0.0.1:$(port "$leader")" | grep 'Partition: 0' || true)
  isr=$(echo "$line" | sed -n 's/.*Isr: \([0-9,]*\).*/\1/p')
  [ "$(echo "$isr" | tr ',' '\n' | grep -c .)" = 3 ] && break
  [ "$i" = 60 ] && { echo "broker $leader did not rejoin the in-sync replicas: $line"; exit 1; }
  sleep 1
done
echo "$line"
got=$($cli consume --topic test --from-beginning --max-messages 5 --timeout-ms 20000 --bootstrap-server "127.0.0.1:$(port "$leader")"; echo x)
[ "${got%x}" = "${expected}after"$'\n' ] || { echo "after its restart, through broker $leader: ${got%x}"; exit 1; }
echo "broker $leader is back in sync and all five messages are served through it"

echo "== metrics: each broker's published metrics port, and Prometheus (profile monitoring) scraping all three"
http() { python3 - "$1" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
PY
}
controllers=0
for i in 1 2 3; do
  v="SHARDLOG_METRICS_PORT$i"
  m=$(http "http://127.0.0.1:${!v}/metrics")
  echo "$m" | grep -qx 'shardlog_ready 1' || { echo "broker $i is not ready by its metrics:"; echo "$m" | head -20; exit 1; }
  controllers=$((controllers + $(echo "$m" | sed -n 's/^shardlog_is_controller //p')))
done
[ "$controllers" = 1 ] || { echo "$controllers brokers say they are the controller"; exit 1; }
compose --profile monitoring up -d prometheus
for i in $(seq 60); do
  up=$(http "http://127.0.0.1:$SHARDLOG_PROMETHEUS_PORT/api/v1/query?query=sum(up%7Bjob%3D%22shardlog%22%7D)" 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null || echo 0)
  [ "$up" = 3 ] && break
  [ "$i" = 60 ] && { echo "Prometheus sees $up brokers up"; exit 1; }
  sleep 1
done
# Every replica's high watermark of test's partition: the five records.
hw=$(http "http://127.0.0.1:$SHARDLOG_PROMETHEUS_PORT/api/v1/query?query=min(shardlog_partition_high_watermark%7Btopic%3D%22test%22%7D)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
[ "$hw" = 5 ] || { echo "Prometheus gives test's high watermark as $hw, not 5"; exit 1; }
echo "Prometheus scrapes the three brokers, and every replica of test holds the five records by their metrics"

echo "== the secured cluster (compose.secure.yaml): TLS, SCRAM, ACLs, mutual TLS between brokers"
compose --profile monitoring down -v --remove-orphans >/dev/null
certs=$(mktemp -d)
chmod 755 "$certs"   # the brokers' users read it through the bind mount
docker/gen-certs.sh "$certs" broker1 broker2 broker3
export SECURE=1 SHARDLOG_CERTS="$certs" SHARDLOG_ADMIN_PASSWORD="admin-$$-secret"
compose up -d
wait_healthy "$c1" "$c2" "$c3"
admin=(--tls-ca "$certs/ca.crt" --user admin)
export SHARDLOG_PASSWORD="$SHARDLOG_ADMIN_PASSWORD"
# The bootstrap user is committed once a majority of the quorum is up.
for i in $(seq 60); do
  "$cli" topics create --topic sec --replication-factor 3 --bootstrap-server "127.0.0.1:$SHARDLOG_PORT1" "${admin[@]}" 2>/dev/null && break
  [ "$i" = 60 ] && { "$cli" topics create --topic sec --replication-factor 3 --bootstrap-server "127.0.0.1:$SHARDLOG_PORT1" "${admin[@]}"; exit 1; }
  sleep 1
done
printf '%s' "$expected" | docker exec -i -e SHARDLOG_PASSWORD "$c1" /shardlog produce --topic sec --bootstrap-server broker1:9092 --tls-ca /certs/ca.crt --user admin
got=$("$cli" consume --topic sec --from-beginning --max-messages 4 --timeout-ms 20000 --bootstrap-server "127.0.0.1:$SHARDLOG_PORT3" "${admin[@]}"; echo x)
[ "${got%x}" = "$expected" ] || { echo "the secured cluster served: ${got%x}"; exit 1; }
if "$cli" topics list --bootstrap-server "127.0.0.1:$SHARDLOG_PORT2" >/dev/null 2>&1; then
  echo "the secured cluster answered a plaintext client"; exit 1
fi
if SHARDLOG_PASSWORD=wrong "$cli" topics list --bootstrap-server "127.0.0.1:$SHARDLOG_PORT2" "${admin[@]}" >/dev/null 2>&1; then
  echo "the secured cluster answered a wrong password"; exit 1
fi
echo "secured: produced through broker 1 and consumed through broker 3 over TLS with SCRAM; plaintext and a wrong password refused"
echo "docker cluster walkthrough: ok"
