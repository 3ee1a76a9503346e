#!/usr/bin/env bash
# Recovery time (issue 12 §7): how long sluice takes from launch until its AMQP port accepts,
# with RECOVERY_MESSAGES (1,000,000) queued durable messages of RECOVERY_SIZE (1024) bytes.
#
#   benches/recovery.sh
#
# Fills queue `q` with loadgen (at-least-once, durable, no consumer) on RECOVERY_PORT (5692),
# stops the broker with SIGTERM, then starts it RECOVERY_ROUNDS (2) times warm and, when run as
# root, as many times cold (`sync; echo 3 > /proc/sys/vm/drop_caches` before the start), each
# timed from launch until the port accepts a connection. Prints one line per start and the
# journal's own "journal recovered ... elapsed_ms" line. Logs and data under
# target/recovery/<time>/ (deleted at the end unless RECOVERY_KEEP=1: the journal is ~1 GB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

MESSAGES="${RECOVERY_MESSAGES:-1000000}"
SIZE="${RECOVERY_SIZE:-1024}"
PORT="${RECOVERY_PORT:-5692}"
ROUNDS="${RECOVERY_ROUNDS:-2}"
out="$root/target/recovery/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
log() { echo "recovery: $*" >&2; }

cargo build --release --quiet --bin sluice --example loadgen
sluice="$root/target/release/sluice"
loadgen="$root/target/release/examples/loadgen"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ "${RECOVERY_KEEP:-0}" = 1 ] || rm -rf "$out/data"
}
trap cleanup EXIT

start() {
  "$sluice" --data-dir "$out/data" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 \
    >"$out/$1.log" 2>&1 &
  pid=$!
}
wait_port() {
  for _ in $(seq 6000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.01
  done
  log "ERROR: the broker did not listen within 60 s"; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

start fill
wait_port
log "filling with $MESSAGES messages of $SIZE B"
"$loadgen" --url "amqp://127.0.0.1:$PORT" --queue q --messages "$MESSAGES" --size "$SIZE" \
  --consumers 0 --durable >"$out/fill.txt" 2>&1
stop
log "journal: $(du -sh "$out/data" | cut -f1)"

kinds=()
for _ in $(seq "$ROUNDS"); do kinds+=(warm); done
if [ "$(id -u)" = 0 ]; then
  for _ in $(seq "$ROUNDS"); do kinds+=(cold); done
else
  log "not root: no cold starts (they drop the page cache)"
fi
n=0
for kind in "${kinds[@]}"; do
  n=$((n + 1))
  if [ "$kind" = cold ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
  t0=$(date +%s.%N)
  start "start$n"
  wait_port
  t1=$(date +%s.%N)
  stop
  recovered="$(grep -o 'journal recovered.*' "$out/start$n.log" | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
  printf '%s start: %.2f s until the port accepts  (%s)\n' "$kind" "$(echo "$t1 - $t0" | bc -l)" \
    "$recovered"
done
