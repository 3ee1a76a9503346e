#!/usr/bin/env bash
# Throughput measured with a client no one here wrote (issue 17 §6): the Qpid Proton C
# example programs `send` and `receive` (compiled by benches/peers/install.sh), against sluice
# and each peer, so the figures do not rest on examples/loadgen alone.
#
#   benches/second_client.sh [sluice|ramqp|rabbitmq|proton]...     (default: all four)
#
# `receive HOST PORT ADDRESS N` is started first, then `send HOST PORT ADDRESS N`; send waits
# for `accepted` of each message (at-least-once) and receive accepts each; the messages are
# Proton's own (a map body {"sequence": n}, about 40 bytes). msg/s = N / the wall time from
# the start of send until both have exited. N = SECOND_N (200000), median of RUNS (3).
# Every broker in memory: sluice with [queues."#"] durable = false (the messages carry no
# header, so sluice's default configuration would journal them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
RUNS="${RUNS:-3}"
N="${SECOND_N:-200000}"
SLUICE_PORT="${SLUICE_PORT:-5681}"
peers="$root/target/peers"
[ -x "$peers/proton-send" ] || { echo "second_client.sh: run benches/peers/install.sh first" >&2; exit 1; }
brokers=("$@")
[ ${#brokers[@]} -gt 0 ] || brokers=(sluice ramqp rabbitmq proton)
out="$root/target/bench"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
# The same build as compare.sh (examples unify dev-dependency features): no rebuild between them.
cargo build --release --quiet --bin sluice --example loadgen
printf '[queues."#"]\ndurable = false\n' >"$out/sluice-memory.toml"

sluice_pid=""
cleanup() { [ -n "$sluice_pid" ] && kill -INT "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null || true; }
trap cleanup EXIT

port_of() {
  case "$1" in
    sluice) echo "$SLUICE_PORT" ;;
    ramqp) echo "${RAMQP_AMQP_PORT:-5676}" ;;
    rabbitmq) echo "${RABBITMQ_AMQP_PORT:-5673}" ;;
    proton) echo "${PROTON_AMQP_PORT:-5675}" ;;
    *) echo "second_client.sh: unknown broker $1" >&2; exit 2 ;;
  esac
}

start_broker() {
  if [ "$1" = sluice ]; then
    "$root/target/release/sluice" --config "$out/sluice-memory.toml" --listen "127.0.0.1:$SLUICE_PORT" \
      --log warn --data-dir "$(mktemp -d -p "$out")" >"$out/second-sluice-$stamp.log" 2>&1 &
    sluice_pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SLUICE_PORT") 2>/dev/null && return 0; sleep 0.1; done
    echo "second_client.sh: sluice did not start" >&2; exit 1
  else
    "$here/peers/start.sh" "$1" >/dev/null
  fi
}

stop_broker() {
  if [ "$1" = sluice ]; then cleanup; sluice_pid=""; else "$here/peers/stop.sh" "$1" >/dev/null || true; fi
}

# RabbitMQ 3.x needs /queue/NAME (and a login: Proton's examples log in anonymously, which
# RabbitMQ's AMQP 1.0 plugin maps to guest from loopback).
address_of() { if [ "$1" = rabbitmq ]; then echo "/queue/$2"; else echo "$2"; fi; }

{
echo "| broker | Proton C send + receive, $N messages | runs (msg/s) |"
echo "|---|---:|---|"
for broker in "${brokers[@]}"; do
  start_broker "$broker"
  port="$(port_of "$broker")"
  rates=()
  for i in $(seq "$RUNS"); do
    address="$(address_of "$broker" "second-$stamp-$i")"
    timeout 120 "$peers/proton-receive" 127.0.0.1 "$port" "$address" "$N" >"$out/second-$stamp-recv.log" 2>&1 &
    recv=$!
    sleep 0.5
    t0="$(date +%s.%N)"
    timeout 120 "$peers/proton-send" 127.0.0.1 "$port" "$address" "$N" >"$out/second-$stamp-send.log" 2>&1 || true
    wait "$recv" || true
    t1="$(date +%s.%N)"
    if grep -q "messages received" "$out/second-$stamp-recv.log" && grep -q "acknowledged" "$out/second-$stamp-send.log"; then
      rates+=("$(python3 -c "print(round($N / ($t1 - $t0)))")")
    else
      rates+=(0)
    fi
  done
  median="$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")"
  echo "| $broker | $(python3 -c "print(f'{$median/1000:.1f}k msg/s' if $median else 'failed')") | ${rates[*]} |"
  stop_broker "$broker"
done
} | tee "$out/second-client-$stamp.md"
