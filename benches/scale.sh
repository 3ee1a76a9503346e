#!/usr/bin/env bash
# Scale figures for sluice and its peers: memory per queued message, idle connections held,
# and connection churn. Loopback only (127.0.0.1).
#
#   benches/scale.sh [sluice|rabbitmq|proton|ramqp|all]...     (default: all)
#
# For each broker, each of the three measurements starts the broker fresh:
#   memory  RSS before and after filling a queue with SCALE_MESSAGES (1,000,000) messages of
#           SCALE_SIZE (1024) bytes (loadgen, at-least-once: each one is accepted before it
#           counts), after SCALE_SETTLE (5) s: (after - before) / accepted = bytes per message.
#   hold    `connections hold --count SCALE_CONNECTIONS (10000) --hold SCALE_HOLD (10)`; the
#           broker's RSS and fd count once all have connected; how many answered at the end.
#   churn   `connections churn --rate SCALE_CHURN_RATE (1000) --duration SCALE_CHURN_SECS (20)`,
#           SCALE_CHURN_ROUNDS (2) times; the broker's RSS and fd count before and after each
#           round (no leak: fds back to the baseline, RSS flat from round to round).
# The fd limit is raised here (ulimit -n), for the clients and for the brokers started from
# this shell; no code sets it. Peers are started with benches/peers/start.sh (ports 5673,
# 5675, 5676); sluice on SCALE_SLUICE_PORT (5690) with a fresh --data-dir.
#
# Output: logs under target/scale/<time>/, a markdown table and one JSON line per broker.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

MESSAGES="${SCALE_MESSAGES:-1000000}"
SIZE="${SCALE_SIZE:-1024}"
SETTLE="${SCALE_SETTLE:-5}"
CONNECTIONS="${SCALE_CONNECTIONS:-10000}"
HOLD="${SCALE_HOLD:-10}"
CHURN_RATE="${SCALE_CHURN_RATE:-1000}"
CHURN_SECS="${SCALE_CHURN_SECS:-20}"
CHURN_ROUNDS="${SCALE_CHURN_ROUNDS:-2}"
# Not 5680: other benchmark runs on a shared machine use it, and their clients would land on
# this broker (and skew both runs).
SLUICE_PORT="${SCALE_SLUICE_PORT:-5690}"
JOBS="${SCALE_JOBS:-1}"
out="$root/target/scale/$(date +%Y%m%d-%H%M%S)"

log() { echo "scale: $*" >&2; }
die() { echo "scale: ERROR: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------- arguments
brokers=()
for a in "${@:-all}"; do
  case "$a" in
    all) brokers+=(sluice rabbitmq proton ramqp) ;;
    sluice|rabbitmq|proton|ramqp) brokers+=("$a") ;;
    *) die "unknown broker '$a' (sluice|rabbitmq|proton|ramqp|all)" ;;
  esac
done

# ----------------------------------------------------------------------------- fd limit
# As high as allowed: root may raise the hard limit (up to fs.nr_open), others only the soft.
want_fds=1048576
nr_open="$(cat /proc/sys/fs/nr_open 2>/dev/null || echo "$want_fds")"
[ "$nr_open" -lt "$want_fds" ] && want_fds="$nr_open"
ulimit -Hn "$want_fds" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open-file limit: $(ulimit -n) (needed: about $((CONNECTIONS + 100)) per process)"
[ "$(ulimit -n)" -gt "$CONNECTIONS" ] || log "warning: the fd limit is below --count; connections will fail with EMFILE"

# ----------------------------------------------------------------------------- build
log "building (cargo -j$JOBS)"
cargo build --release -j"$JOBS" --bin sluice --example loadgen --example connections >&2
sluice_bin="$root/target/release/sluice"
loadgen="$root/target/release/examples/loadgen"
connections="$root/target/release/examples/connections"
mkdir -p "$out"
log "logs in $out"

# ----------------------------------------------------------------------------- brokers
sluice_pid=""
sluice_dir=""
broker_pid=""
hold_pid=""
peers_started=()

cleanup() {
  local rc=$?
  [ -n "${hold_pid:-}" ] && kill "$hold_pid" 2>/dev/null || true
  stop_sluice
  if [ "${#peers_started[@]}" -gt 0 ]; then
    "$here/peers/stop.sh" "${peers_started[@]}" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_of() {
  case "$1" in
    sluice) echo "$SLUICE_PORT" ;;
    rabbitmq) echo "${RABBITMQ_AMQP_PORT:-5673}" ;;
    proton) echo "${PROTON_AMQP_PORT:-5675}" ;;
    ramqp) echo "${RAMQP_AMQP_PORT:-5676}" ;;
  esac
}

url_of() {
  case "$1" in
    rabbitmq) echo "amqp://guest:guest@127.0.0.1:$(port_of rabbitmq)" ;;
    *) echo "amqp://127.0.0.1:$(port_of "$1")" ;;
  esac
}

