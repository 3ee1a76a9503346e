#!/usr/bin/env bash
# The long crash test of issue 7: durable queues keep every accepted message through SIGKILL.
#
# It runs the #[ignore]d test `no_accepted_message_is_lost_when_the_broker_is_killed_long` of
# tests/crash.rs, built in release: sluice as a child process on one data directory, four
# producers streaming N numbered durable messages at-least-once over two queues (one
# consumer each, accepting), SIGKILL at R random points of the stream with a restart on the
# same data directory and port after each, then a clean restart and a drain. It checks that
# no accepted message is lost, that duplicates come only where a crash (or a resend after
# one) explains them, and that each producer's order is kept; tests/crash.rs says how.
#
#   benches/crash.sh [N [R [SEED]]]     defaults: N=100000 R=20, SEED from the clock
#
# CRASH_N, CRASH_R and CRASH_SEED in the environment do the same as the arguments. The seed
# is printed first; passing it again replays the same kill points (thread timing still
# varies, so a failure may need a few runs to come back). The last line is the report:
#
#   crash test: N=100000 R=20 accepted=100000 lost=0 duplicated=412 (seed=..., ...)
#
# Exit status: 0 when every check passed, non-zero otherwise (the failures are listed with
# the first 20 lost or misordered messages, and the broker's last log lines). The short
# version (N=2000, R=3) runs in `cargo test --test crash`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CRASH_N="${1:-${CRASH_N:-100000}}"
export CRASH_R="${2:-${CRASH_R:-20}}"
if [ -n "${3:-}" ]; then
  export CRASH_SEED="$3"
fi

cargo test --release --quiet --test crash --no-run
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --quiet --test crash -- --ignored --exact --nocapture \
  no_accepted_message_is_lost_when_the_broker_is_killed_long 2>&1 | tee "$log" || status=$?
echo
grep '^crash test: ' "$log" | tail -n 1 || echo "crash.sh: no report line; see the output above"
exit "$status"
