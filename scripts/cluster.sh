#!/usr/bin/env bash
# A cluster of ACB nodes (docs/cluster.md) as local processes, for development and tests, on the
# sidecars scripts/sidecars.sh starts (it is run first). Node I (1..N) is `acb serve --cluster dev
# --node-id nI`, agents on port ACB_CLUSTER_PORT + 10*(I-1) (7500, 7510, 7520, …) and its admin API
# on the port after it, plain TCP; logs and pid files under <checkout>/.cluster/.
#
#   scripts/cluster.sh up N       start nodes 1..N (those not running yet)
#   scripts/cluster.sh down       stop every node (SIGTERM: each leaves the cluster and drains)
#   scripts/cluster.sh status     each node: pid, ports, alive or not
#
# Tokens: `acb token issue --agent NAME --tenant demo --token-secret "$ACB_TOKEN_SECRET"` (the
# Makefile's development secret by default).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
dir=$root/.cluster
base=${ACB_CLUSTER_PORT:-7500}
secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}

say() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }

pid_of() { if [ -r "$dir/run/n$1.pid" ]; then head -n 1 "$dir/run/n$1.pid"; fi; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
port_of() { echo $((base + 10 * ($1 - 1))); }
nodes() { find "$dir/run" -name 'n*.pid' 2>/dev/null | sed 's/.*\/n\([0-9]*\)\.pid/\1/' | sort -n; }

up() {
  local count=${1:-3} i port acb
  [[ $count =~ ^[1-9][0-9]?$ ]] || die "up takes a node count from 1 to 99, got '$count'"
  "$root/scripts/sidecars.sh" up >/dev/null
  eval "$("$root/scripts/sidecars.sh" env)"
  (cd "$root" && swift build --product acb >/dev/null)
  acb=$(cd "$root" && swift build --show-bin-path)/acb
  "$acb" migrate >/dev/null
  mkdir -p "$dir/run" "$dir/logs"
  for i in $(seq 1 "$count"); do
    port=$(port_of "$i")
    if running "$i"; then
      say "n$i already runs (pid $(pid_of "$i"), port $port)"
      continue
    fi
    setsid "$acb" serve --cluster dev --node-id "n$i" --port "$port" --admin-port $((port + 1)) \
      --token-secret "$secret" --spool-dir "$dir/spool/n$i" --stream-dir "$dir/streams/n$i" \
      >"$dir/logs/n$i.log" 2>&1 < /dev/null &
    echo $! >"$dir/run/n$i.pid"
  done
  for i in $(seq 1 "$count"); do
    port=$(port_of "$i")
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      running "$i" || die "n$i exited; its log is $dir/logs/n$i.log: $(tail -n 3 "$dir/logs/n$i.log")"
      [ "$SECONDS" -lt "$deadline" ] || die "n$i did not listen on $port within 30 s; its log is $dir/logs/n$i.log"
      sleep 0.2
    done
    say "n$i up: agents on 127.0.0.1:$port, admin API on 127.0.0.1:$((port + 1)) (pid $(pid_of "$i"))"
  done
}

down() {
  local i pid
  for i in $(nodes); do
    pid=$(pid_of "$i")
    if running "$i"; then
      kill -TERM "$pid"
      local deadline=$((SECONDS + 30))
      while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
        sleep 0.2
      done
      say "n$i stopped"
    fi
    rm -f "$dir/run/n$i.pid"
  done
}

status() {
  local i
  for i in $(nodes); do
    if running "$i"; then
      say "n$i running (pid $(pid_of "$i")): agents on 127.0.0.1:$(port_of "$i")"
    else
      say "n$i not running (its log: $dir/logs/n$i.log)"
    fi
  done
}

case ${1:-} in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  *) die "usage: scripts/cluster.sh up [N] | down | status" ;;
esac
