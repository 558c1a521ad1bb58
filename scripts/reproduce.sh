#!/usr/bin/env bash
# Set up (idempotently) and build results/table1.csv (and the other results, via the default target
# `all`, when called with no arguments). Extra arguments go to snakemake, e.g.
#   scripts/reproduce.sh --config preset=smoke
#   scripts/reproduce.sh --configfile pipelines/config/<preset>.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${IBTPO_VENV:-.venv}/bin/snakemake" --workflow-profile pipelines/profiles/local --cores all \
  results/table1.csv results/table3.csv "$@"
