#!/usr/bin/env bash
# Throughput and latency of sluice side by side with its peers, in one run, on this machine.
#
#   benches/compare.sh [--config durable|memory|both] [sluice|ramqp|rabbitmq|proton]...
#                                          (defaults: both configurations, all four brokers)
#
# Two configurations, compared like for like (issue 17):
#   durable  sluice as `cargo run --release` runs it (queues durable, the embedded default
#            config); every message sent durable (loadgen --durable: header durable = true,
#            durable target), so each broker must write it to disk before `accepted`.
#            RabbitMQ: durable queue, persistent messages. rAMQP: its durable queues
#            (/durable/NAME; ramqp-brokerd built with --features store-redb, installed by
#            benches/peers/install.sh) with --data-dir. Proton C's example broker has no store:
#            not measured ("-").
#   memory   sluice with [queues."#"] durable = false; messages without a header; every peer
#            in memory (RabbitMQ: transient messages).
# Every broker gets the same load generator runs (examples/loadgen), each repeated RUNS
# times (default 3); the table shows the median and the ratio sluice/peer. Scenarios:
#   amo-1k   1 KiB, at-most-once, 1 producer x 1 consumer
#   alo-1k   1 KiB, at-least-once (producer waits for accepted, consumer accepts), 1 x 1
#   alo-64k  64 KiB, at-least-once, 1 x 1
#   alo-4x4  1 KiB, at-least-once, 4 producers x 4 consumers
#   latency  1 KiB, at-least-once, at a fixed rate of half sluice's alo-1k median (in the same
#            configuration), 10 s; p50 / p99 end-to-end latency
# Peers run from benches/peers (install.sh first; start.sh is called here). Loopback only.
# Output: a markdown table per configuration on stdout, also saved with the raw JSON under
# target/bench/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
RUNS="${RUNS:-3}"
# A run that has not finished by then reports what it got (a broker that loses
# pre-settled messages never delivers them all).
TIMEOUT="${TIMEOUT:-60}"
SLUICE_PORT="${SLUICE_PORT:-5680}"
configs=(durable memory)
if [ "${1:-}" = "--config" ]; then
  case "${2:-}" in
    durable|memory) configs=("$2") ;;
    both) ;;
    *) echo "compare.sh: --config takes durable, memory or both" >&2; exit 2 ;;
  esac
  shift 2
fi
brokers=("$@")
[ ${#brokers[@]} -gt 0 ] || brokers=(sluice ramqp rabbitmq proton)
out="$root/target/bench"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
raw="$out/compare-$stamp.jsonl"

cargo build --release --quiet --bin sluice --example loadgen
loadgen="$root/target/release/examples/loadgen"

sluice_pid=""
ramqp_pid=""
cleanup() {
  [ -n "$sluice_pid" ] && kill -INT "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null || true
  [ -n "$ramqp_pid" ] && kill "$ramqp_pid" 2>/dev/null && wait "$ramqp_pid" 2>/dev/null || true
}
trap cleanup EXIT
# The memory configuration of sluice: the default one with durable queues turned off.
memory_toml="$out/sluice-memory.toml"
printf '[queues."#"]\ndurable = false\n' >"$memory_toml"
ramqp_durable="$root/target/peers/ramqp-durable/bin/ramqp-brokerd"

url_of() {
  case "$1" in
    sluice) echo "amqp://127.0.0.1:$SLUICE_PORT" ;;
    ramqp) echo "amqp://127.0.0.1:${RAMQP_AMQP_PORT:-5676}" ;;
    rabbitmq) echo "amqp://guest:guest@127.0.0.1:${RABBITMQ_AMQP_PORT:-5673}" ;;
    proton) echo "amqp://127.0.0.1:${PROTON_AMQP_PORT:-5675}" ;;
    *) echo "compare.sh: unknown broker $1" >&2; exit 2 ;;
  esac
}

# RabbitMQ 3.x creates a queue for a /queue/NAME address; rAMQP keeps on disk only a
# /durable/NAME queue (a plain name is in memory whatever the message says); the others take
# a plain name.
address_of() { # BROKER NAME CONFIG
  case "$1,${3:-memory}" in
    rabbitmq,*) echo "/queue/$2" ;;
    ramqp,durable) echo "/durable/$2" ;;
    *) echo "$2" ;;
  esac
}

wait_port() { # PORT NAME LOG
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "compare.sh: $2 did not start; see $3" >&2; exit 1
}

# start_broker BROKER CONFIG
start_broker() {
  case "$1" in
    sluice)
      local config=()
      [ "$2" = memory ] && config=(--config "$memory_toml")
      "$root/target/release/sluice" "${config[@]}" --listen "127.0.0.1:$SLUICE_PORT" --log warn \
        --data-dir "$(mktemp -d -p "$out")" >"$out/sluice-$stamp.log" 2>&1 &
      sluice_pid=$!
      wait_port "$SLUICE_PORT" sluice "$out/sluice-$stamp.log" ;;
    ramqp)
      if [ "$2" = durable ]; then
        [ -x "$ramqp_durable" ] || { echo "compare.sh: $ramqp_durable missing: run benches/peers/install.sh" >&2; exit 1; }
        "$ramqp_durable" --listen "127.0.0.1:${RAMQP_AMQP_PORT:-5676}" --data-dir "$(mktemp -d -p "$out")" \
          >"$out/ramqp-$stamp.log" 2>&1 &
        ramqp_pid=$!
        wait_port "${RAMQP_AMQP_PORT:-5676}" ramqp "$out/ramqp-$stamp.log"
      else
        "$here/peers/start.sh" ramqp >/dev/null
      fi ;;
    *) "$here/peers/start.sh" "$1" >/dev/null ;;
  esac
}

