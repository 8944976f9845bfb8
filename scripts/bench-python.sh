#!/usr/bin/env bash
# The Python client (clients/python) against nats-py on nats-server, the same scenarios in the same
# shape: builds the release bus, starts it and nats-server side by side on fixed ports, and runs
# clients/python/bench/run.py (p2p, request/reply, stream; each 5 times per system, one system after
# the other). Prints a table of medians and ranges.
#   scripts/bench-python.sh [--write] [--no-build] [run.py arguments, e.g. --scenarios p2p --rounds 9]
# --write rewrites the section "Python client vs nats-py" of BENCHMARKS.md (between its markers) and
# leaves the rest of the file alone. --no-build uses the release binary already in .build/release.
# The clients run from the working tree (PYTHONPATH=clients/python/src; ACB_PYBENCH_CLIENT_SRC names
# another copy of the client to try), with the venv of scripts/python-venv.sh (.python/, with nats-py).
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
build=1
passed=()
for argument in "$@"; do
  case "$argument" in
    --write) write=1 ;;
    --no-build) build=0 ;;
    *) passed+=("$argument") ;;
  esac
done

scripts/python-venv.sh
python=.python/bin/python

acb_port=${ACB_PYBENCH_PORT:-7484}
nats_port=${NATS_PYBENCH_PORT:-4284}
secret=${ACB_TOKEN_SECRET:-acb-development-secret-change-me-0001}
logs=.build/bench-python
rm -rf "$logs"
mkdir -p "$logs/streams" "$logs/spool" "$logs/downloads"

if [ "$build" -eq 1 ]; then
  swift build -c release --product acb
fi
bin=.build/release

# The defaults of `acb serve` but for the admin API (not measured), its directories (kept apart
# from other runs) and the per-agent rate limit (100,000 commands/s, burst 200,000: one Python sender
# goes past it, and nats-server has none); nats-server as it ships (max_payload 1 MiB: the stream goes
# in 1,000,000-byte messages).
"$bin/acb" serve --port "$acb_port" --token-secret "$secret" --log-level warning --admin-port off \
  --rate-limit 0 --stream-dir "$logs/streams" --spool-dir "$logs/spool" >"$logs/acb.log" 2>&1 &
acb_pid=$!
nats-server -a 127.0.0.1 -p "$nats_port" >"$logs/nats.log" 2>&1 &
nats_pid=$!
trap 'kill "$acb_pid" "$nats_pid" 2>/dev/null || true; wait "$acb_pid" "$nats_pid" 2>/dev/null || true' EXIT

for port in "$acb_port" "$nats_port"; do
  for attempt in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    if [ "$attempt" -eq 100 ]; then
      echo "bench-python: nothing listens on port $port; see $logs/" >&2
      exit 1
    fi
    sleep 0.1
  done
done

report=()
if [ "$write" -eq 1 ]; then
  report=(--markdown BENCHMARKS.md --json "$logs/results.json"
    --command "scripts/bench-python.sh --write    # release build, acb serve and nats-server on 127.0.0.1, then clients/python/bench/run.py")
fi
# What is measured is the working tree: say so when the bus's or the client's sources differ from HEAD.
changes=""
if [ -n "$(git status --porcelain -- Sources Package.swift clients/python/src)" ]; then
  changes=" with uncommitted changes to $(git status --porcelain -- Sources Package.swift clients/python/src |
    awk '{print $2}' | cut -d/ -f1-2 | sort -u | paste -sd, -)"
fi
ACB_TOKEN_SECRET=$secret PYTHONPATH="${ACB_PYBENCH_CLIENT_SRC:-$PWD/clients/python/src}" "$python" clients/python/bench/run.py \
  --acb "127.0.0.1:$acb_port" --nats "127.0.0.1:$nats_port" --dir "$logs/downloads" --acb-cli "$bin/acb" \
  --version "acb $(git rev-parse --short HEAD)$changes" \
  --version "nats-server $(nats-server --version | sed 's/.*v//')" \
  --version "nats-py $("$python" -c 'import importlib.metadata as m; print(m.version("nats-py"))')" \
  ${report[@]+"${report[@]}"} ${passed[@]+"${passed[@]}"}
