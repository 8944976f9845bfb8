#!/usr/bin/env bash
# Runs a demo against the bus that `make run` started: issues two tokens with the development
# secret and hands them to acb-demo. Usage: scripts/demo.sh pair|stream [acb-demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build --show-bin-path)
secret=${ACB_TOKEN_SECRET:?set ACB_TOKEN_SECRET to the secret the bus runs with}
port=${ACB_PORT:-7400}
alice=$("$bin/acb" token issue --agent alice --tenant demo --token-secret "$secret")
bob=$("$bin/acb" token issue --agent bob --tenant demo --token-secret "$secret")
demo=$1
shift
# `make run` serves TLS with the development CA in .certs/ (ACB_TLS_CA names it).
tls=()
if [ -n "${ACB_TLS_CA:-}" ]; then tls=(--tls-ca "$ACB_TLS_CA"); fi
exec "$bin/acb-demo" "$demo" --port "$port" --token-a "$alice" --token-b "$bob" "${tls[@]}" "$@"