stop_broker() {
  case "$1" in
    sluice|ramqp) cleanup; sluice_pid=""; ramqp_pid=""; "$here/peers/stop.sh" ramqp >/dev/null 2>&1 || true ;;
    *) "$here/peers/stop.sh" "$1" >/dev/null || true ;;
  esac
}

# run CONFIG BROKER SCENARIO ARGS...: RUNS runs; prints the median JSON line.
run() {
  local config="$1" broker="$2" scenario="$3"; shift 3
  local durable=()
  [ "$config" = durable ] && durable=(--durable)
  local url; url="$(url_of "$broker")"
  local results=()
  for i in $(seq "$RUNS"); do
    local queue; queue="$(address_of "$broker" "bench-$config-$scenario-$stamp-$i" "$config")"
    local line
    line="$("$loadgen" --url "$url" --queue "$queue" --timeout "$TIMEOUT" "${durable[@]}" "$@" 2>>"$out/compare-$stamp.log" | tail -n 1 || true)"
    case "$line" in
      "{"*) ;;
      *) line="{\"error\":\"no result\",\"msg_per_s\":0}" ;;
    esac
    echo "{\"config\":\"$config\",\"broker\":\"$broker\",\"scenario\":\"$scenario\",\"run\":$i,\"result\":$line}" >>"$raw"
    results+=("$line")
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
rs.sort(key=lambda r: r.get("msg_per_s", 0))
print(json.dumps(rs[len(rs) // 2]))'
}

declare -A result
declare -A rates
for config in "${configs[@]}"; do
  sluice_alo=""
  for broker in "${brokers[@]}"; do
    if [ "$config" = durable ] && [ "$broker" = proton ]; then
      for scenario in amo-1k alo-1k alo-64k alo-4x4 latency; do result[$config,$broker,$scenario]='{"skipped":true}'; done
      continue
    fi
    echo "compare.sh: $config: $broker" >&2
    start_broker "$broker" "$config"
    result[$config,$broker,amo-1k]="$(run "$config" "$broker" amo-1k --size 1024 --mode at-most-once --messages 200000)"
    result[$config,$broker,alo-1k]="$(run "$config" "$broker" alo-1k --size 1024 --messages 200000)"
    result[$config,$broker,alo-64k]="$(run "$config" "$broker" alo-64k --size 65536 --messages 10000)"
    result[$config,$broker,alo-4x4]="$(run "$config" "$broker" alo-4x4 --size 1024 --producers 4 --consumers 4 --messages 200000)"
    if [ -z "$sluice_alo" ]; then
      sluice_alo="$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["msg_per_s"]))' "${result[$config,$broker,alo-1k]}")"
    fi
    rates[$config]=$((sluice_alo / 2))
    result[$config,$broker,latency]="$(run "$config" "$broker" latency --size 1024 --rate "${rates[$config]}" --duration 10 --warmup 2)"
    stop_broker "$broker"
  done
done

{
for config in "${configs[@]}"; do
  echo
  if [ "$config" = durable ]; then
    echo "### durable: sluice's default configuration, every message sent durable (RabbitMQ persistent, rAMQP store-redb; Proton C has no store)"
  else
    echo "### memory: sluice with durable = false, messages without a header, every peer in memory"
  fi
  echo
  echo "| scenario | $(printf '%s | ' "${brokers[@]}")$(for b in "${brokers[@]:1}"; do printf 'sluice/%s | ' "$b"; done)"
  echo "|---|$(for _ in "${brokers[@]}"; do printf -- '---:|'; done)$(for _ in "${brokers[@]:1}"; do printf -- '---:|'; done)"
  for scenario in amo-1k alo-1k alo-64k alo-4x4 latency; do
    args=()
    for b in "${brokers[@]}"; do args+=("${result[$config,$b,$scenario]}"); done
    python3 - "$scenario" "${rates[$config]}" "${args[@]}" <<'PY'
import json, sys
scenario, rate, rows = sys.argv[1], sys.argv[2], [json.loads(a) for a in sys.argv[3:]]
def cell(r):
    if r.get("skipped"):
        return "-"
    if scenario == "latency":
        l = r.get("latency_us") or {}
        if not l:
            return "failed"
        return f'{l["p50"]/1000:.2f} / {l["p99"]/1000:.2f} ms'
    v = r.get("msg_per_s", 0)
    if not v:
        return "failed"
    text = f"{v/1000:.1f}k msg/s"
    sent, received = r.get("sent", 0), r.get("received", 0)
    if r.get("timed_out") and received < sent:
        text += f" (lost {100 * (sent - received) / sent:.0f}%)"
    return text
def ratio(a, b):
    if b.get("skipped"):
        return "-"
    if scenario == "latency":
        la, lb = (a.get("latency_us") or {}), (b.get("latency_us") or {})
        if not (la and lb and la["p99"] and lb["p99"]):
            return "-"
        r = lb["p99"] / la["p99"]
        return f"{r:.1f}x lower p99" if r >= 1 else f"{1/r:.1f}x higher p99"
    va, vb = a.get("msg_per_s", 0), b.get("msg_per_s", 0)
    return f"{va/vb:.1f}x" if va and vb else "-"
name = f"latency p50 / p99 at {int(rate)/1000:.0f}k msg/s" if scenario == "latency" else scenario
cells = [cell(r) for r in rows] + [ratio(rows[0], r) for r in rows[1:]]
print(f"| {name} | " + " | ".join(cells) + " |")
PY
  done
done
} | tee "$out/compare-$stamp.md"
echo "compare.sh: raw results in $raw" >&2
