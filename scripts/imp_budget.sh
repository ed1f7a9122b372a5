#!/usr/bin/env bash
# How far IMP moves its ticket away from one-shot magnitude pruning (OMP), and what moves it.
# Every IMP round rewinds to the pre-trained weights theta0, so a round's mask is the magnitude
# mask of theta0 + delta, delta being that round's fine-tuning change: with short rounds at a
# decaying learning rate delta is small and the ticket is (nearly) the OMP mask. This recipe
# runs IMP only (no fine-tunes) on one task under several round budgets, plus the OMP masks at
# the same sparsities; scripts/imp_budget.py then prints, per budget, the ticket-OMP overlap at
# every sparsity beside the round's learning-rate integral (updates x mean learning rate), the
# weights' measured movement and IMP's own in-loop scores.
#
#   bash scripts/imp_budget.sh [--dry-run]           # runs in runs/imp_budget
#   python scripts/imp_budget.py runs/imp_budget      # the table (--json_out FILE to keep it)
#
# Settings (environment variables, defaults in brackets):
#   TASK        GLUE task folder [STS-B]
#   BUDGETS     space-separated EPOCHS:LR:SCHEDULE, one IMP run each: EPOCHS per round, peak
#               learning rate, --round_schedule (per_round: decays to 0 within each round;
#               whole_run: the original's, near-constant within a round)
#               [3:1e-4:whole_run 3:3e-4:whole_run 1:1e-4:per_round 1:3e-4:per_round]
#   SPARSITIES  percent, multiples of 10, the top one ends IMP [10 20 30 40 50 60 70]
#   MAX_TRAIN   training rows [2000];  SUBSET_SEED  seed of the random row subset [0]
#   MODEL, DATA, OUT, IMP_SEED, JOBS, NGPU, EXTRA: as glue_tickets.sh
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" imp_budget "$@"
