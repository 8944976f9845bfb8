#!/usr/bin/env bash
# A cluster of three nodes against one node, in the same run on the same machine (docs/cluster.md):
# release build, the sidecars (scripts/sidecars.sh), one `acb serve` alone and three
# `acb serve --cluster` nodes, all on the same PostgreSQL, Redis and Kafka; then acb-bench against
# each. With the cluster, consecutive agents connect to different nodes (acb-bench --acb-node), so
# every message of p2p and every request of rr crosses nodes. Prints both tables; BENCHMARKS.md's
# cluster section is written from them by hand.
#
#   scripts/bench-cluster.sh [acb-bench arguments]   default: --scenarios p2p:10,rr:1,rr:10 --seconds 5
#   scripts/bench-cluster.sh failover [RUNS]          recovery from a node's death, RUNS times (default 5):
#       10 receivers on n1, a sender on n2; n1 is killed with SIGKILL (acb-bench --failover-kill),
#       then started again for the next run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
scripts/sidecars.sh up >/dev/null
eval "$(scripts/sidecars.sh env)"

secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}
base=${ACB_BENCH_CLUSTER_PORT:-7580}
logs=.build/bench-cluster
rm -rf "$logs" && mkdir -p "$logs"
ulimit -n "$(ulimit -Hn)"

swift build -c release
bin=$(swift build -c release --show-bin-path)
"$bin/acb" migrate >/dev/null

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
serve() { # NAME PORT [flags…]
  local name=$1 port=$2
  shift 2
  "$bin/acb" serve --port "$port" --token-secret "$secret" --log-level warning --admin-port off \
    --max-connections-per-address 100000 --spool-dir "$logs/$name/spool" --stream-dir "$logs/$name/streams" \
    "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.1
  done
  echo "bench-cluster: $name did not start; its log is $logs/$name.log" >&2
  exit 1
}
cluster="bench-$$"
node() { serve "n$1" $((base + $1)) --cluster "$cluster" --node-id "n$1"; }

if [ "${1:-}" = failover ]; then
  for i in 1 2 3; do node "$i"; done
  for run in $(seq "${2:-5}"); do
    echo "== failover, run $run"
    "$bin/acb-bench" --failover-kill "${pids[0]}" --acb "127.0.0.1:$((base + 1))" \
      --acb-node "127.0.0.1:$((base + 2))" --acb-node "127.0.0.1:$((base + 3))" --token-secret "$secret"
    { wait "${pids[0]}"; } 2>/dev/null || true
    # Its id is free again once its key has expired (3 s).
    sleep 3.5
    node 1
    pids=("${pids[-1]}" "${pids[@]:1:2}")
  done
  exit 0
fi

serve single "$base"
single_pid=${pids[-1]}
for i in 1 2 3; do node "$i"; done

arguments=("$@")
[ $# -gt 0 ] || arguments=(--scenarios p2p:10,rr:1,rr:10 --seconds 5)
echo "== one node"
"$bin/acb-bench" --acb "127.0.0.1:$base" --acb-pid "$single_pid" --token-secret "$secret" "${arguments[@]}"
echo "== three nodes, every message across nodes"
"$bin/acb-bench" --acb "127.0.0.1:$((base + 1))" --acb-node "127.0.0.1:$((base + 2))" \
  --acb-node "127.0.0.1:$((base + 3))" --token-secret "$secret" "${arguments[@]}"
