#!/usr/bin/env bash
# Checks that this machine can build and test ACB, installing what is missing where it can.
# Run by `make run` and `make test`; safe to run again.
set -euo pipefail

need_swift="6.1"
if ! command -v swift >/dev/null 2>&1; then
  echo "ACB needs the Swift toolchain ${need_swift} or newer on PATH: https://www.swift.org/install/linux/" >&2
  exit 1
fi
have=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need_swift" "$have" | sort -V | head -n 1)" != "$need_swift" ]; then
  echo "ACB needs Swift ${need_swift} or newer; this machine has '${have:-unknown}'." >&2
  exit 1
fi

# System packages the build and the tests use, by the command that proves each is there
# (nats-server: the performance peer of the load harness, which its tests also run against).
declare -A packages=([git]=git [nats-server]=nats-server)
missing=()
for command in "${!packages[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "Missing system packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
