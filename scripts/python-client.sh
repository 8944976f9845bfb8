#!/usr/bin/env bash
# Checks and tests the Python client (clients/python) as `make test` runs it: in the venv of
# scripts/python-venv.sh, ruff, mypy --strict and pytest against the bus this repository builds.
#   scripts/python-client.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/python-venv.sh
bin=${ACB_BIN_DIR:-$(swift build --show-bin-path)}
cd clients/python
../../.python/bin/ruff check .
../../.python/bin/ruff format --check .
../../.python/bin/mypy --strict src tests examples bench
ACB_BIN_DIR=$bin exec ../../.python/bin/pytest -q "$@"
