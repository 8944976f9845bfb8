#!/usr/bin/env bash
# The venv of the Python client's checks, tests and benchmark: .python/, with the tools of
# clients/python/requirements-dev.txt (made again when that file changes), and the client installed
# from its folder as a user would (`pip install ./clients/python`). Run by scripts/python-client.sh
# and scripts/bench-python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.python
requirements=clients/python/requirements-dev.txt
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "python-venv: making the venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps --no-build-isolation \
  ./clients/python
