#!/usr/bin/env bash
# Publish/subscribe through a topic exchange that holds N other bindings, sluice beside
# RabbitMQ, in one run: the same loadgen (1 KiB, at-least-once, one producer, one consumer)
# sends to amq.topic with a fixed routing key and receives through a subscription bound with
# that key, while N more queues are bound with patterns that do not match it (a third each
# `regionK.appI.*`, `*.appI.error`, `#.appI.audit`).
#
# Like for like: nothing is journaled on either side (sluice queues `durable = false`,
# RabbitMQ's transient queues, messages without a durable header).
#
#   benches/topic.sh [N...]          (default: 0 100 10000)
#   SLUICE_MESSAGES=200000 RABBITMQ_MESSAGES=20000 RUNS=3 benches/topic.sh
# (RabbitMQ gets fewer messages: at its rate the same count would take minutes per run.)
# Needs benches/peers/install.sh for RabbitMQ.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(0 100 10000)
SLUICE_MESSAGES="${SLUICE_MESSAGES:-200000}"
RABBITMQ_MESSAGES="${RABBITMQ_MESSAGES:-20000}"
RUNS="${RUNS:-3}"
SLUICE_PORT="${SLUICE_PORT:-5690}"
RABBITMQ_AMQP_PORT="${RABBITMQ_AMQP_PORT:-5673}"
KEY="region0.app0.error"
out="$root/target/bench-topic"; mkdir -p "$out"

cd "$root"
cargo build --release --quiet --bin sluice --example loadgen
loadgen="$root/target/release/examples/loadgen"

pattern() { # the pattern of binding I (none matches $KEY for I >= 1)
  local i=$1
  case $((i % 3)) in
    0) echo "region$((i % 100)).app$i.*" ;;
    1) echo "*.app$i.error" ;;
    *) echo "#.app$i.audit" ;;
  esac
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_loadgen() { # URL ADDRESS MESSAGES -> msg/s
  "$loadgen" --url "$1" --queue "$2" --messages "$3" 2>&1 |
    sed -n 's/.*throughput: \([0-9]*\) msg\/s.*/\1/p' | tail -1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

declare -A sluice_res rabbit_res

# ---- sluice ------------------------------------------------------------------------------
for n in "${counts[@]}"; do
  cfg="$out/sluice-$n.toml"
  { echo '[queues."#"]'; echo 'durable = false'
    for ((i = 1; i <= n; i++)); do
      printf '[[bindings]]\nexchange = "amq.topic"\nqueue = "bq%d"\nkey = "%s"\n' "$i" "$(pattern "$i")"
    done; } >"$cfg"
  data="$(mktemp -d)"
  "$root/target/release/sluice" --config "$cfg" --listen "127.0.0.1:$SLUICE_PORT" \
    --admin-listen 127.0.0.1:0 --data-dir "$data" --log warn >"$out/sluice-$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do port_open "$SLUICE_PORT" && break; sleep 0.1; done
  results=()
  for _ in $(seq "$RUNS"); do
    results+=("$(run_loadgen "amqp://127.0.0.1:$SLUICE_PORT" "/exchanges/amq.topic/$KEY" "$SLUICE_MESSAGES")")
  done
  sluice_res[$n]="$(printf '%s\n' "${results[@]}" | median)"
  echo "topic.sh: sluice, $n other bindings: ${results[*]} msg/s"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data"
done

# ---- RabbitMQ ----------------------------------------------------------------------------
rmq_dir="$root/target/peers/rabbitmq"
rmqctl() {
  ( export HOME="$rmq_dir/home" RABBITMQ_NODENAME="sluice_peer@localhost" RABBITMQ_USE_LONGNAME=false
    export RABBITMQ_CONF_ENV_FILE="$rmq_dir/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$rmq_dir/rabbitmq.conf"
    export ERL_EPMD_ADDRESS=127.0.0.1
    /usr/lib/rabbitmq/bin/rabbitmqctl -n sluice_peer@localhost "$@" )
}
if [ -x /usr/lib/rabbitmq/bin/rabbitmqctl ]; then
  "$here/peers/start.sh" rabbitmq >/dev/null
  bound=0
  for n in "${counts[@]}"; do
    if [ "$n" -gt "$bound" ]; then
      # Declare queues bq(bound+1)..bqN and bind them, in the node itself (one eval).
      erl="P = fun(I) -> case I rem 3 of 0 -> io_lib:format(\"region~b.app~b.*\", [I rem 100, I]); 1 -> io_lib:format(\"*.app~b.error\", [I]); _ -> io_lib:format(\"#.app~b.audit\", [I]) end end,
           X = rabbit_misc:r(<<\"/\">>, exchange, <<\"amq.topic\">>),
           [begin Q = rabbit_misc:r(<<\"/\">>, queue, list_to_binary(\"bq\" ++ integer_to_list(I))),
                  rabbit_amqqueue:declare(Q, false, false, [], none, <<\"bench\">>),
                  ok = rabbit_binding:add({binding, X, iolist_to_binary(P(I)), Q, []}, <<\"bench\">>) end
            || I <- lists:seq($((bound + 1)), $n)], ok."
      rmqctl eval "$erl" >"$out/rabbitmq-bind-$n.log" 2>&1
      bound=$n
    fi
    results=()
    for _ in $(seq "$RUNS"); do
      results+=("$(run_loadgen "amqp://guest:guest@127.0.0.1:$RABBITMQ_AMQP_PORT" "/exchange/amq.topic/$KEY" "$RABBITMQ_MESSAGES")")
    done
    rabbit_res[$n]="$(printf '%s\n' "${results[@]}" | median)"
    echo "topic.sh: rabbitmq, $n other bindings: ${results[*]} msg/s"
  done
  "$here/peers/stop.sh" rabbitmq >/dev/null || true
fi

echo
echo "| other bindings on amq.topic | sluice | RabbitMQ | sluice/RabbitMQ |"
echo "|---:|---:|---:|---:|"
for n in "${counts[@]}"; do
  s="${sluice_res[$n]:-}"; r="${rabbit_res[$n]:-}"
  ratio=""; [ -n "$s" ] && [ -n "$r" ] && [ "$r" -gt 0 ] && ratio="$(awk -v s="$s" -v r="$r" 'BEGIN{printf "%.1fx", s/r}')"
  echo "| $n | ${s:-–} msg/s | ${r:-–} msg/s | $ratio |"
done
