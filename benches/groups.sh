#!/usr/bin/env bash
# Message-group dispatch under load: the same at-least-once 1 KiB run with messages spread over
# 0 (no group id), 10, 1,000 and 100,000 groups, one producer and 4 consumers, through a
# release build of sluice on this machine. DESIGN.md §3 asks that dispatch cost not grow with
# the number of groups; the table shows msg/s and p99 latency per group count.
#
#   benches/groups.sh               RUNS=3 MESSAGES=200000 CONSUMERS=4 SLUICE_PORT=5689
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
RUNS="${RUNS:-3}"
MESSAGES="${MESSAGES:-200000}"
CONSUMERS="${CONSUMERS:-4}"
SLUICE_PORT="${SLUICE_PORT:-5689}"
out="$root/target/bench"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

cargo build --release --quiet --bin sluice --example loadgen
loadgen="$root/target/release/examples/loadgen"

"$root/target/release/sluice" --listen "127.0.0.1:$SLUICE_PORT" --log warn \
  --data-dir "$(mktemp -d)" >"$out/groups-$stamp.log" 2>&1 &
sluice_pid=$!
trap 'kill -INT "$sluice_pid" 2>/dev/null; wait "$sluice_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SLUICE_PORT") 2>/dev/null && break; sleep 0.1; done

echo "| groups | msg/s | p50 ms | p99 ms |"
echo "|---:|---:|---:|---:|"
for groups in 0 10 1000 100000; do
  for i in $(seq "$RUNS"); do
    "$loadgen" --url "amqp://127.0.0.1:$SLUICE_PORT" --queue "groups-$groups-$stamp-$i" \
      --messages "$MESSAGES" --consumers "$CONSUMERS" --groups "$groups" 2>>"$out/groups-$stamp.log" \
      | tail -n 1
  done | python3 -c '
import json, sys
rs = sorted((json.loads(l) for l in sys.stdin if l.startswith("{")), key=lambda r: r["msg_per_s"])
if not rs:
    sys.exit("groups.sh: no result; see the log under target/bench")
r = rs[len(rs) // 2]
print("| %s | %s | %.2f | %.2f |" % (sys.argv[1], format(int(r["msg_per_s"]), ","), r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000))' "$groups"
done
