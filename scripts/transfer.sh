#!/usr/bin/env bash
# The transfer matrix (the paper's Section 4): every source task's IMP ticket at 70 % (and the
# MLM and SQuAD tickets and the OMP mask, when given) fine-tuned on every target GLUE task,
# from the pre-trained weights with a fresh head and the mask fixed. The diagonal (a task's
# own ticket) comes from glue_tickets.sh. Run glue_tickets.sh (same PROFILE and OUT) first;
# then python report.py "$OUT" prints the matrix.
#
#   bash scripts/transfer.sh [--dry-run]
#   EXTRA_SOURCES="mlm=runs/mlm_small/imp_paper squad=runs/squad_small/imp_paper" bash scripts/transfer.sh
#
# Settings (environment variables; the GLUE ones as in glue_tickets.sh):
#   SOURCES        GLUE tasks whose tickets are transferred   [TASKS]
#   TARGETS        GLUE tasks fine-tuned with them            [TASKS]
#   EXTRA_SOURCES  name=IMP_RUN_DIR pairs (an LT_pretrain.py or LT_squad.py run)  [""]
#   TRANSFER_SPARSITY  percent [70]
#   SET            prunable set of the tickets [first of SETS]
#   WITH_OMP       1: add the OMP mask at that sparsity as a source [1]
#   SEEDS_TRANSFER fine-tuning seeds of every transfer cell [MASK_SEEDS]
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" transfer "$@"
