#!/usr/bin/env bash
# Lottery tickets for masked-language modelling: IMP (LT_pretrain.py; the first 10 % is pruned
# before training, so the mask of 10·k % is checkpoint-<(k-1)·S>), the dense model over seeds,
# and at each sparsity the ticket and its baselines trained with the mask fixed
# (pretrain_trans.py, which ends with a final evaluation). Its 70 % ticket is the paper's
# universal source for transfer.sh (EXTRA_SOURCES="mlm=$OUT/mlm/imp_<set>").
#
#   bash scripts/mlm_tickets.sh [--dry-run]
#   PROFILE=paper MODEL=/models/bert-base-uncased TRAIN=pretrain_data/en.train EVAL=pretrain_data/en.valid bash scripts/mlm_tickets.sh
#
# Settings (environment variables, defaults in brackets):
#   PROFILE     paper | small [small]
#   MODEL       checkpoint folder [../shared/data/models/all-MiniLM-L6-v2]
#   TRAIN, EVAL text files [small: WikiText-2 test.txt / valid.txt in ../shared/data]
#   OUT         runs root [runs/mlm_<profile>]
#   SEEDS, MASK_SEEDS, SEEDS_<METHOD>, IMP_SEED, SPARSITIES, METHODS, SETS, NGPU, JOBS, EXTRA  as glue_tickets.sh
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" mlm_tickets "$@"
