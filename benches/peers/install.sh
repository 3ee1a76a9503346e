#!/usr/bin/env bash
# Install the peer brokers sluice is benchmarked against, from Debian's
# packages, and compile the Qpid Proton C example broker and clients into
# target/peers/.  Idempotent: installs only what is missing, runs
# `apt-get update` at most once and only when a package has no candidate,
# and recompiles a Proton program only when its source is newer.
#
# Usage: benches/peers/install.sh            (as root, or with sudo on PATH)
# See benches/peers/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peers="${SLUICE_PEERS_DIR:-$root/target/peers}"

packages=(
  rabbitmq-server                 # RabbitMQ + Erlang; AMQP 1.0 = rabbitmq_amqp1_0 (3.x) / built in (4.x)
  activemq                        # ActiveMQ Classic (see README: Debian's build has no AMQP transport)
  libqpid-proton11-dev            # Proton C headers + libqpid-proton.so
  libqpid-proton11-dev-examples   # broker.c, send.c, receive.c
  gcc
  pkg-config
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

t0=$(date +%s)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
has_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'; }

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing: ${missing[*]}"
  need_update=0
  for p in "${missing[@]}"; do has_candidate "$p" || need_update=1; done
  if [ "$need_update" -eq 1 ]; then
    echo "install.sh: apt-get update (a package had no candidate)"
    $SUDO apt-get update -q
  fi
  # Keep the packages' own services (RabbitMQ on 5672, which sluice uses)
  # from being started by the install: invoke-rc.d honours policy-rc.d.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup_policy() { if [ "$made_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup_policy EXIT
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    echo "install.sh: install failed; retrying after apt-get update"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  cleanup_policy; made_policy=0
  # Belt and braces: if a system-wide instance got started anyway (a machine
  # with a real init and no policy-rc.d), stop it so 5672 stays free.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    $SUDO systemctl stop rabbitmq-server || true
    $SUDO systemctl disable rabbitmq-server >/dev/null 2>&1 || true
  fi
else
  echo "install.sh: all packages already installed"
fi

# --- Proton C example programs -> target/peers/ --------------------------
src=""
for d in /usr/share/proton/examples/c /usr/share/proton*/examples/c /usr/share/doc/libqpid-proton*/examples/c; do
  if [ -f "$d/broker.c" ]; then src="$d"; break; fi
done
if [ -z "$src" ]; then
  echo "install.sh: ERROR: Proton C examples (broker.c) not found under /usr/share/proton*/examples/c" >&2
  exit 1
fi
mkdir -p "$peers"

cflags="$(pkg-config --cflags libqpid-proton 2>/dev/null || true)"
libs="$(pkg-config --libs libqpid-proton 2>/dev/null || echo -lqpid-proton)"
build() { # build NAME.c -> target/peers/proton-NAME
  local name="$1" out="$peers/proton-$1"
  if [ -x "$out" ] && [ "$out" -nt "$src/$name.c" ]; then return 0; fi
  echo "install.sh: compiling $src/$name.c -> $out"
  # Debian's libqpid-proton.so bundles core + proactor; older/other layouts
  # split them, hence the fallback.
  # shellcheck disable=SC2086
  gcc -O2 -g -Wall -o "$out" $cflags "$src/$name.c" $libs -lpthread 2>"$out.build.log" ||
    gcc -O2 -g -Wall -o "$out" $cflags "$src/$name.c" -lqpid-proton-proactor -lqpid-proton-core -lpthread 2>>"$out.build.log" || {
      echo "install.sh: ERROR: compiling $name.c failed; see $out.build.log" >&2; exit 1; }
  [ -s "$out.build.log" ] || rm -f "$out.build.log"
}
build broker
build send
build receive
# broker.c loads its TLS certificate from ./ssl-certs (relative); start.sh
# runs it from target/peers/proton/ which links here.
ln -sfn "$src/ssl-certs" "$peers/ssl-certs"

# --- rAMQP broker (crates.io) ------------------------------------------------
# Installed with cargo into target/peers/ramqp/bin/ramqp-brokerd; skipped when present.
ramqp_bin="$peers/ramqp/bin/ramqp-brokerd"
if [ ! -x "$ramqp_bin" ]; then
  echo "install.sh: cargo install ramqp-broker --root $peers/ramqp"
  cargo install ramqp-broker --root "$peers/ramqp"
fi
# Its durable queues need the store-redb feature: a second build, for compare.sh --config durable.
ramqp_durable="$peers/ramqp-durable/bin/ramqp-brokerd"
if [ ! -x "$ramqp_durable" ]; then
  echo "install.sh: cargo install ramqp-broker --features store-redb --root $peers/ramqp-durable"
  cargo install ramqp-broker --features store-redb --root "$peers/ramqp-durable"
fi

t1=$(date +%s)
# --- versions --------------------------------------------------------------
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
rmq_dir="$(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-* 2>/dev/null | sort -V | tail -1)"
amqp_plugin="$(ls -d "$rmq_dir"/plugins/rabbitmq_amqp1_0-* 2>/dev/null | head -1)"
amq_amqp="$(ls /usr/share/activemq/lib/activemq-amqp*.jar /usr/share/activemq/lib/optional/activemq-amqp*.jar \
             /usr/share/java/activemq-amqp*.jar 2>/dev/null | head -1 || true)"
echo
echo "== peer versions (install took $((t1 - t0)) s) =="
echo "RabbitMQ:      $(ver rabbitmq-server) (server ${rmq_dir##*-}; Erlang $(ver erlang-base))"
if [ -n "$amqp_plugin" ]; then amqp10="plugin ${amqp_plugin##*/} (enabled by start.sh)"; else amqp10="built in (RabbitMQ >= 4), no plugin"; fi
echo "  AMQP 1.0:    $amqp10"
echo "ActiveMQ:      $(ver activemq) (Java: $(java -version 2>&1 | head -1))"
echo "  AMQP:        ${amq_amqp:-NOT AVAILABLE: the Debian activemq package ships no activemq-amqp transport (see README)}"
echo "Qpid Proton C: $(ver libqpid-proton11) (examples $(ver libqpid-proton11-dev-examples))"
echo "  built:       $peers/proton-broker $peers/proton-send $peers/proton-receive"
echo "rAMQP broker:  $ramqp_bin $( [ -x "$ramqp_bin" ] && echo "(installed)" || echo "(MISSING)")"
echo "  durable:     $ramqp_durable $( [ -x "$ramqp_durable" ] && echo "(installed, store-redb)" || echo "(MISSING)")"
