#!/usr/bin/env bash
# Run a recipe across several machines: every node runs this same command at the same time
# (by hand, or through SLURM: scripts/slurm_tickets.sbatch); each training run becomes one
# torchrun job spanning all nodes, rendezvous over c10d at MASTER_ADDR:MASTER_PORT. OUT must
# be on a file system every node sees (rank 0 writes the results; every node reads the
# completion markers to skip finished runs). The recipes divide the paper's global batch by
# NGPU x NNODES, so every run keeps it.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 NGPU=4 PROFILE=paper bash scripts/multinode.sh scripts/glue_tickets.sh
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 NGPU=4 PROFILE=paper bash scripts/multinode.sh scripts/glue_tickets.sh
#   ... --dry-run (after the recipe) prints the commands
set -euo pipefail
recipe=${1:?usage: multinode.sh RECIPE [--dry-run] (e.g. scripts/glue_tickets.sh)}
shift
: "${NNODES:?set NNODES}" "${MASTER_ADDR:?set MASTER_ADDR}"
NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
MASTER_PORT=${MASTER_PORT:-29500}
RDZV_ID=${RDZV_ID:-${SLURM_JOB_ID:-bert-tickets}}
export NNODES NGPU=${NGPU:-1}
# one rendezvous id per run (@RUN@ becomes the run's number, the same on every node), so
# consecutive runs of the recipe never meet an earlier run's rendezvous
export TORCHRUN_ARGS="--nnodes $NNODES --node_rank $NODE_RANK --rdzv_backend c10d --rdzv_endpoint $MASTER_ADDR:$MASTER_PORT --rdzv_id $RDZV_ID-@RUN@"
exec bash "$recipe" "$@"
