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
#   PROFILE      paper | small | quick  [small]   budgets: utils/profiles.py, docs/recipes.md
#   MODEL        checkpoint folder      [../shared/data/models/all-MiniLM-L6-v2]
#   DATA         GLUE root (TASK/ folders with train.tsv, dev.tsv)  [../shared/data/glue]
#   OUT          runs root              [runs/glue_<profile>]
#   TASKS        GLUE task folders      [profile]
#   SEEDS        dense fine-tuning seeds [profile: paper 1 2 3, small 1-5, quick 1 2]
#   SEEDS_IMP SEEDS_OMP SEEDS_RANDOM SEEDS_REINIT SEEDS_SHUFFLED
#                fine-tuning seeds per method [MASK_SEEDS; small: 1 2 3, 1 2 3, 1 2, 1];
#                random pruning draws a fresh mask per seed k (mask seed IMP_SEED + k - 1)
#   MASK_SEEDS   default seeds of every masked method [1]
#   ROUND_EPOCHS IMP_LR SCHEDULE  the IMP round budget: epochs per round, peak learning rate,
#                --round_schedule [profile: paper 3, 2e-5, whole_run; small 3, 3e-4, whole_run;
#                quick 1, 2e-4, per_round]
#   IMP_TAG      auto: an IMP run whose budget is not the profile's is named by it too
#                (imp_<set>_r<ROUND_EPOCHS>_lr<IMP_LR>_<SCHEDULE>, only the settings that differ),
#                and so are its tickets' fine-tunes; none: by its set alone (older records) [auto]
#   SUBSET_TASKS SUBSET_SEED  tasks trained on a seeded random row subset, its seed [small: STS-B, 0]
#   IMP_SEED     seed of the IMP run    [57, the paper's]
#   SPARSITIES   percent, of 10 20 ... 90 (the sparsities IMP writes) [profile]
#   METHODS      of: imp random omp reinit shuffled [profile]
#   SETS         prunable sets: paper (with the pooler, as the paper) and/or no_pooler [profile];
#                heads_ffn: structured tickets (whole heads and FFN neurons, the pooler dense)
#   NGPU         GPUs per run; > 1 runs every training script under torchrun [0]
#   JOBS         runs side by side (CPU: each gets nproc/JOBS threads) [1]
#   EXTRA        extra flags for every training run ["" ]
# Paths (MODEL, DATA, OUT) may hold spaces; a relative one is taken from the folder the recipe
# is started in (the defaults from the repository root). A setting the recipe cannot honour is
# refused in one line (exit code 2) before anything runs.
set -euo pipefail
source "$(dirname "$0")/recipe_lib.sh"  # --help
exec "${PYTHON:-python}" "$ROOT/utils/recipes.py" glue_tickets "$@"
