#!/usr/bin/env bash
# Set up (idempotently) and build results/table1.csv. Extra arguments go to snakemake, e.g.
#   scripts/reproduce.sh --config preset=smoke
#   scripts/reproduce.sh --configfile pipelines/config/<preset>.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${IBTPO_VENV:-.venv}/bin/snakemake" --cores all results/table1.csv "$@"
