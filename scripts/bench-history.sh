#!/usr/bin/env bash
# Measures ACB as it was at each given revision, with today's harness, so a claim like "this commit
# took p2p from X to Y" can be checked: builds `acb` (release) at each revision in a git worktree
# under ${ACB_HISTORY_DIR:-/tmp/acb-history}, starts it alone on a fresh port, and runs
#   acb-bench --acb-protocol 1 --scenarios ${ACB_HISTORY_SCENARIOS:-idle:10000,p2p:10/window,topic:100/window,rr:1}
# at every revision: protocol 1 is the one every revision speaks (it has no CREDIT, so acb-bench
# takes only window-shape scenarios with it). Revisions that speak protocol 2 (from 92ff4a1 on, which
# introduced it; older ones refuse its HELLO) are then also measured in the open shape:
#   acb-bench --acb-protocol 2 --scenarios ${ACB_HISTORY_OPEN_SCENARIOS:-p2p:10,topic:100}
# Each run: --seconds 4.
# Usage: scripts/bench-history.sh REV [REV ...]    e.g. scripts/bench-history.sh 8335549 HEAD
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: $0 REV [REV ...]" >&2; exit 2; }
root=${ACB_HISTORY_DIR:-/tmp/acb-history}
scenarios=${ACB_HISTORY_SCENARIOS:-idle:10000,p2p:10/window,topic:100/window,rr:1}
open_scenarios=${ACB_HISTORY_OPEN_SCENARIOS:-p2p:10,topic:100}
secret=acb-development-secret-change-me-0001
port=${ACB_BENCH_PORT:-7480}
ulimit -n "$(ulimit -Hn)"

swift build -c release --product acb-bench
bench=$(swift build -c release --show-bin-path)/acb-bench
# measure PROTOCOL SCENARIOS: today's acb-bench against the bus on $port (process $pid).
measure() {
  echo "-- protocol $1: $2"
  "$bench" --acb "127.0.0.1:$port" --acb-pid "$pid" --token-secret "$secret" --acb-protocol "$1" \
    --scenarios "$2" --seconds 4 2>/dev/null | sed -n '/^scenario/,$p' || echo "(acb-bench exited with status $?)"
}
for rev in "$@"; do
  sha=$(git rev-parse --short "$rev")
  tree="$root/$sha"
  [ -d "$tree" ] || git worktree add -q --detach "$tree" "$sha"
  (cd "$tree" && swift build -c release --product acb >/dev/null)
  # Through the environment, which older revisions ignore: no admin API, and no cap on connections
  # per address (the harness connects every agent from 127.0.0.1).
  ACB_ADMIN_PORT=off ACB_MAX_CONNECTIONS_PER_ADDRESS=100000 "$tree/.build/release/acb" serve --port "$port" \
    --token-secret "$secret" --log-level warning --stream-dir "$tree/.build/streams" >"$tree/.build/acb.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  echo "== $rev ($sha)"
  measure 1 "$scenarios"
  if git merge-base --is-ancestor 92ff4a1 "$sha"; then measure 2 "$open_scenarios"; fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
