#!/usr/bin/env bash
# Lottery tickets on GLUE tasks, end to end: IMP to find the tickets, the dense model over
# several seeds, and at each sparsity a fixed-mask fine-tune of the IMP ticket (rewound to
# the pre-trained weights), random pruning, one-shot magnitude pruning (OMP), random
# re-initialisation and layer-shuffled pre-trained weights. Ticket scores come from these
# fixed-mask runs, never from IMP's in-loop evaluations. Then: python report.py "$OUT".
#
#   bash scripts/glue_tickets.sh              # run (skips every run that finished)
#   bash scripts/glue_tickets.sh --dry-run    # print the commands, mark the finished ones
#   PROFILE=paper MODEL=/models/bert-base-uncased DATA=glue_data NGPU=4 bash scripts/glue_tickets.sh
#
# Settings (environment variables, defaults in brackets):
#   PROFILE      paper | small | quick  [small]   budgets: see the case below and the README
#   MODEL        checkpoint folder      [../shared/data/models/all-MiniLM-L6-v2]
#   DATA         GLUE root (TASK/ folders with train.tsv, dev.tsv)  [../shared/data/glue]
#   OUT          runs root              [runs/glue_<profile>]
#   TASKS        GLUE task folders      [profile]
#   SEEDS        dense fine-tuning seeds [1 2 3]
#   MASK_SEEDS   fine-tuning seeds of every masked run [1]
#   IMP_SEED     seed of the IMP run    [57, the paper's]
#   SPARSITIES   percent, multiples of 10 [profile]
#   METHODS      of: imp random omp reinit shuffled [profile]
#   SETS         prunable sets: paper (with the pooler, as the paper) and/or no_pooler [profile]
#   NGPU         GPUs per run; > 1 runs every training script under torchrun [0]
#   JOBS         runs side by side (CPU: each gets nproc/JOBS threads) [1]
#   EXTRA        extra flags for every training run ["" ]
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"

PROFILE=${PROFILE:-small}
MODEL=${MODEL:-../shared/data/models/all-MiniLM-L6-v2}
DATA=${DATA:-../shared/data/glue}
OUT=${OUT:-runs/glue_$PROFILE}
SEEDS=${SEEDS:-1 2 3}
MASK_SEEDS=${MASK_SEEDS:-1}
IMP_SEED=${IMP_SEED:-57}
EXTRA=${EXTRA:-}

case "$PROFILE" in
  paper)  # the paper's commands: full data, lr 2e-5, IMP rounds of 3 epochs, 3-epoch fine-tunes
    TASKS=${TASKS:-MNLI QQP STS-B WNLI QNLI MRPC RTE SST-2 CoLA}
    SPARSITIES=${SPARSITIES:-10 20 30 40 50 60 70 80 90}
    METHODS=${METHODS:-imp random omp reinit shuffled}
    SETS=${SETS:-paper}
    LR=2e-5; BATCH=32; SEQ=128; FT_EPOCHS=3; ROUND_EPOCHS=3; MAX_TRAIN=""; MAX_EVAL=""
    SCHEDULE=whole_run; AMP="" ;;
  small)  # the small-scale reproduction on CPU (README): subsets, lr 1e-4, 1-epoch rounds
    TASKS=${TASKS:-STS-B MRPC CoLA}
    SPARSITIES=${SPARSITIES:-50 60 70}
    METHODS=${METHODS:-imp random reinit}
    SETS=${SETS:-no_pooler}
    LR=1e-4; BATCH=32; SEQ=128; FT_EPOCHS=3; ROUND_EPOCHS=1; MAX_TRAIN=2000; MAX_EVAL=500
    SCHEDULE=per_round; AMP="" ;;
  quick)  # the README's quickstart: one task, minutes on 2 CPU cores
    TASKS=${TASKS:-STS-B}
    SPARSITIES=${SPARSITIES:-50}
    METHODS=${METHODS:-imp random}
    SETS=${SETS:-no_pooler}
    SEEDS=${SEEDS_QUICK:-1 2}
    LR=1e-4; BATCH=32; SEQ=64; FT_EPOCHS=3; ROUND_EPOCHS=1; MAX_TRAIN=640; MAX_EVAL=300
    SCHEDULE=per_round; AMP="" ;;
  *) echo "error: PROFILE must be paper, small or quick, not '$PROFILE'" >&2; exit 2 ;;
