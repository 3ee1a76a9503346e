#!/usr/bin/env bash
# Start (or stop, or report on) the peer brokers sluice is benchmarked
# against, each in the background on loopback with its own work and log
# directory under target/peers/<name>/.  Idempotent: starting a running peer
# is a no-op; stopping a stopped one too.
#
#   benches/peers/start.sh  [rabbitmq|activemq|proton|ramqp|all]...   (default: all)
#   benches/peers/stop.sh   [rabbitmq|activemq|proton|ramqp|all]...   (default: all)
#   benches/peers/start.sh --status [names...]
#
# Ports (override with env):   RABBITMQ_AMQP_PORT=5673  ACTIVEMQ_AMQP_PORT=5674
#                              PROTON_AMQP_PORT=5675  RAMQP_AMQP_PORT=5676
# ACTIVEMQ_PERSISTENT=1 starts ActiveMQ with KahaDB (default: in memory).
# ACTIVEMQ_CONNECTOR_URI overrides the connector (default
#   amqp://127.0.0.1:$ACTIVEMQ_AMQP_PORT?maximumConnections=1000&wireFormat.maxFrameSize=1048576).
# ACTIVEMQ_JAVA_OPTS overrides the JVM options (default -Xms256m -Xmx1g).
# RABBITMQ_QUEUES="q other"   queues declared in RabbitMQ after start (default: q).
# PEER_START_TIMEOUT=120      seconds to wait for a port.
#
# With `all`, a peer this machine cannot run (ActiveMQ without its AMQP
# transport) is skipped with a warning; named explicitly it is an error
# (exit 3).  See benches/peers/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peers="${SLUICE_PEERS_DIR:-$root/target/peers}"

action=start
case "${1:-}" in
  --stop) action=stop; shift ;;
  --status) action=status; shift ;;
esac

RABBITMQ_AMQP_PORT="${RABBITMQ_AMQP_PORT:-5673}"
ACTIVEMQ_AMQP_PORT="${ACTIVEMQ_AMQP_PORT:-5674}"
PROTON_AMQP_PORT="${PROTON_AMQP_PORT:-5675}"
RAMQP_AMQP_PORT="${RAMQP_AMQP_PORT:-5676}"
RABBITMQ_QUEUES="${RABBITMQ_QUEUES:-q}"
TIMEOUT="${PEER_START_TIMEOUT:-120}"

