#!/usr/bin/env bash
# Stop peer brokers started by start.sh: benches/peers/stop.sh [rabbitmq|activemq|proton|ramqp|all]...
# (default: all).  Idempotent.  All the logic lives in start.sh.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/start.sh" --stop "$@"