esac
if [ "$NGPU" -gt 0 ]; then
  AMP=${AMP_GPU:---fp16}
  BATCH_PER_GPU=$((BATCH / (NGPU > 1 ? NGPU : 1)))
else
  BATCH_PER_GPU=$BATCH
fi
if [ ! -d "$MODEL" ] && [ "$DRY_RUN" != 1 ]; then
  echo "error: MODEL=$MODEL is not a folder; pass MODEL=<local BERT checkpoint> and DATA=<GLUE root>" >&2
  exit 2
fi

LAUNCH=$(py)
subset() { echo "${MAX_TRAIN:+--max_train_samples $MAX_TRAIN} ${MAX_EVAL:+--max_eval_samples $MAX_EVAL}"; }
common() {  # TASK: the flags every GLUE run shares
  echo "--task_name $1 --data_dir $DATA/$1 --model_type bert --model_name_or_path $MODEL --do_train --do_eval" \
       "--do_lower_case --max_seq_length $SEQ --per_gpu_train_batch_size $BATCH_PER_GPU" \
       "--per_gpu_eval_batch_size 64 --learning_rate $LR $(subset) $AMP --overwrite_output_dir $EXTRA"
}
train_rows() {  # rows the run trains on (header excluded; CoLA has none)
  local f="$DATA/$1/train.tsv" n
  if [ -f "$f" ]; then n=$(wc -l < "$f"); [ "$1" = CoLA ] || n=$((n - 1)); else n=${PAPER_ROWS[$1]:-0}; fi
  if [ -n "$MAX_TRAIN" ] && [ "$n" -gt "$MAX_TRAIN" ]; then n=$MAX_TRAIN; fi
  echo "$n"
}
declare -A PAPER_ROUND=([MNLI]=36813 [QQP]=34110 [QNLI]=9819 [SST-2]=6312 [CoLA]=801 [STS-B]=537 [MRPC]=342 [RTE]=231 [WNLI]=57)
declare -A PAPER_ROWS=([MNLI]=392702 [QQP]=363846 [QNLI]=104743 [SST-2]=67349 [CoLA]=8551 [STS-B]=5749 [MRPC]=3668 [RTE]=2490 [WNLI]=635)
round_steps() {  # updates per IMP round
  if [ "$PROFILE" = paper ]; then echo "${PAPER_ROUND[$1]}"; return; fi  # global batch 32 on any NGPU
  local rows; rows=$(train_rows "$1")
  echo $(( ROUND_EPOCHS * ((rows + BATCH - 1) / BATCH) ))
}
max_sparsity=0; for s in $SPARSITIES; do [ "$s" -gt "$max_sparsity" ] && max_sparsity=$s; done
EVENTS=$((max_sparsity / 10))  # IMP stops after the pruning event that reaches the top sparsity
imp_stop() {  # paper: all 10 events over 30 epochs (the schedule spans them); else stop at the top
  [ "$PROFILE" = paper ] || echo "--max_steps $((S * EVENTS))"
}
oneshot_masks() {  # random and OMP masks at every sparsity and set (task-independent), shuffled weights
  for SET in $SETS; do
    for sp in $SPARSITIES; do
      rate=$(printf '0.%02d' "$sp"); [ "$sp" = 100 ] && rate=1.0
      for kind in random omp; do
        case " $METHODS " in *" $kind "*) ;; *) continue ;; esac
        weight=$([ "$kind" = random ] && echo rand || echo pre)
        dir=$OUT/masks/${kind}_${SET}_$sp
        add_run 1 "$dir/mask_provenance.json" "$dir.log" \
          "$PYTHON oneshot.py --weight $weight --model glue --rate $rate --model_name_or_path $MODEL" \
          "--output_dir $dir --prunable_set $SET --seed $IMP_SEED"
        n_oneshot=$((n_oneshot + 1))
      done
    done
  done
  case " $METHODS " in *" shuffled "*)
    add_run 1 "$OUT/masks/shuffle_weight_provenance.json" "$OUT/masks/shuffle.log" \
      "$PYTHON pertub_weight.py --model_name_or_path $MODEL --output $OUT/masks/shuffle_weight.pt --seed $IMP_SEED" ;;
  esac
}

lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }

# ---- per task, stage A: IMP per set, dense fine-tunes (and, first, the one-shot masks and the
# shuffled weights); stage B: every fixed-mask fine-tune. Tasks go one after the other, so a
# killed recipe has whole tasks done. -------------------------------------------------------
n_imp=0
n_oneshot=0
ti=0
for TASK in $TASKS; do
  t=$(lower "$TASK"); S=$(round_steps "$TASK")
  A=$((2 * ti + 1)); B=$((2 * ti + 2)); ti=$((ti + 1))
  if [ "$A" = 1 ]; then oneshot_masks; fi
  for SET in $SETS; do
    dir=$OUT/$t/imp_$SET
    add_run $A "$dir/complete.json" "$dir.log" \
      "$LAUNCH LT_glue.py $(common "$TASK") --output_dir $dir --evaluate_during_training" \
      "--logging_steps $S --save_steps $S --num_train_epochs $((ROUND_EPOCHS * 10)) $(imp_stop)" \
      "--round_schedule $SCHEDULE --prunable_set $SET --save_round_weights 0 --seed $IMP_SEED"
    n_imp=$((n_imp + 1))
  done
  for seed in $SEEDS; do
    dir=$OUT/$t/dense_s$seed
    add_run $A "$dir/complete.json" "$dir.log" \
      "$LAUNCH glue_trans.py $(common "$TASK") --output_dir $dir --dir pre --num_train_epochs $FT_EPOCHS" \
      "--logging_steps 0 --save_steps 0 --seed $seed"
  done
  # stage B
  for SET in $SETS; do
    for sp in $SPARSITIES; do
      ticket=$OUT/$t/imp_$SET/checkpoint-$((S * sp / 10))/mask.pt
      for method in $METHODS; do
        case $method in
          imp)      flags="--dir pre --mask_dir $ticket" ;;
          reinit)   flags="--dir rand --mask_dir $ticket" ;;
          random)   flags="--dir pre --mask_dir $OUT/masks/random_${SET}_$sp/mask.pt" ;;
          omp)      flags="--dir pre --mask_dir $OUT/masks/omp_${SET}_$sp/mask.pt" ;;
          shuffled) flags="--dir pre --weight_pertub $OUT/masks/shuffle_weight.pt --mask_dir $ticket" ;;
          *) echo "error: unknown method '$method' in METHODS (imp random omp reinit shuffled)" >&2; exit 2 ;;
        esac
        for seed in $MASK_SEEDS; do
          dir=$OUT/$t/${method}_${SET}_${sp}_s$seed
          add_run $B "$dir/complete.json" "$dir.log" \
            "$LAUNCH glue_trans.py $(common "$TASK") --output_dir $dir $flags --num_train_epochs $FT_EPOCHS" \
            "--logging_steps 0 --save_steps 0 --seed $seed"
        done
      done
    done
  done
done

# ---- disk the profile needs: IMP masks (bool, 1 byte per prunable weight), one-shot masks
# with their weight.pt, logs; no round weights or fine-tuned weights are kept ----------------
read -r PRUNABLE WBYTES < <(model_sizes "$MODEL" 2>/dev/null || echo "85524480 440000000")
disk=$(( (n_imp * EVENTS * PRUNABLE + n_oneshot * (PRUNABLE + WBYTES) + ${#QUEUE_CMDS[@]} * 200000) / 1000000 ))
echo "glue_tickets: profile $PROFILE, tasks [$TASKS], sets [$SETS], sparsities [$SPARSITIES], methods [$METHODS]"
echo "glue_tickets: disk needed about $disk MB under $OUT"
run_queue
echo "glue_tickets: all runs finished; report: $PYTHON report.py $OUT"
