#!/usr/bin/env bash
# Contexts side by side with NATS KV (issue 13's targets): ctx-put (durable updates, 10 writers),
# ctx-get (a small cached context, 1 and 10 clients), ctx-watch (one context updated 1,000 times
# a second, 100 watchers) and ctx-cas (10 writers racing compare-and-swap on one counter).
# ACB runs with PostgreSQL, so a put is answered once committed; nats-server runs with JetStream
# (file storage). Prints the table; BENCHMARKS.md records a run of it. Usage:
#   scripts/bench-contexts.sh [acb-bench options, e.g. --seconds 10 --markdown FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
scripts/sidecars.sh up >/dev/null
eval "$(scripts/sidecars.sh env)"

secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}
logs=.build/bench
mkdir -p "$logs"
swift build -c release --product acb
swift build -c release --product acb-bench
bin=$(swift build -c release --show-bin-path)
"$bin/acb" migrate >/dev/null

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"$bin/acb" serve --port 7483 --token-secret "$secret" --log-level warning --admin-port off \
  --postgres-url "$ACB_POSTGRES_URL" --spool-dir "$logs/spool-contexts" --stream-dir "$logs/streams-contexts" \
  >"$logs/acb-contexts.log" 2>&1 &
acb=$!
pids+=("$acb")
rm -rf "$logs/jetstream"
nats-server -a 127.0.0.1 -p 4283 -js -sd "$logs/jetstream" >"$logs/nats-contexts.log" 2>&1 &
nats=$!
pids+=("$nats")
for port in 7483 4283; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
"$bin/acb-bench" --acb 127.0.0.1:7483 --acb-pid "$acb" --nats 127.0.0.1:4283 --nats-pid "$nats" \
  --token-secret "$secret" --scenarios contexts "$@"
