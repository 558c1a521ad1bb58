#!/usr/bin/env bash
# Set up (idempotently) and build the default target `all`: tables 1 and 3, figures, claims report.
# Extra arguments go to snakemake (extra targets too), e.g.
#   scripts/reproduce.sh results/table2.csv      # also the Table 2 ablations
#   scripts/reproduce.sh --config preset=smoke
#   scripts/reproduce.sh --configfile pipelines/config/<preset>.yaml
#   scripts/reproduce.sh --config results_dir=DIR   # every output under DIR (targets: DIR/table2.csv, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${IBTPO_VENV:-.venv}/bin/snakemake" --workflow-profile pipelines/profiles/local --cores all \
  all "$@"
