#!/usr/bin/env bash
# What the persistence sidecars cost and carry, measured on this machine (issue 3's targets):
#   1. p2p:10 between online agents with no sidecars and with all three (PostgreSQL, Redis,
#      Kafka), alternating, twice each, so the spread between runs shows;
#   2. durable:10: sends to offline agents, each committed to PostgreSQL before "queued"; and
#      durable-online:10: durable sends to online agents (docs/protocol.md 5.1b), p2p:10 beside it,
#      then on a bus with PostgreSQL alone, with a window of 1,000 and of 20 messages per sender
#      (issue 16's target: 40,000 a second with p99 at most 10 ms);
#   3. the audit pipeline alone: --audit-events events journaled and confirmed by the broker.
# Prints the figures; docs/benchmarks-notes.md records a run of it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
scripts/sidecars.sh up >/dev/null
eval "$(scripts/sidecars.sh env)"
# Each bus gets its sidecars from its flags alone: `acb serve` would read these too.
postgres=$ACB_POSTGRES_URL redis=$ACB_REDIS_URL kafka=$ACB_KAFKA_BROKERS
unset ACB_POSTGRES_URL ACB_REDIS_URL ACB_KAFKA_BROKERS

seconds=${BENCH_SECONDS:-5}
events=${BENCH_AUDIT_EVENTS:-2000000}
secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}
logs=.build/bench
mkdir -p "$logs"
swift build -c release
bin=$(swift build -c release --show-bin-path)
"$bin/acb" migrate --postgres-url "$postgres" >/dev/null

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
# start NAME PORT [serve flags…]: one bus, its pid in $started.
start() {
  local name=$1 port=$2
  shift 2
  "$bin/acb" serve --port "$port" --token-secret "$secret" --log-level warning --admin-port off \
    --stream-dir "$logs/streams-$name" "$@" >"$logs/acb-$name.log" 2>&1 &
  started=$!
  pids+=("$started")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done
  echo "acb ($name) did not start: $logs/acb-$name.log" >&2
  exit 1
}
# bench ARGS…: the run's row of the harness's table (rate, latency percentiles, server CPU).
bench() { "$bin/acb-bench" --token-secret "$secret" --seconds "$seconds" "$@" 2>/dev/null | grep -E '^[^ ]+ +acb ' | tr -s ' '; }

start plain 7481
plain=$started
rm -rf "$logs/spool" "$logs/spool-postgres"
start sidecars 7482 --postgres-url "$postgres" --redis-url "$redis" --kafka-brokers "$kafka" --spool-dir "$logs/spool"
sidecars=$started
start postgres 7483 --postgres-url "$postgres" --spool-dir "$logs/spool-postgres"
postgres_only=$started

for round in 1 2; do
  echo "round $round, no sidecars:   $(bench --acb 127.0.0.1:7481 --acb-pid "$plain" --scenarios p2p:10)"
  echo "round $round, all sidecars:  $(bench --acb 127.0.0.1:7482 --acb-pid "$sidecars" --scenarios p2p:10)"
done
echo "durable, all sidecars:   $(bench --acb 127.0.0.1:7482 --acb-pid "$sidecars" --scenarios durable:10)"
echo "durable to online agents: $(bench --acb 127.0.0.1:7482 --acb-pid "$sidecars" --scenarios durable-online:10)"
echo "the same, not durable:    $(bench --acb 127.0.0.1:7482 --acb-pid "$sidecars" --scenarios p2p:10/window)"
for window in 1000 20 20 20; do
  echo "durable to online agents, PostgreSQL only, window $window: $(bench --acb 127.0.0.1:7483 \
    --acb-pid "$postgres_only" --scenarios durable-online:10 --window "$window")"
done
"$bin/acb-bench" --audit-events "$events" --kafka-brokers "$kafka"
