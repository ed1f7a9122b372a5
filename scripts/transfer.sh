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
source "$(dirname "$0")/recipe_lib.sh"
source "$(dirname "$0")/glue_profile.sh"
SOURCES=${SOURCES:-$TASKS}
TARGETS=${TARGETS:-$TASKS}
EXTRA_SOURCES=${EXTRA_SOURCES:-}
SP=${TRANSFER_SPARSITY:-70}
SET=${SET:-${SETS%% *}}
WITH_OMP=${WITH_OMP:-1}
SEEDS_TRANSFER=${SEEDS_TRANSFER:-$MASK_SEEDS}
[[ "$SP" =~ ^[1-9]0$ ]] ||
  die "TRANSFER_SPARSITY: '$SP' is not a sparsity IMP writes (percent, of 10 20 30 40 50 60 70 80 90)"
case $SET in paper|no_pooler|heads_ffn) ;; *) die "SET: unknown set '$SET' (paper no_pooler heads_ffn)" ;; esac
case $WITH_OMP in 0|1) ;; *) die "WITH_OMP must be 0 or 1, not '$WITH_OMP'" ;; esac
[[ "$SEEDS_TRANSFER" =~ ^[[:space:]]*([1-9][0-9]*[[:space:]]*)+$ ]] ||
  die "SEEDS_TRANSFER: seeds must be positive whole numbers separated by spaces, not '$SEEDS_TRANSFER'"

declare -A SOURCE_MASK=()
for src in $SOURCES; do
  t=$(lower "$src"); S=$(round_steps "$src")
  SOURCE_MASK[$t]=$(ticket_mask "$OUT/$t/imp_$SET" "$SP" "$OUT/$t/imp_$SET/checkpoint-$((S * SP / 10))/mask.pt")
done
# EXTRA_SOURCES: name=DIR pairs, each name new (not a task of SOURCES, not omp), DIR relative to
# the current folder like OUT
for pair in $EXTRA_SOURCES; do
  [[ "$pair" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*=.+$ ]] ||
    die "EXTRA_SOURCES: '$pair' is not a name=DIR pair (e.g. EXTRA_SOURCES=\"mlm=runs/mlm_small/mlm/imp_no_pooler\")"
  name=${pair%%=*}; dir=${pair#*=}
  if [ -n "${SOURCE_MASK[$name]+x}" ] || { [ "$name" = omp ] && [ "$WITH_OMP" = 1 ]; }; then
    die "EXTRA_SOURCES: the name '$name' is already a source (a task of SOURCES, or omp); give another name"
  fi
  path_setting dir ""
  SOURCE_MASK[$name]=$(ticket_mask "$dir" "$SP" "$dir/<mask at $SP% once the run has written it>")
done
if [ "$WITH_OMP" = 1 ]; then
  n_oneshot=0
  SPARSITIES=$SP METHODS=omp SETS=$SET oneshot_masks glue
  SOURCE_MASK[omp]=$OUT/masks/omp_${SET}_$SP/mask.pt
fi
for name in $(printf '%s\n' "${!SOURCE_MASK[@]}" | sort); do
  for TASK in $TARGETS; do
    t=$(lower "$TASK")
    [ "$name" = "$t" ] && continue  # the diagonal: glue_tickets.sh's imp_${SET}_${SP}_s* runs
    for seed in $SEEDS_TRANSFER; do
      dir=$OUT/transfer/${name}_to_${t}_${SET}_${SP}_s$seed
      add_run 2 "$dir/complete.json" "$dir.log" \
        "$LAUNCH glue_trans.py $(common "$TASK") --output_dir $(q "$dir") --dir pre --mask_dir $(q "${SOURCE_MASK[$name]}")" \
        "--learning_rate $LR --num_train_epochs $FT_EPOCHS --logging_steps 0 --save_steps 0 --seed $seed"
    done
  done
done
echo "transfer: profile $PROFILE, sources [$(printf '%s ' "${!SOURCE_MASK[@]}")], targets [$TARGETS] at $SP% ($SET)"
echo "transfer: disk needed about $(( ${#QUEUE_CMDS[@]} / 5 + 1 )) MB under $OUT/transfer (no weights are kept)"
run_queue
echo "transfer: all runs finished; report: $PYTHON report.py $OUT"
