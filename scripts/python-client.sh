#!/usr/bin/env bash
# Checks and tests the Python client (clients/python) as `make test` runs it: a venv in .python/
# with the tools of clients/python/requirements-dev.txt (made again when that file changes), the
# client installed from its folder as a user would (`pip install ./clients/python`), then ruff,
# mypy --strict and pytest against the bus this repository builds. Usage:
#   scripts/python-client.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.python
requirements=clients/python/requirements-dev.txt
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "python-client: making the venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps --no-build-isolation \
  ./clients/python
cd clients/python
"../../$venv/bin/ruff" check .
"../../$venv/bin/ruff" format --check .
"../../$venv/bin/mypy" --strict src tests examples
ACB_BIN_DIR=${ACB_BIN_DIR:-$(cd ../.. && swift build --show-bin-path)} exec "../../$venv/bin/pytest" -q "$@"
