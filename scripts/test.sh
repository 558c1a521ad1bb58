#!/usr/bin/env bash
# Set up (idempotently) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IBTPO_DATA_DIR="${IBTPO_DATA_DIR:-$PWD/../shared/data}"
exec "${IBTPO_VENV:-.venv}/bin/python" -m pytest -q "$@"
