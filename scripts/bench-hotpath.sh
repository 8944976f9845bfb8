#!/usr/bin/env bash
# Heap allocations and CPU time per message on the bus's hot path (decode → route → encode → ACK),
# measured on `acb-hotpath` (release build), which drives the real sessions in one thread with no
# sockets. Allocations are counted exactly, with uprobes on libc's allocator (perf; needs root);
# each figure is the difference between a run of N and one of N + 25,600 messages, divided by
# 25,600, so start-up cancels out. CPU time (perf's task-clock) moves with the machine's load.
# Prints a Markdown table; `make bench` appends it to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product acb-hotpath >&2
bin=$(swift build -c release --show-bin-path)/acb-hotpath
small=6400
large=$((small + 25600))
libc=$(ldd "$bin" | awk '/libc\.so/ { print $3 }')
events=()
for function in malloc calloc realloc posix_memalign; do
  perf probe -q -x "$libc" "$function" 2>/dev/null || true
  events+=(-e "probe_libc:$function")
done

# Allocator calls and task-clock milliseconds of `acb-hotpath MESSAGES SHAPE VERSION`.
measure() {
  perf stat -x, "${events[@]}" -e task-clock "$bin" "$@" 2>&1 >/dev/null |
    awk -F, '/probe_libc/ { calls += $1 } /task-clock/ { ms = $1 } END { print calls, ms }'
}
per_message() {
  awk -v a="$1" -v b="$2" -v n=$((large - small)) -v scale="$3" 'BEGIN { printf "%.2f", (b - a) * scale / n }'
}

echo "| hot path, 256-byte payloads, batches of 64 | protocol | allocations per message | CPU µs per message |"
echo "|---|---|---|---|"
for shape in p2p fanout; do
  for version in 1 2; do
    read -r calls_small ms_small <<<"$(measure $small $shape $version)"
    read -r calls_large ms_large <<<"$(measure $large $shape $version)"
    label=$([ "$shape" = p2p ] && echo "SEND to one agent" || echo "PUBLISH to 10 subscribers (per message published)")
    echo "| $label | $version | $(per_message "$calls_small" "$calls_large" 1) | $(per_message "$ms_small" "$ms_large" 1000) |"
  done
done
