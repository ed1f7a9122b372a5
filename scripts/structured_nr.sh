#!/usr/bin/env bash
# Structured tickets without retraining (docs/structured.md): fine-tuned dense models (the
# small profile's STS-B fine-tune, saved), then one-shot structured masks of whole heads and FFN
# neurons by each score, the kept units rescaled by least squares or not, evaluated without any
# training; then a short fine-tune of the chosen cells.
#
#   bash scripts/structured_nr.sh [--dry-run]
#
# Settings (environment variables, defaults in brackets):
#   TASK         GLUE task [STS-B]
#   SEEDS        seeds of the dense models, one set of cells each [1 2]
#   CELLS        SCORE:NORMALISE:RESCALE:RATE entries [fisher:none:1 and magnitude:size:0 at 30,
#                50, 70 %; fisher:size:1 and taylor:size:1 at 50 %]
#   SHORT        the cells fine-tuned briefly afterwards [fisher:none:1:50 magnitude:size:0:50]
#   SHORT_EPOCHS SHORT_LR  that fine-tune [1, 2e-5]
#   OUT MODEL DATA JOBS PYTHON   as glue_tickets.sh [OUT: runs/structured_nr]
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" structured_nr "$@"