# The pid listening on a port (for RabbitMQ, beam.smp).
pid_of_port() {
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

stop_sluice() {
  [ -n "$sluice_pid" ] || return 0
  kill -TERM "$sluice_pid" 2>/dev/null || true
  local i=0
  while kill -0 "$sluice_pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  kill -KILL "$sluice_pid" 2>/dev/null || true
  wait "$sluice_pid" 2>/dev/null || true
  sluice_pid=""
  [ -n "$sluice_dir" ] && rm -rf "$sluice_dir"
  sluice_dir=""
}

# start_broker NAME PHASE: starts NAME fresh and sets broker_pid (not in a subshell, so that
# the cleanup trap knows what to stop).
start_broker() {
  local name="$1" phase="$2" port i=0
  port="$(port_of "$name")"
  case "$name" in
    sluice)
      port_open "$port" && die "127.0.0.1:$port is in use; set SCALE_SLUICE_PORT"
      sluice_dir="$(mktemp -d)"
      "$sluice_bin" --listen "127.0.0.1:$port" --data-dir "$sluice_dir" \
        >"$out/sluice-$phase.log" 2>&1 &
      sluice_pid=$!
      until port_open "$port"; do
        kill -0 "$sluice_pid" 2>/dev/null || die "sluice exited; see $out/sluice-$phase.log"
        [ "$i" -lt 100 ] || die "sluice not listening after 20 s"
        sleep 0.2; i=$((i + 1))
      done
      broker_pid="$sluice_pid"
      ;;
    *)
      "$here/peers/stop.sh" "$name" >&2
      # RabbitMQ: declare the queues used here (non-durable, as its 3.x plugin expects).
      RABBITMQ_QUEUES="q mem hold churn" "$here/peers/start.sh" "$name" >&2
      [[ " ${peers_started[*]} " == *" $name "* ]] || peers_started+=("$name")
      broker_pid="$(pid_of_port "$port")"
      [ -n "$broker_pid" ] || die "$name: no process found listening on 127.0.0.1:$port"
      ;;
  esac
}

stop_broker() {
  case "$1" in
    sluice) stop_sluice ;;
    *) "$here/peers/stop.sh" "$1" >&2 ;;
  esac
}

# json FILE EXPR: evaluates EXPR (Python, `j` is the last JSON line of FILE); "null" if none.
json() {
  python3 - "$1" "$2" <<'PY'
import json, sys
j = None
try:
    for line in open(sys.argv[1]):
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                pass
except OSError:
    pass
try:
    v = eval(sys.argv[2], {"j": j}) if j is not None else None
except Exception:
    v = None
print(json.dumps(v))
PY
}

# ----------------------------------------------------------------------------- measurements
measure_memory() {
  local name="$1" pid before after accepted f="$out/$1-memory.txt" queue=mem
  log "$name: memory per message ($MESSAGES x $SIZE B into '$queue')"
  start_broker "$name" memory; pid="$broker_pid"
  sleep 2
  before="$(rss_kb "$pid")"
  timeout 900 "$loadgen" --url "$(url_of "$name")" --queue "$queue" --messages "$MESSAGES" \
    --size "$SIZE" --producers 1 --consumers 0 >"$f" 2>"$out/$name-memory.err" \
    || log "$name: loadgen exited with $? (see $f)"
  sleep "$SETTLE"
  after="$(rss_kb "$pid")"
  accepted="$(json "$f" 'j["accepted"]')"
  if [ "$name" = rabbitmq ]; then
    ( export HOME="$root/target/peers/rabbitmq/home"
      /usr/lib/rabbitmq/bin/rabbitmqctl -n sluice_peer@localhost list_queues \
        name messages messages_ram message_bytes_ram memory 2>&1
      /usr/lib/rabbitmq/bin/rabbitmqctl -n sluice_peer@localhost eval \
        'rabbit_alarm:get_alarms().' 2>&1 ) >"$out/rabbitmq-queues.txt" || true
    log "rabbitmq: queues and alarms: $(tr '\n' ' ' <"$out/rabbitmq-queues.txt")"
  fi
  stop_broker "$name"
  python3 - "$name" "$before" "$after" "$accepted" "$MESSAGES" "$(json "$f" 'j["msg_per_s"]')" <<'PY' >"$out/$name-memory.json"
import json, sys
name, before, after, accepted, messages, rate = sys.argv[1:]
before, after, messages = int(before), int(after), int(messages)
accepted = json.loads(accepted) or 0
per = (after - before) * 1024 / accepted if accepted else None
print(json.dumps({"messages": messages, "accepted": accepted, "fill_msg_per_s": json.loads(rate),
                  "rss_before_kb": before, "rss_after_kb": after,
                  "bytes_per_message": round(per, 1) if per is not None else None}))
PY
  log "$name: memory: $(cat "$out/$name-memory.json")"
}

