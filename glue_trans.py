"""Fine-tuning on a GLUE task with a fixed mask (docs/faithfulness.md §4).

``--dir pre|rand`` picks pre-trained or random weights, ``--weight_pertub`` overwrites matrices
(e.g. layer-shuffled ones) and ``--mask_dir`` attaches a mask that stays fixed: pruned weights
are exactly zero throughout. Without a mask this is dense fine-tuning. ``result.pt`` starts
with the initial sparsity; one final evaluation follows training.

    python glue_trans.py --dir pre --mask_dir pretrain_prun/mask.pt --task_name MRPC \
        --data_dir ../shared/data/glue/MRPC --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 \
        --output_dir out/mrpc --do_train --do_eval --evaluate_during_training \
        --per_gpu_train_batch_size 32 --learning_rate 2e-5 --num_train_epochs 3 --save_steps 0 --seed 57
"""
from utils.args import UNUSED, add_transfer_args, training_parser
from utils.errors import run_cli
from utils.glue import add_glue_args, glue_experiment, get_task
from utils.lottery import build_transfer_model, run_transfer, start_run


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0])
    add_glue_args(p)
    add_transfer_args(p)
    for flag, kind in (("--pretrained", str), ("--weight_dir", str), ("--prun_step", int)):
        p.add_argument(flag, type=kind, default=None, help=UNUSED)
    p.add_argument("--flag", default="rand", help=UNUSED)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    task = get_task(args.task_name)  # fail on a bad task name before loading anything
    tokenizer, runtime = start_run(args, "glue_trans.py")
    built = build_transfer_model(args, "glue", num_labels=task.num_labels, finetuning_task=task.name)
    experiment = glue_experiment(args, runtime, tokenizer)
    built.model.to(runtime.device)
    trainer = run_transfer(args, runtime, built, experiment, "glue_trans.py",
                           results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
