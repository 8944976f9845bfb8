#!/usr/bin/env bash
# Checks and tests the Python client (clients/python) as `make test` runs it: in the venv of
# scripts/python-venv.sh, ruff, mypy --strict and pytest against the bus this repository builds.
#   scripts/python-client.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/python-venv.sh
bin=${ACB_BIN_DIR:-$(swift build --show-bin-path)}
# README.md's Python example is type-checked with the client, as a user's program would be.
awk '/^## Using the Python client/ { inside = 1 } inside && /^```python/ { code = 1; next }
     code && /^```/ { exit } code { print }' README.md >.python/readme_example.py
cd clients/python
../../.python/bin/ruff check .
../../.python/bin/ruff format --check .
../../.python/bin/mypy --strict src tests examples bench ../../.python/readme_example.py
ACB_BIN_DIR=$bin exec ../../.python/bin/pytest -q "$@"
