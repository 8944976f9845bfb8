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

# System packages the build and the tests use, each with the check that proves it is there:
# nats-server is the performance peer of the load harness, which its tests also run against;
# PostgreSQL, Redis and python3-venv (for the Kafka-protocol broker and the Kafka test client)
# are the sidecars that scripts/sidecars.sh starts; the -dev packages are the C libraries the bus
# links (libpq, hiredis, librdkafka, OpenSSL, libsodium), found through pkg-config.
missing=()
need() {
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || missing+=("$package")
}
need git command -v git
need nats-server command -v nats-server
need pkg-config command -v pkg-config
need postgresql test -x /usr/lib/postgresql/15/bin/postgres
need redis-server command -v redis-server
need libpq-dev pkg-config --exists libpq
need libhiredis-dev pkg-config --exists hiredis
need librdkafka-dev pkg-config --exists rdkafka
need libssl-dev pkg-config --exists openssl
need libsodium-dev pkg-config --exists libsodium
# The openssl command makes the development certificates (scripts/dev-certs.sh) and is the TLS
# peer of the tests (openssl s_client).
need openssl command -v openssl
# `python3 -m venv` runs without it too, but cannot install pip into the venv: ensurepip proves it.
need python3-venv python3 -c 'import ensurepip'
# Headless chromium loads the admin API's page (/api/v1/docs) in AdminDocsPageTests, which check
# the DOM a real browser builds from it, not only the HTML the bus sends.
need chromium command -v chromium
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
