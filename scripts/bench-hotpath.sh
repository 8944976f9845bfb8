#!/usr/bin/env bash
# Heap allocations per message on the bus's hot path (decode → route → encode → ACK), measured on
# `acb-hotpath` (release build), which drives the real sessions in one thread with no sockets.
# They are counted exactly, with uprobes on libc's allocator (perf, as root), so unlike timings
# they do not move with the machine's load. Each figure is the difference between a run of N and
# one of N + 25,600 messages, divided by 25,600, so start-up cancels out; it includes NIO's testing
# event loop's own work per batch of 64 (about 40 allocations, some 0.6 per message). Prints a
# Markdown table; `make bench` appends it to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product acb-hotpath >&2
bin=$(swift build -c release --show-bin-path)/acb-hotpath
small=6400
large=$((small + 25600))
libc=$(ldd "$bin" | awk '$1 ~ /^libc\.so/ { print $3 }')
allocators=(malloc calloc realloc posix_memalign)
for function in "${allocators[@]}"; do perf probe -q -x "$libc" "$function" 2>/dev/null || true; done
if ! perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc'; then
  echo "(not measured: counting allocations needs perf and root, for uprobes on libc's allocator)"
  exit 0
fi
events=()
for function in "${allocators[@]}"; do events+=(-e "probe_libc:$function"); done

# Allocator calls of `acb-hotpath MESSAGES SHAPE VERSION`.
allocations() {
  perf stat -x, "${events[@]}" "$bin" "$@" 2>&1 >/dev/null | awk -F, '{ calls += $1 } END { print calls }'
}
per_message() {
  awk -v a="$1" -v b="$2" -v n=$((large - small)) -v scale="$3" 'BEGIN { printf "%.2f", (b - a) * scale / n }'
}

echo "| hot path, 256-byte payloads, batches of 64 | protocol | allocations per message |"
echo "|---|---|---|"
for shape in p2p fanout; do
  for version in 1 2; do
    allocated=$(per_message "$(allocations $small $shape $version)" "$(allocations $large $shape $version)" 1)
    label=$([ "$shape" = p2p ] && echo "SEND to one agent" || echo "PUBLISH to 10 subscribers (per message published)")
    echo "| $label | $version | $allocated |"
  done
done
