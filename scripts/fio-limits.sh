#!/usr/bin/env bash
# The disk's limits, measured by fio beside a benchmark so its figures can
# be read as ratios: O_DIRECT sequential writes (1 MiB, queue depth 8) and
# 4 MiB writes with an fdatasync each. JSON goes to OUT/fio-*.json.
# Usage: scripts/fio-limits.sh OUT (a directory on the disk under test)
set -euo pipefail
out=$1
if command -v fio >/dev/null; then
  fio --name=seq --filename="$out/fio.dat" --rw=write --bs=1M --size=2G --direct=1 --ioengine=io_uring --iodepth=8 \
    --output-format=json --output="$out/fio-write.json" >/dev/null
  fio --name=sync --filename="$out/fio.dat" --rw=write --bs=4M --size=1G --direct=1 --ioengine=io_uring --iodepth=1 --fdatasync=1 \
    --output-format=json --output="$out/fio-fdatasync.json" >/dev/null
  rm -f "$out/fio.dat"
  python3 - "$out" <<'EOF'
import json, sys
d = sys.argv[1]
for name in ("fio-write", "fio-fdatasync"):
    j = json.load(open(f"{d}/{name}.json"))["jobs"][0]
    mib = j["write"]["bw_bytes"] / 2**20
    extra = ""
    if j.get("sync", {}).get("lat_ns", {}).get("max", 0) > 0:
        p = j["sync"]["lat_ns"].get("percentile", {})
        extra = f", fdatasync p99 {p.get('99.000000', 0)/1e6:.1f} ms, max {j['sync']['lat_ns']['max']/1e6:.1f} ms"
    print(f"{name}: {mib:.0f} MiB/s{extra}")
EOF
else
  echo "fio is not installed (apt-get install fio)"
fi
