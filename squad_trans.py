"""Fine-tuning on SQuAD v1.1 with a fixed mask (docs/faithfulness.md §4), or IMP (docs/faithfulness.md §3.4).

With ``--dir``, ``--mask_dir`` or ``--weight_pertub`` it fine-tunes (pre-trained or random
weights, optional perturbed matrices, a mask that stays fixed) and evaluates once more at the
end. The paper's README runs its SQuAD *IMP* command through this script with none of those
three flags; then it runs IMP exactly as LT_squad.py would, and says so.

    python squad_trans.py --dir pre --mask_dir pretrain_prun/mask.pt \
        --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 \
        --train_file ../shared/data/squad/train-split-of-dev-v1.1.json \
        --predict_file ../shared/data/squad/eval-split-of-dev-v1.1.json \
        --output_dir out/squad --do_train --do_lower_case --per_gpu_train_batch_size 16 \
        --learning_rate 3e-5 --num_train_epochs 4 --save_steps 0 --logging_steps 550 --seed 57
"""
import argparse
import sys

import LT_squad
from utils.args import add_transfer_args, training_parser
from utils.errors import run_cli
from utils.lottery import build_transfer_model, run_transfer, start_run
from utils.squad import add_squad_args, squad_experiment

IMP_NOTE = ("squad_trans.py: no --dir, --mask_dir or --weight_pertub given: running IMP exactly as "
            "LT_squad.py (the paper's README runs its SQuAD IMP command through this script)")


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0], logging_steps=500, save_steps=500, epochs=20.0)
    add_squad_args(p)
    add_transfer_args(p)
    return p.parse_args(argv)


def wants_transfer(argv):
    """True when any of --dir, --mask_dir, --weight_pertub is on the command line."""
    p = argparse.ArgumentParser(add_help=False)
    add_transfer_args(p)
    known, _ = p.parse_known_args(argv)
    return any(v is not None for v in (known.dir, known.mask_dir, known.weight_pertub))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not wants_transfer(argv) and not any(a in ("-h", "--help") for a in argv):
        print(IMP_NOTE)
        return LT_squad.main(argv, script="squad_trans.py (IMP)")
    args = parse_args(argv)
    tokenizer, runtime = start_run(args, "squad_trans.py")
    built = build_transfer_model(args, "squad")
    experiment = squad_experiment(args, runtime, tokenizer)
    built.model.to(runtime.device)
    trainer = run_transfer(args, runtime, built, experiment, "squad_trans.py",
                           results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