log() { echo "peers: $*"; }
die() { echo "peers: ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE PATTERN: the pid in PIDFILE is running and its command
# line matches PATTERN (guards against a recycled pid).
pid_alive() {
  local f="$1" pat="$2" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc 0-9 <"$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pat"
}

# wait_port NAME PORT PIDFILE PATTERN LOG
# (PATTERN is not checked here: just after the fork the child's command line
# is still the shell's, before nohup/setsid exec the peer.)
wait_port() {
  local name="$1" port="$2" pidf="$3" pat="$4" logf="$5" i=0 pid
  while ! port_open "$port"; do
    pid="$(tr -dc 0-9 <"$pidf" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "peers: ERROR: $name exited before listening on 127.0.0.1:$port; last lines of $logf:" >&2
      tail -n 30 "$logf" >&2 2>/dev/null || true
      exit 1
    fi
    if [ "$i" -ge "$((TIMEOUT * 5))" ]; then
      echo "peers: ERROR: $name not accepting connections on 127.0.0.1:$port after ${TIMEOUT}s; see $logf" >&2
      tail -n 30 "$logf" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2; i=$((i + 1))
  done
}

# kill_wait PIDFILE PATTERN SECONDS: SIGTERM, then SIGKILL after SECONDS.
kill_wait() {
  local f="$1" pat="$2" secs="$3" pid i=0
  pid_alive "$f" "$pat" || { rm -f "$f"; return 0; }
  pid="$(tr -dc 0-9 <"$f")"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$i" -ge "$((secs * 5))" ]; then
      log "pid $pid did not stop after ${secs}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2; i=$((i + 1))
  done
  rm -f "$f"
}

busy_port() { # refuse to start when someone else holds our port
  local name="$1" port="$2"
  if port_open "$port"; then
    die "$name: 127.0.0.1:$port is already in use by another process ($(ss -ltnpH "sport = :$port" 2>/dev/null | sed 's/.*users://' | head -1)); stop it or set ${3}"
  fi
}

# ============================ RabbitMQ ======================================
rmq_dir="$peers/rabbitmq"
rmq_node="sluice_peer@localhost"
rmq_pidf="$rmq_dir/rabbitmq.pid"
rmq_log="$rmq_dir/log/startup.log"

rmq_server_dir() { ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-* 2>/dev/null | sort -V | tail -1; }

rmq_env() { # exported into a subshell only
  export HOME="$rmq_dir/home"
  export RABBITMQ_NODENAME="$rmq_node" RABBITMQ_USE_LONGNAME=false
  export RABBITMQ_CONF_ENV_FILE="$rmq_dir/rabbitmq-env.conf"
  export RABBITMQ_CONFIG_FILE="$rmq_dir/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$rmq_dir/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$rmq_dir/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$rmq_dir/mnesia"
  export RABBITMQ_LOG_BASE="$rmq_dir/log"
  export RABBITMQ_PLUGINS_EXPAND_DIR="$rmq_dir/plugins-expand"
  export RABBITMQ_PID_FILE="$rmq_pidf"
  export RABBITMQ_DIST_PORT="$((RABBITMQ_AMQP_PORT + 20000))"
  # epmd (Erlang port mapper, 4369) on loopback only
  export ERL_EPMD_ADDRESS=127.0.0.1
  # Erlang distribution (rabbitmqctl <-> node) on loopback only
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
rmqctl() { ( rmq_env; /usr/lib/rabbitmq/bin/rabbitmqctl -n "$rmq_node" "$@" ); }

rmq_start() {
  local sdir ver major
  sdir="$(rmq_server_dir)"; [ -n "$sdir" ] || die "rabbitmq-server is not installed: run benches/peers/install.sh"
  ver="${sdir##*rabbitmq_server-}"; major="${ver%%.*}"
  if pid_alive "$rmq_pidf" beam && port_open "$RABBITMQ_AMQP_PORT"; then
    log "rabbitmq already running (pid $(cat "$rmq_pidf"), 127.0.0.1:$RABBITMQ_AMQP_PORT)"; return 0
  fi
  if pid_alive "$rmq_pidf" beam; then
    log "rabbitmq is starting (pid $(cat "$rmq_pidf")); waiting"
  else
    busy_port rabbitmq "$RABBITMQ_AMQP_PORT" RABBITMQ_AMQP_PORT
    mkdir -p "$rmq_dir"/{home,mnesia,log,plugins-expand}
    : >"$rmq_dir/rabbitmq-env.conf"   # shadow /etc/rabbitmq/rabbitmq-env.conf
    {
      echo "# generated by benches/peers/start.sh for RabbitMQ $ver"
      echo "# AMQP 0-9-1 and AMQP 1.0 share this listener (protocol header decides)."
      echo "listeners.tcp.default = 127.0.0.1:$RABBITMQ_AMQP_PORT"
      echo "loopback_users.guest = true"
      echo "log.file.level = info"
      echo "log.console = false"
      if [ "$major" -ge 4 ]; then
        echo "# RabbitMQ 4: AMQP 1.0 is built in; SASL ANONYMOUS logs in as guest"
        echo "auth_mechanisms.1 = PLAIN"
        echo "auth_mechanisms.2 = AMQPLAIN"
        echo "auth_mechanisms.3 = ANONYMOUS"
        echo "anonymous_login_user = guest"
        echo "anonymous_login_pass = guest"
      else
        echo "# RabbitMQ 3.x rabbitmq_amqp1_0 plugin: SASL ANONYMOUS logs in as this user"
        echo "amqp1_0.default_user = guest"
        echo "amqp1_0.default_vhost = /"
        echo "amqp1_0.protocol_strict_mode = false"
      fi
    } >"$rmq_dir/rabbitmq.conf"
    if ls -d "$sdir"/plugins/rabbitmq_amqp1_0-* >/dev/null 2>&1; then
      echo "[rabbitmq_amqp1_0]." >"$rmq_dir/enabled_plugins"   # 3.x; a no-op shim on 4.0
    else
      echo "[]." >"$rmq_dir/enabled_plugins"                   # 4.x without the shim
    fi
    rm -f "$rmq_pidf"
    log "starting rabbitmq $ver as $rmq_node on 127.0.0.1:$RABBITMQ_AMQP_PORT (logs: $rmq_dir/log/)"
    ( rmq_env; cd "$rmq_dir"
      nohup setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$rmq_log" 2>&1 </dev/null & )
    # the node writes its own pid file once the VM is up
    local i=0
    until [ -s "$rmq_pidf" ]; do
      [ "$i" -lt 150 ] || { tail -n 30 "$rmq_log" >&2; die "rabbitmq wrote no pid file in 30s; see $rmq_log and $rmq_dir/log/"; }
      sleep 0.2; i=$((i + 1))
    done
  fi
  wait_port rabbitmq "$RABBITMQ_AMQP_PORT" "$rmq_pidf" beam "$rmq_dir/log/$rmq_node.log"
  rmqctl await_startup >/dev/null 2>&1 || true
  # Pre-declare the benchmark queues.  RabbitMQ 3.x's plugin declares a
  # queue on attach with durable = the terminus' durable flag (0 for most
  # clients) and fails the attach if an existing queue differs, so declare
  # them non-durable there; RabbitMQ 4 never declares on attach (/queues/<q>
  # must exist) and deprecates transient queues, so declare them durable.
  local q durable=false
  [ "$major" -ge 4 ] && durable=true
  for q in $RABBITMQ_QUEUES; do
    rmqctl eval "rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"$q\">>), $durable, false, [], none, <<\"sluice-peers\">>)." \
      >"$rmq_dir/declare-$q.log" 2>&1 || log "warning: could not declare queue '$q' (see $rmq_dir/declare-$q.log)"
  done
  log "rabbitmq up: amqp://guest:guest@127.0.0.1:$RABBITMQ_AMQP_PORT (or anonymous); queues: $RABBITMQ_QUEUES"
}

rmq_stop() {
  if ! pid_alive "$rmq_pidf" beam; then log "rabbitmq not running"; rm -f "$rmq_pidf"; return 0; fi
  log "stopping rabbitmq (pid $(cat "$rmq_pidf"))"
  rmqctl stop "$rmq_pidf" >>"$rmq_dir/log/stop.log" 2>&1 || true
  kill_wait "$rmq_pidf" beam 30
  # epmd is started on demand by the first Erlang node; end it if no node is left
  if command -v epmd >/dev/null 2>&1 && ! epmd -names 2>/dev/null | grep -q '^name '; then
    epmd -kill >/dev/null 2>&1 || true
  fi
}

rmq_status() {
  if pid_alive "$rmq_pidf" beam; then
    echo "rabbitmq: running pid $(cat "$rmq_pidf"), 127.0.0.1:$RABBITMQ_AMQP_PORT $(port_open "$RABBITMQ_AMQP_PORT" && echo open || echo closed)"
  else echo "rabbitmq: stopped"; fi
}

# ============================ ActiveMQ ======================================
amq_dir="$peers/activemq"
amq_pidf="$amq_dir/activemq.pid"
amq_home=/usr/share/activemq

# The AMQP transport (activemq-amqp + proton-j) is not in Debian's package;
# jars dropped into target/peers/activemq/lib/ are picked up
# (activemq.base/lib is on the broker's class path).
amq_amqp_jar() {
  ls "$amq_home"/lib/activemq-amqp*.jar "$amq_home"/lib/optional/activemq-amqp*.jar \
     /usr/share/java/activemq-amqp*.jar "$amq_dir"/lib/activemq-amqp*.jar 2>/dev/null | head -1
}

amq_available() { [ -f "$amq_home/bin/activemq.jar" ] && [ -n "$(amq_amqp_jar)" ]; }

amq_why() {
  if [ ! -f "$amq_home/bin/activemq.jar" ]; then
    echo "activemq is not installed: run benches/peers/install.sh"
  else
    echo "Debian's activemq $(dpkg-query -W -f='${Version}' activemq 2>/dev/null) has no AMQP transport" \
         "(no activemq-amqp*.jar, no proton-j; Debian strips that module) and Maven Central is not reachable here." \
         "Put activemq-amqp-<ver>.jar and proton-j-<ver>.jar into $amq_dir/lib/ to enable it."
  fi
}

amq_start() {
  if pid_alive "$amq_pidf" activemq.jar && port_open "$ACTIVEMQ_AMQP_PORT"; then
    log "activemq already running (pid $(cat "$amq_pidf"), 127.0.0.1:$ACTIVEMQ_AMQP_PORT)"; return 0
  fi
  local uri="${ACTIVEMQ_CONNECTOR_URI:-amqp://127.0.0.1:$ACTIVEMQ_AMQP_PORT?maximumConnections=1000&wireFormat.maxFrameSize=1048576}"
  case "$uri" in
    amqp*) amq_available || { echo "peers: activemq: $(amq_why)" >&2; return 3; } ;;
  esac
  local persistent=false
  [ "${ACTIVEMQ_PERSISTENT:-0}" = 1 ] && persistent=true
  if ! pid_alive "$amq_pidf" activemq.jar; then
    busy_port activemq "$ACTIVEMQ_AMQP_PORT" ACTIVEMQ_AMQP_PORT
    mkdir -p "$amq_dir"/{conf,data,tmp,lib}
    # Debian's build logs through log4j 1.2 (slf4j-log4j12); the log4j2 file is
    # kept for builds that use log4j2.
    cp /etc/activemq/instances-available/main/log4j2.properties "$amq_dir/conf/log4j2.properties" 2>/dev/null || true
    cat >"$amq_dir/conf/log4j.properties" <<'LOG4J'
log4j.rootLogger=INFO, console, logfile
log4j.logger.org.apache.activemq.spring=WARN
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%5p | %m%n
log4j.appender.logfile=org.apache.log4j.RollingFileAppender
log4j.appender.logfile.file=${activemq.data}/activemq.log
log4j.appender.logfile.maxFileSize=10MB
log4j.appender.logfile.maxBackupIndex=2
log4j.appender.logfile.append=true
log4j.appender.logfile.layout=org.apache.log4j.PatternLayout
log4j.appender.logfile.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n
LOG4J
    cat >"$amq_dir/conf/activemq.xml" <<EOF
<!-- generated by benches/peers/start.sh (copy of Debian's instances-available/main,
     AMQP connector on 127.0.0.1:$ACTIVEMQ_AMQP_PORT; persistent=$persistent). -->
<beans
  xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
    <broker xmlns="http://activemq.apache.org/schema/core"
            useJmx="false" brokerName="sluice-peer" schedulerSupport="false"
            persistent="$persistent" dataDirectory="\${activemq.data}">
        <persistenceAdapter>
            <kahaDB directory="\${activemq.data}/kahadb"/>
        </persistenceAdapter>
        <systemUsage>
            <systemUsage>
                <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
                <storeUsage><storeUsage limit="8 gb"/></storeUsage>
                <tempUsage><tempUsage limit="4 gb"/></tempUsage>
            </systemUsage>
        </systemUsage>
        <!-- no authentication plugin: SASL ANONYMOUS and any PLAIN user are accepted -->
        <transportConnectors>
            <transportConnector name="peer"
                uri="${uri//&/&amp;}"/>
        </transportConnectors>
    </broker>
</beans>
EOF
    local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
    log "starting activemq on 127.0.0.1:$ACTIVEMQ_AMQP_PORT (persistent=$persistent; log: $amq_dir/data/activemq.log)"
    ( cd "$amq_dir"
      # shellcheck disable=SC2086
      nohup setsid "$java" ${ACTIVEMQ_JAVA_OPTS:--Xms256m -Xmx1g} \
        -Djava.io.tmpdir="$amq_dir/tmp" \
        -Dactivemq.classpath="$amq_dir/conf" \
        -Dactivemq.home="$amq_home" -Dactivemq.base="$amq_dir" \
        -Dactivemq.conf="$amq_dir/conf" -Dactivemq.data="$amq_dir/data" \
        -Dlog4j.configuration="file:$amq_dir/conf/log4j.properties" \
        -Dlog4j2.configurationFile="$amq_dir/conf/log4j2.properties" \
        -jar "$amq_home/bin/activemq.jar" start "xbean:file:$amq_dir/conf/activemq.xml" \
        >"$amq_dir/console.log" 2>&1 </dev/null &
      echo $! >"$amq_pidf" )
  fi
  wait_port activemq "$ACTIVEMQ_AMQP_PORT" "$amq_pidf" activemq.jar "$amq_dir/console.log"
  log "activemq up: ${ACTIVEMQ_CONNECTOR_URI:-amqp://127.0.0.1:$ACTIVEMQ_AMQP_PORT} (anonymous)"
}

amq_stop() {
  if ! pid_alive "$amq_pidf" activemq.jar; then log "activemq not running"; rm -f "$amq_pidf"; return 0; fi
  log "stopping activemq (pid $(cat "$amq_pidf"))"
  kill_wait "$amq_pidf" activemq.jar 30
}

amq_status() {
  if pid_alive "$amq_pidf" activemq.jar; then
    echo "activemq: running pid $(cat "$amq_pidf"), 127.0.0.1:$ACTIVEMQ_AMQP_PORT $(port_open "$ACTIVEMQ_AMQP_PORT" && echo open || echo closed)"
  elif amq_available; then echo "activemq: stopped"
  else echo "activemq: unavailable: $(amq_why)"; fi
}

# ============================ Proton C broker ===============================
pn_dir="$peers/proton"
pn_pidf="$pn_dir/broker.pid"
pn_bin="$peers/proton-broker"

pn_start() {
  if pid_alive "$pn_pidf" proton-broker && port_open "$PROTON_AMQP_PORT"; then
    log "proton broker already running (pid $(cat "$pn_pidf"), 127.0.0.1:$PROTON_AMQP_PORT)"; return 0
  fi
  [ -x "$pn_bin" ] || die "$pn_bin missing: run benches/peers/install.sh"
  if ! pid_alive "$pn_pidf" proton-broker; then
    busy_port proton "$PROTON_AMQP_PORT" PROTON_AMQP_PORT
    mkdir -p "$pn_dir"
    # broker.c reads ./ssl-certs (it prints a warning and serves plain AMQP without it)
    [ -e "$peers/ssl-certs" ] && ln -sfn "$peers/ssl-certs" "$pn_dir/ssl-certs"
    log "starting proton broker on 127.0.0.1:$PROTON_AMQP_PORT (log: $pn_dir/broker.log)"
    ( cd "$pn_dir"
      nohup setsid "$pn_bin" 127.0.0.1 "$PROTON_AMQP_PORT" >"$pn_dir/broker.log" 2>&1 </dev/null &
      echo $! >"$pn_pidf" )
  fi
  wait_port proton "$PROTON_AMQP_PORT" "$pn_pidf" proton-broker "$pn_dir/broker.log"
  log "proton broker up: amqp://127.0.0.1:$PROTON_AMQP_PORT (anonymous, any address)"
}

pn_stop() {
  if ! pid_alive "$pn_pidf" proton-broker; then log "proton broker not running"; rm -f "$pn_pidf"; return 0; fi
  log "stopping proton broker (pid $(cat "$pn_pidf"))"
  kill_wait "$pn_pidf" proton-broker 10
}

pn_status() {
  if pid_alive "$pn_pidf" proton-broker; then
    echo "proton: running pid $(cat "$pn_pidf"), 127.0.0.1:$PROTON_AMQP_PORT $(port_open "$PROTON_AMQP_PORT" && echo open || echo closed)"
  else echo "proton: stopped"; fi
}

# ============================ rAMQP broker ==================================
ra_dir="$peers/ramqp"
ra_pidf="$ra_dir/broker.pid"
ra_bin="$ra_dir/bin/ramqp-brokerd"

ra_start() {
  if pid_alive "$ra_pidf" ramqp-brokerd && port_open "$RAMQP_AMQP_PORT"; then
    log "ramqp broker already running (pid $(cat "$ra_pidf"), 127.0.0.1:$RAMQP_AMQP_PORT)"; return 0
  fi
  [ -x "$ra_bin" ] || die "$ra_bin missing: run benches/peers/install.sh"
  if ! pid_alive "$ra_pidf" ramqp-brokerd; then
    busy_port ramqp "$RAMQP_AMQP_PORT" RAMQP_AMQP_PORT
    mkdir -p "$ra_dir/work"
    log "starting ramqp broker on 127.0.0.1:$RAMQP_AMQP_PORT (log: $ra_dir/broker.log)"
    ( cd "$ra_dir/work"
      nohup setsid "$ra_bin" --listen "127.0.0.1:$RAMQP_AMQP_PORT" >"$ra_dir/broker.log" 2>&1 </dev/null &
      echo $! >"$ra_pidf" )
  fi
  wait_port ramqp "$RAMQP_AMQP_PORT" "$ra_pidf" ramqp-brokerd "$ra_dir/broker.log"
  log "ramqp broker up: amqp://127.0.0.1:$RAMQP_AMQP_PORT (in memory)"
}

ra_stop() {
  if ! pid_alive "$ra_pidf" ramqp-brokerd; then log "ramqp broker not running"; rm -f "$ra_pidf"; return 0; fi
  log "stopping ramqp broker (pid $(cat "$ra_pidf"))"
  kill_wait "$ra_pidf" ramqp-brokerd 10
}

ra_status() {
  if pid_alive "$ra_pidf" ramqp-brokerd; then
    echo "ramqp: running pid $(cat "$ra_pidf"), 127.0.0.1:$RAMQP_AMQP_PORT $(port_open "$RAMQP_AMQP_PORT" && echo open || echo closed)"
  else echo "ramqp: stopped"; fi
}

# ============================ dispatch ======================================
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(all)
all=0
expanded=()
for n in "${names[@]}"; do
  case "$n" in
    all) all=1; expanded+=(rabbitmq activemq proton ramqp) ;;
    rabbitmq|rabbit|rmq) expanded+=(rabbitmq) ;;
    activemq|amq) expanded+=(activemq) ;;
    proton|proton-broker) expanded+=(proton) ;;
    ramqp|ramqp-broker) expanded+=(ramqp) ;;
    *) die "unknown peer '$n' (rabbitmq|activemq|proton|ramqp|all)" ;;
  esac
done

rc=0
for n in "${expanded[@]}"; do
  case "$action:$n" in
    start:rabbitmq) rmq_start ;;
    start:proton) pn_start ;;
    start:activemq)
      set +e; amq_start; r=$?; set -e
      if [ "$r" -eq 3 ] && [ "$all" -eq 1 ]; then log "skipping activemq (unavailable on this machine)"
      elif [ "$r" -ne 0 ]; then rc="$r"; fi ;;
    stop:rabbitmq) rmq_stop ;;
    stop:activemq) amq_stop ;;
    stop:proton) pn_stop ;;
    start:ramqp) ra_start ;;
    stop:ramqp) ra_stop ;;
    status:ramqp) ra_status ;;
    status:rabbitmq) rmq_status ;;
    status:activemq) amq_status ;;
    status:proton) pn_status ;;
  esac
done
exit "$rc"
