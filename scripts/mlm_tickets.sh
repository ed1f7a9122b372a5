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
source "$(dirname "$0")/recipe_lib.sh"

recipe_settings mlm
case "$PROFILE" in
  paper)  # the paper's commands: IMP batch 16 lr 5e-5 rounds of 10,000 steps; fine-tunes batch 8, 20,000 steps
    TRAIN=${TRAIN:-$ROOT/pretrain_data/en.train}; EVAL=${EVAL:-$ROOT/pretrain_data/en.valid}
    SPARSITIES=${SPARSITIES:-10 20 30 40 50 60 70 80 90}; METHODS=${METHODS:-imp random omp reinit shuffled}
    SETS=${SETS:-paper}; LR=5e-5; S=10000; IMP_BATCH=16; FT_BATCH=8; FT="--max_steps 20000 --logging_steps 2000"
    IMP_EPOCHS=1; BLOCK=""; SUBSET="" ;;
  small)  # CPU-sized: WikiText-2, blocks of 128, rounds of 100 steps, 200-step fine-tunes
    TRAIN=${TRAIN:-$ROOT/../shared/data/wikitext-2/test.txt}; EVAL=${EVAL:-$ROOT/../shared/data/wikitext-2/valid.txt}
    SPARSITIES=${SPARSITIES:-50 60 70}; METHODS=${METHODS:-imp random reinit}
    SETS=${SETS:-no_pooler}; LR=1e-4; S=100; IMP_BATCH=8; FT_BATCH=8; FT="--max_steps 200 --logging_steps 0"
    IMP_EPOCHS=10; BLOCK="--block_size 128"; SUBSET="--max_eval_samples 100" ;;
  *) echo "error: PROFILE must be paper or small, not '$PROFILE'" >&2; exit 2 ;;
esac
check_settings
path_setting TRAIN ""; path_setting EVAL ""
seed_settings "1 2 3"
IMP_BATCH_PER_GPU=$(per_process "$IMP_BATCH"); FT_BATCH_PER_GPU=$(per_process "$FT_BATCH")
need_model "TRAIN= and EVAL= text files"
LAUNCH=$(py)
max_sparsity=$(top_sparsity)
STOP=$([ "$PROFILE" = paper ] || echo "--max_steps $((S * (max_sparsity / 10 - 1)))")
COMMON=$(echo "--model_type bert --model_name_or_path $(q "$MODEL") --mlm --train_data_file $(q "$TRAIN") --eval_data_file $(q "$EVAL")" \
  "--do_train --do_eval --per_gpu_eval_batch_size 16 --learning_rate $LR $BLOCK $SUBSET $AMP --overwrite_output_dir $EXTRA")
expect_mlm() { echo "$1/checkpoint-$((S * ($2 / 10 - 1)))/mask.pt"; }

n_imp=0; n_oneshot=0; A=1; B=2
oneshot_masks pretrain
tickets_plan "$OUT/mlm" LT_pretrain.py pretrain_trans.py "$COMMON" \
  "--per_gpu_train_batch_size $IMP_BATCH_PER_GPU --evaluate_during_training --logging_steps $S --save_steps $S --num_train_epochs $IMP_EPOCHS $STOP" \
  "--per_gpu_train_batch_size $FT_BATCH_PER_GPU $FT --save_steps 0" expect_mlm

finish_recipe mlm_tickets 10