measure_hold() {
  local name="$1" pid before fds_before held_rss=0 held_fds=0 f="$out/$1-hold.txt" i=0
  log "$name: holding $CONNECTIONS connections for $HOLD s"
  start_broker "$name" hold; pid="$broker_pid"
  sleep 1
  before="$(rss_kb "$pid")"; fds_before="$(fd_count "$pid")"
  timeout 900 "$connections" hold --url "$(url_of "$name")" --count "$CONNECTIONS" \
    --hold "$HOLD" >"$f" 2>"$out/$name-hold.err" &
  hold_pid=$!
  # Sample once every connection has been opened (or has failed), in the middle of the hold.
  while ! grep -q '^connections: established' "$f" 2>/dev/null; do
    kill -0 "$hold_pid" 2>/dev/null || break
    sleep 0.5; i=$((i + 1))
  done
  sleep "$(( HOLD > 4 ? 2 : 0 ))"
  held_rss="$(rss_kb "$pid")"; held_fds="$(fd_count "$pid")"
  wait "$hold_pid" || log "$name: connections hold exited with $? (see $f)"
  hold_pid=""
  stop_broker "$name"
  python3 - "$before" "$fds_before" "$held_rss" "$held_fds" "$(json "$f" 'j')" <<'PY' >"$out/$name-hold.json"
import json, sys
before, fds_before, rss, fds = map(int, sys.argv[1:5])
j = json.loads(sys.argv[5]) or {}
n = j.get("connected") or 0
print(json.dumps({"requested": j.get("requested"), "connected": n, "failed": j.get("failed"),
                  "held": j.get("alive"), "lost": j.get("lost"), "probe_failed": j.get("probe_failed"),
                  "connect_seconds": j.get("connect_seconds"), "setup_ms": j.get("setup_ms"),
                  "rss_before_kb": before, "rss_held_kb": rss, "fds_before": fds_before, "fds_held": fds,
                  "kib_per_connection": round((rss - before) / n, 1) if n else None,
                  "errors": j.get("errors")}))
PY
  log "$name: hold: $(cat "$out/$name-hold.json")"
}

measure_churn() {
  local name="$1" pid r f rounds=() rss fds
  log "$name: churn, $CHURN_RATE cycles/s for $CHURN_SECS s, $CHURN_ROUNDS round(s)"
  start_broker "$name" churn; pid="$broker_pid"
  sleep 1
  rounds+=("{\"rss_kb\":$(rss_kb "$pid"),\"fds\":$(fd_count "$pid")}")
  for r in $(seq 1 "$CHURN_ROUNDS"); do
    f="$out/$name-churn-$r.txt"
    timeout 900 "$connections" churn --url "$(url_of "$name")" --rate "$CHURN_RATE" \
      --duration "$CHURN_SECS" >"$f" 2>"$out/$name-churn-$r.err" \
      || log "$name: churn round $r exited with $? (see $f)"
    sleep 3
    rss="$(rss_kb "$pid")"; fds="$(fd_count "$pid")"
    rounds+=("{\"rss_kb\":$rss,\"fds\":$fds,\"result\":$(json "$f" 'j')}")
    log "$name: churn round $r: $(json "$f" '[j["cycles_per_s"], j["failed"], j["cycle_ms"]]'), rss $rss kB, fds $fds"
  done
  stop_broker "$name"
  (IFS=,; echo "[${rounds[*]}]") >"$out/$name-churn.json"
}

for b in "${brokers[@]}"; do
  measure_memory "$b"
  measure_hold "$b"
  measure_churn "$b"
done

# ----------------------------------------------------------------------------- report
python3 - "$out" "${brokers[@]}" <<'PY'
import json, sys, os
out, brokers = sys.argv[1], sys.argv[2:]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
def f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)
rows = []
lines = []
for b in brokers:
    mem, hold, churn = load(f"{b}-memory.json") or {}, load(f"{b}-hold.json") or {}, load(f"{b}-churn.json") or []
    base = churn[0] if churn else {}
    runs = [r.get("result") or {} for r in churn[1:]]
    first = runs[0] if runs else {}
    rss_path = " → ".join(f(r.get("rss_kb", 0) / 1024, "{:.1f}") for r in churn)
    fd_path = " → ".join(str(r.get("fds")) for r in churn)
    cm = first.get("cycle_ms") or {}
    rows.append(f"| {b} | {f(mem.get('bytes_per_message'))} | {f(hold.get('held'))} / {f(hold.get('requested'))}"
                f" | {f(hold.get('rss_held_kb', 0) / 1024, '{:.0f}')} | {f(hold.get('kib_per_connection'), '{:.1f}')}"
                f" | {' / '.join(f(r.get('cycles_per_s')) for r in runs)} | {sum((r.get('failed') or 0) for r in runs)}"
                f" | {f(cm.get('p50'), '{:.2f}')} / {f(cm.get('p99'), '{:.2f}')} | {fd_path} | {rss_path} |")
    lines.append(json.dumps({"broker": b, "memory": mem, "hold": hold, "churn": churn}))
print()
print("| broker | bytes per queued 1 KiB msg | connections held | RSS held (MiB) | KiB per conn "
      "| churn cycles/s (per round) | churn errors | cycle p50 / p99 ms | fds: base → after each round "
      "| RSS MiB: base → after each round |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(r)
print()
for l in lines:
    print(l)
PY
log "logs in $out"
