#!/usr/bin/env bash
# Set up (idempotently), run the style guard (ruff) and the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IBTPO_DATA_DIR="${IBTPO_DATA_DIR:-$PWD/../shared/data}"
venv="${IBTPO_VENV:-.venv}"
# the style guard (pyproject.toml [tool.ruff]: pyflakes, pycodestyle, 120 columns) on the whole tree
"$venv/bin/ruff" check --quiet . || { echo "[test] ruff found style errors (above); fix them first" >&2; exit 1; }
exec "${IBTPO_VENV:-.venv}/bin/python" -m pytest -q "$@"
