#!/usr/bin/env bash
# Lottery tickets on SQuAD v1.1: IMP (LT_squad.py, the paper's squad_trans.py IMP command),
# the dense model over seeds, and at each sparsity the IMP ticket, random pruning, OMP,
# random re-init and shuffled weights fine-tuned with the mask fixed (squad_trans.py).
# Then: python report.py "$OUT".
#
#   bash scripts/squad_tickets.sh [--dry-run]
#   PROFILE=paper MODEL=/models/bert-base-uncased DATA=SQuAD NGPU=4 bash scripts/squad_tickets.sh
#
# Settings (environment variables, defaults in brackets):
#   PROFILE     paper | small [small]
#   MODEL       checkpoint folder [../shared/data/models/all-MiniLM-L6-v2]
#   DATA        folder with the SQuAD files [../shared/data/squad]
#   TRAIN_FILE, PREDICT_FILE  [paper: train-v1.1.json, dev-v1.1.json; small: the train and
#               eval splits of the dev set in ../shared/data/squad]
#   OUT         runs root [runs/squad_<profile>]
#   SEEDS, MASK_SEEDS, SEEDS_<METHOD>, IMP_SEED, SPARSITIES, METHODS, SETS, NGPU, JOBS, EXTRA  as glue_tickets.sh
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" squad_tickets "$@"
