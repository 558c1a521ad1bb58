#!/usr/bin/env bash
# Idempotent setup: creates .venv (or $IBTPO_VENV) and installs the project with the pinned CPU
# constraints. Reinstalls only when pyproject.toml or the constraints file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${IBTPO_VENV:-.venv}"
constraints="${IBTPO_CONSTRAINTS:-constraints/cpu.txt}"
extras="${IBTPO_EXTRAS:-dev,slurm}"  # slurm: the executor plugin that tests/test_slurm.py drives
want="$(cat pyproject.toml "$constraints" | sha256sum | cut -d' ' -f1)-$extras"
stamp="$venv/.ibtpo-installed"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing ibtpo[$extras] with $constraints (pip compiles bytecode)"
  "$venv/bin/pip" install --disable-pip-version-check -q -c "$constraints" -e ".[$extras]" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$want" > "$stamp"
else
  echo "[setup] $venv is up to date"
fi
