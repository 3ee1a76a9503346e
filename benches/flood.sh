#!/usr/bin/env bash
# Memory under a flood (issue 12 §1): producers with no consumer against a memory watermark.
#
#   benches/flood.sh
#
# Starts sluice (release build) with `[limits] memory_high_watermark = FLOOD_WATERMARK`
# ("512MiB") on FLOOD_PORT (5691) and a fresh data dir, floods queue `flood` for FLOOD_SECS
# (30) s from FLOOD_PRODUCERS (4) loadgen producers, at-least-once, FLOOD_SIZE (1024) B bodies,
# no consumer (add FLOOD_DURABLE=1 for durable messages: sluice's queues are durable either way,
# the flag marks the messages' headers), sampling the broker's RSS every 0.2 s. Then one
# consumer drains the queue and the script checks that every accepted message was received.
#
# Prints the watermark, the peak RSS and the RSS at the end of the flood, the messages
# accepted, and the messages drained. Logs under target/flood/<time>/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

WATERMARK="${FLOOD_WATERMARK:-512MiB}"
PORT="${FLOOD_PORT:-5691}"
SECS="${FLOOD_SECS:-30}"
PRODUCERS="${FLOOD_PRODUCERS:-4}"
SIZE="${FLOOD_SIZE:-1024}"
out="$root/target/flood/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

log() { echo "flood: $*" >&2; }

cargo build --release --quiet --bin sluice --example loadgen
sluice="$root/target/release/sluice"
loadgen="$root/target/release/examples/loadgen"

cat >"$out/broker.toml" <<EOF
[broker]
listen = ["127.0.0.1:$PORT"]
data_dir = "$out/data"

[admin]
listen = "127.0.0.1:0"

[limits]
memory_high_watermark = "$WATERMARK"
EOF

"$sluice" --config "$out/broker.toml" >"$out/sluice.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
(
  while kill -0 "$pid" 2>/dev/null; do
    echo "$(date +%s.%N) $(rss_kib)"
    sleep 0.2
  done
) >"$out/rss.txt" 2>/dev/null &
sampler=$!

durable=()
[ "${FLOOD_DURABLE:-0}" = 1 ] && durable=(--durable)
log "flooding for $SECS s, watermark $WATERMARK"
"$loadgen" --url "amqp://127.0.0.1:$PORT" --queue flood --producers "$PRODUCERS" \
  --consumers 0 --duration "$SECS" --size "$SIZE" "${durable[@]}" \
  >"$out/flood.txt" 2>"$out/flood.err" || true
end_rss="$(rss_kib)"
accepted="$(grep -o '"accepted":[0-9]*' "$out/flood.txt" | tail -1 | cut -d: -f2)"
log "accepted $accepted; draining"
"$loadgen" --url "amqp://127.0.0.1:$PORT" --queue flood --producers 0 --consumers 1 \
  --messages "$accepted" --size "$SIZE" >"$out/drain.txt" 2>"$out/drain.err" || true
received="$(grep -o '"received":[0-9]*' "$out/drain.txt" | tail -1 | cut -d: -f2)"
kill "$sampler" 2>/dev/null || true
peak="$(awk '$2 > max {max = $2} END {print max}' "$out/rss.txt")"
grep -E "producers|memory" "$out/sluice.log" | grep -iE "watermark|paused|resum|credit" | head -4 >&2 || true

echo "| watermark | producers | seconds | accepted | peak RSS | RSS at end of flood | drained |"
echo "|---|---|---|---|---|---|---|"
printf '| %s | %s | %s | %s | %.0f MiB | %.0f MiB | %s |\n' "$WATERMARK" "$PRODUCERS" "$SECS" \
  "$accepted" "$(echo "$peak / 1024" | bc -l)" "$(echo "$end_rss / 1024" | bc -l)" "$received"
[ "$received" = "$accepted" ] || { log "ERROR: $accepted accepted but $received drained"; exit 1; }
