#!/usr/bin/env bash
# How sluice's throughput grows with queues and cores (issue 17 §5).
#
#   benches/scaling.sh [--config durable|memory]        (default: memory)
#
# Scenarios, each for SCALE_SECS (10) s after a 2 s warm-up, 1 KiB at-least-once:
#   Nq     N queues (1, 2, 4, 8, 16), each with its own producer and consumer: N load
#          generator processes at once, one queue each (one runtime thread each, so the
#          clients do not take more cores than the broker has);
#   1q16c  1 queue, 4 producers and 16 consumers.
# For each: total msg/s, the cores the broker used (its CPU time / wall time, from
# /proc/PID/stat) and msg/s per broker core. The machine's core count comes from nproc, so
# the script runs unchanged on a larger machine (then raise SCALE_MAX_QUEUES to 64, say).
# durable: sluice's default configuration and durable messages (loadgen --durable);
# memory: [queues."#"] durable = false and messages without a header.
# Output: a markdown table on stdout, also under target/bench/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
config=memory
if [ "${1:-}" = "--config" ]; then config="${2:?durable or memory}"; shift 2; fi
case "$config" in durable|memory) ;; *) echo "scaling.sh: --config durable|memory" >&2; exit 2 ;; esac
SECS="${SCALE_SECS:-10}"
MAX="${SCALE_MAX_QUEUES:-16}"
PORT="${SCALE_PORT:-5692}"
out="$root/target/bench"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
cargo build --release --quiet --bin sluice --example loadgen
loadgen="$root/target/release/examples/loadgen"
hz="$(getconf CLK_TCK)"
cores="$(nproc)"

extra=()
sluice_config=()
if [ "$config" = memory ]; then
  printf '[queues."#"]\ndurable = false\n' >"$out/sluice-memory.toml"
  sluice_config=(--config "$out/sluice-memory.toml")
else
  extra=(--durable)
fi

data="$(mktemp -d -p "$out")"
"$root/target/release/sluice" "${sluice_config[@]}" --listen "127.0.0.1:$PORT" --log warn \
  --data-dir "$data" >"$out/scaling-$stamp.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# measure NAME PROCESSES ARGS...: PROCESSES load generators at once, each on its own queue.
measure() {
  local name="$1" procs="$2"; shift 2
  local files=() pids=()
  local t0 c0; t0="$(date +%s.%N)"; c0="$(cpu_ticks)"
  for i in $(seq "$procs"); do
    local f="$out/scaling-$stamp-$name-$i.json"
    files+=("$f")
    "$loadgen" --url "amqp://127.0.0.1:$PORT" --queue "scale-$stamp-$name-$i" --size 1024 \
      --duration "$SECS" --warmup 2 "${extra[@]}" "$@" 2>/dev/null | tail -n 1 >"$f" &
    pids+=($!)
  done
  wait "${pids[@]}"
  local t1 c1; t1="$(date +%s.%N)"; c1="$(cpu_ticks)"
  python3 - "$name" "$t0" "$t1" "$c0" "$c1" "$hz" "${files[@]}" <<'PY'
import json, sys
name, t0, t1, c0, c1, hz = sys.argv[1], *map(float, sys.argv[2:7])
total = 0.0
for f in sys.argv[7:]:
    try:
        total += json.load(open(f)).get("msg_per_s", 0)
    except Exception:
        pass
used = (c1 - c0) / hz / (t1 - t0)
per = total / used if used else 0
print(f"| {name} | {total/1000:.1f}k | {used:.2f} | {per/1000:.1f}k |")
PY
}

{
  echo "sluice $config, $cores cores (nproc), 1 KiB at-least-once, ${SECS} s per row"
  echo
  echo "| scenario | msg/s | broker cores used | msg/s per broker core |"
  echo "|---|---:|---:|---:|"
  n=1
  while [ "$n" -le "$MAX" ]; do
    measure "${n}q" "$n" --threads 1
    n=$((n * 2))
  done
  measure "1q16c" 1 --producers 4 --consumers 16
} | tee "$out/scaling-$stamp.md"
