# Sourced by the single-broker benchmark scripts (bench-ab, bench-sdk,
# bench-protocols, bench-idempotence): a fresh 2-shard broker per round,
# stopped and its data removed after the round and on exit. The script
# sets $out (the data goes to $out/data, the log to $out/broker.log) and
# $addr before sourcing this.
pid=
stop_broker() { [ -n "$pid" ] && kill -TERM "$pid" && wait "$pid" || true; pid=; rm -rf "$out/data"; }
trap stop_broker EXIT

# start_broker BIN_DIR [FLAG...]: starts that build's broker on $addr
# (with any further flags) and returns once it answers (5 s at most);
# $probe_flags, if set, are the client flags it answers to (--tls-ca ...).
start_broker() {
  rm -rf "$out/data"
  local bin=$1
  shift
  "$bin/shardlog" broker --data-dir "$out/data" --listen "$addr" --shards 2 "$@" 2>"$out/broker.log" &
  pid=$!
  for _ in $(seq 50); do "$bin/shardlog" cluster info --bootstrap-server "$addr" ${probe_flags:-} >/dev/null 2>&1 && break; sleep 0.1; done
}
