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
OUT=${OUT:-runs/imp_budget}
source "$(dirname "$0")/recipe_lib.sh"
recipe_settings glue
seed_settings
DATA=${DATA:-../shared/data/glue}
TASK=${TASK:-STS-B}
BUDGETS=${BUDGETS:-3:1e-4:whole_run 3:3e-4:whole_run 1:1e-4:per_round 1:3e-4:per_round}
SPARSITIES=${SPARSITIES:-10 20 30 40 50 60 70}
MAX_TRAIN=${MAX_TRAIN:-2000}
SUBSET_SEED=${SUBSET_SEED:-0}
BATCH=32; SEQ=128
SETS=no_pooler; METHODS=omp
need_model "and DATA=<GLUE root>"
for sp in $SPARSITIES; do
  [ $((sp % 10)) -eq 0 ] && [ "$sp" -ge 10 ] && [ "$sp" -le 90 ] || {
    echo "error: SPARSITIES: $sp is not one IMP writes (10, 20, ... 90)" >&2; exit 2; }
done
rows=$(($(wc -l < "$DATA/$TASK/train.tsv") - 1))
[ "$TASK" = CoLA ] && rows=$((rows + 1))
[ "$rows" -gt "$MAX_TRAIN" ] && rows=$MAX_TRAIN
events=$(($(top_sparsity) / 10))
t=$(echo "$TASK" | tr '[:upper:]' '[:lower:]')
n_imp=0; n_oneshot=0
oneshot_masks glue  # the OMP masks (stage 1)
for b in $BUDGETS; do
  IFS=: read -r ep lr sched <<< "$b"
  case "$sched" in per_round|whole_run) ;; *)
    echo "error: BUDGETS entry '$b': EPOCHS:LR:SCHEDULE with SCHEDULE per_round or whole_run" >&2; exit 2 ;;
  esac
  [[ "$ep" =~ ^[1-9][0-9]*$ ]] || { echo "error: BUDGETS entry '$b': EPOCHS must be a whole number" >&2; exit 2; }
  S=$((ep * ((rows + BATCH - 1) / BATCH)))
  dir=$OUT/$t/imp_no_pooler_r${ep}_lr${lr}_${sched}
  add_run 1 "$dir/complete.json" "$dir.log" \
    "$(py) LT_glue.py --task_name $TASK --data_dir $DATA/$TASK --model_type bert --model_name_or_path $MODEL" \
    "--do_train --do_eval --do_lower_case --max_seq_length $SEQ --per_gpu_train_batch_size $(per_process $BATCH)" \
    "--per_gpu_eval_batch_size 64 --learning_rate $lr --max_train_samples $MAX_TRAIN --train_subset_seed $SUBSET_SEED" \
    "--overwrite_output_dir --output_dir $dir --evaluate_during_training --logging_steps $S --save_steps $S" \
    "--num_train_epochs $((ep * 10)) --max_steps $((S * events)) --round_schedule $sched --prunable_set no_pooler" \
    "--save_round_weights 1 --seed $IMP_SEED $EXTRA"
  n_imp=$((n_imp + 1))
done
TASKS=$TASK finish_recipe imp_budget "$events"
echo "imp_budget: table: $PYTHON scripts/imp_budget.py $OUT"
