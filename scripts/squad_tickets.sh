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
source "$(dirname "$0")/recipe_lib.sh"

recipe_settings squad
path_setting DATA ../shared/data/squad
case "$PROFILE" in
  paper)  # the paper's commands: batch 16, lr 3e-5, 384/128, IMP rounds of 22,000 steps, 4-epoch fine-tunes
    TRAIN_FILE=${TRAIN_FILE:-$DATA/train-v1.1.json}; PREDICT_FILE=${PREDICT_FILE:-$DATA/dev-v1.1.json}
    SPARSITIES=${SPARSITIES:-10 20 30 40 50 60 70 80 90}; METHODS=${METHODS:-imp random omp reinit shuffled}
    SETS=${SETS:-paper}; LR=3e-5; BATCH=16; SEQ=384; STRIDE=128; S=22000; IMP_EPOCHS=40; FT="--num_train_epochs 4"
    SUBSET=""; FT_LOG=5500 ;;
  small)  # CPU-sized: 38 dev articles to train on, 300 questions of the other 10 to evaluate
    TRAIN_FILE=${TRAIN_FILE:-$DATA/train-split-of-dev-v1.1.json}; PREDICT_FILE=${PREDICT_FILE:-$DATA/eval-split-of-dev-v1.1.json}
    SPARSITIES=${SPARSITIES:-50 60 70}; METHODS=${METHODS:-imp random reinit}
    SETS=${SETS:-no_pooler}; LR=1e-4; BATCH=16; SEQ=192; STRIDE=64; S=125; IMP_EPOCHS=20
    FT="--max_steps 250"; SUBSET="--max_train_samples 2000 --max_eval_samples 300"; FT_LOG=0 ;;
  *) echo "error: PROFILE must be paper or small, not '$PROFILE'" >&2; exit 2 ;;
esac
check_settings
path_setting TRAIN_FILE ""; path_setting PREDICT_FILE ""
seed_settings "1 2 3"
BATCH_PER_GPU=$(per_process "$BATCH")
need_model "and DATA=<SQuAD folder>"
LAUNCH=$(py)
max_sparsity=$(top_sparsity)
STOP=$([ "$PROFILE" = paper ] || echo "--max_steps $((S * max_sparsity / 10))")
COMMON="--model_type bert --model_name_or_path $(q "$MODEL") --do_train --do_eval --do_lower_case"
COMMON+=" --train_file $(q "$TRAIN_FILE") --predict_file $(q "$PREDICT_FILE") --per_gpu_train_batch_size $BATCH_PER_GPU"
COMMON+=" --per_gpu_eval_batch_size 64 --learning_rate $LR --max_seq_length $SEQ --doc_stride $STRIDE"
COMMON+="${SUBSET:+ $SUBSET}${AMP:+ $AMP} --overwrite_output_dir${EXTRA:+ $EXTRA}"
expect_squad() { echo "$1/checkpoint-$((S * $2 / 10))/mask.pt"; }

n_imp=0; n_oneshot=0; A=1; B=2
oneshot_masks squad
tickets_plan "$OUT/squad" LT_squad.py squad_trans.py "$COMMON" \
  "--evaluate_during_training --logging_steps $S --save_steps $S --num_train_epochs $IMP_EPOCHS $STOP" \
  "$FT --evaluate_during_training --logging_steps $FT_LOG --save_steps 0" expect_squad

finish_recipe squad_tickets 10
