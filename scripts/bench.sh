#!/usr/bin/env bash
# `make bench`: builds release binaries, starts ACB (plain and TLS) and nats-server side by side on fixed ports,
# runs acb-bench against both, and rewrites BENCHMARKS.md (charts in docs/bench/).
# p2p, topic and broadcast run in two load shapes: open (`p2p:10`, as fast as the socket and ACB's
# CREDIT take it) and window (`p2p:10/window`, at most --window messages ahead of the slowest receiver).
# Extra arguments go to acb-bench and make a partial run that prints its table but leaves
# BENCHMARKS.md alone, e.g. `scripts/bench.sh --scenarios p2p:10,p2p:10/window --seconds 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh

acb_port=${ACB_BENCH_PORT:-7480}
acb_tls_port=${ACB_TLS_BENCH_PORT:-7481}
nats_port=${NATS_BENCH_PORT:-4280}
secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}
logs=.build/bench
mkdir -p "$logs" docs/bench
# 10,000 idle agents need as many descriptors in the server and in the harness.
ulimit -n "$(ulimit -Hn)"
# The bus alone is measured here: no sidecars from a shell that has `scripts/sidecars.sh env` in it
# (`acb serve` reads these; scripts/bench-sidecars.sh measures them).
unset ACB_POSTGRES_URL ACB_REDIS_URL ACB_KAFKA_BROKERS

swift build -c release
bin=$(swift build -c release --show-bin-path)

# The harness connects every agent from 127.0.0.1: lift the per-address connection cap (1,024).
# No admin API: it is not measured, and the two buses would both want its port.
"$bin/acb" serve --port "$acb_port" --token-secret "$secret" --log-level warning --admin-port off \
  --max-connections-per-address 100000 --stream-dir "$logs/streams" >"$logs/acb.log" 2>&1 &
acb_pid=$!
# The same bus with TLS on (development certificates), to measure what TLS costs.
scripts/dev-certs.sh "$logs/certs"
"$bin/acb" serve --port "$acb_tls_port" --token-secret "$secret" --log-level warning --admin-port off \
  --max-connections-per-address 100000 \
  --stream-dir "$logs/streams-tls" --tls-cert "$logs/certs/server.pem" --tls-key "$logs/certs/server.key" \
  >"$logs/acb-tls.log" 2>&1 &
acb_tls_pid=$!
nats-server -a 127.0.0.1 -p "$nats_port" >"$logs/nats.log" 2>&1 &
nats_pid=$!
trap 'kill "$acb_pid" "$acb_tls_pid" "$nats_pid" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

for port in "$acb_port" "$acb_tls_port" "$nats_port"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done

report=()
# The section scripts/bench-python.sh writes (the Python client against nats-py) is kept.
python_section=$(sed -n '/python-bench:begin/,/python-bench:end/p' BENCHMARKS.md)
if [ $# -eq 0 ]; then
  report=(--json docs/bench/results.json --markdown BENCHMARKS.md
    --command "make bench    # = scripts/bench.sh: release build, acb serve and nats-server on 127.0.0.1, then acb-bench")
fi
"$bin/acb-bench" \
  --acb "127.0.0.1:$acb_port" --acb-pid "$acb_pid" --token-secret "$secret" \
  --acb-tls "127.0.0.1:$acb_tls_port" --acb-tls-pid "$acb_tls_pid" --tls-ca "$logs/certs/ca.pem" \
  --nats "127.0.0.1:$nats_port" --nats-pid "$nats_pid" \
  --version "acb=$(git rev-parse --short HEAD)" \
  --version "nats-server=$(nats-server --version | sed 's/.*v//')" \
  ${report[@]+"${report[@]}"} "$@" || status=$?
# The servers' share of the work per message, counted exactly in one process (allocations) by
# scripts/bench-hotpath.sh, appended to the report of a full run.
if [ $# -eq 0 ]; then
  kill "$acb_pid" "$acb_tls_pid" "$nats_pid" 2>/dev/null || true
  {
    echo
    echo "## Hot path, per message"
    echo
    echo "Decode → route → encode → ACK in one thread, no sockets: \`scripts/bench-hotpath.sh\` (run by \`make bench\`)."
    echo
    scripts/bench-hotpath.sh
    if [ -n "$python_section" ]; then printf '\n%s\n' "$python_section"; fi
  } >>BENCHMARKS.md
fi
exit "${status:-0}"
