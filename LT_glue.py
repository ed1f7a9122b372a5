"""Iterative magnitude pruning (IMP) on a GLUE task (docs/faithfulness.md §3).

Rounds of ``--save_steps`` updates: after each, the round's weights are saved, 10 % of the
original prunable set is pruned by global magnitude, the backbone is rewound to the
pre-trained weights (the head keeps its trained values), AdamW and the schedule restart,
and ``checkpoint-<step>/mask.pt`` (k-th round: 10·k % sparsity) is written. Stops after the
10th pruning. ``checkpoint-<7·save_steps>/mask.pt`` is the 70 % ticket.

    python LT_glue.py --task_name MRPC --data_dir ../shared/data/glue/MRPC \
        --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 --output_dir out/imp_mrpc \
        --do_train --evaluate_during_training --per_gpu_train_batch_size 32 \
        --learning_rate 2e-5 --num_train_epochs 30 --save_steps 342 --logging_steps 342 --seed 57
"""
from utils.args import UNUSED, add_imp_args, training_parser
from utils.errors import run_cli
from utils.glue import add_glue_args, get_task, glue_experiment
from utils.lottery import run_imp, start_run
from utils.models import load_model


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0])
    add_glue_args(p)
    add_imp_args(p)
    for flag, kind in (("--pretraineda", str), ("--pretrainedb", str), ("--before_steps", int),
                       ("--pruning_steps", int)):
        p.add_argument(flag, type=kind, default=None, help=UNUSED)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tokenizer, runtime = start_run(args, "LT_glue.py")
    task = get_task(args.task_name)
    experiment = glue_experiment(args, runtime, tokenizer)
    model = load_model("glue", args.model_name_or_path, num_labels=task.num_labels,
                       finetuning_task=task.name).to(runtime.device)
    trainer = run_imp(args, runtime, model, experiment, "LT_glue.py", results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
