"""Masked-language-model training with a fixed mask (docs/faithfulness.md §4).

``--dir pre|rand``, ``--weight_pertub`` and ``--mask_dir`` as in glue_trans.py; the mask stays
fixed. ``result.pt`` starts with the initial sparsity; the run ends with one final evaluation
on ``--eval_data_file`` (the original had none), the score the report uses.

    python pretrain_trans.py --dir pre --mask_dir out/imp_mlm/checkpoint-600/mask.pt --mlm \
        --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 \
        --train_data_file ../shared/data/wikitext-2/test.txt \
        --eval_data_file ../shared/data/wikitext-2/valid.txt --block_size 128 \
        --output_dir out/mlm --do_train --evaluate_during_training --per_gpu_train_batch_size 8 \
        --logging_steps 200 --save_steps 0 --max_steps 200 --seed 57
"""
from utils.args import add_transfer_args, training_parser
from utils.errors import run_cli
from utils.lottery import build_transfer_model, run_transfer, start_run
from utils.text import add_text_args, mlm_experiment

DEFAULTS = dict(logging_steps=100, save_steps=100, epochs=1.0, batch_size=4)  # the original's


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0], **DEFAULTS)
    add_text_args(p)
    add_transfer_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tokenizer, runtime = start_run(args, "pretrain_trans.py")
    built = build_transfer_model(args, "pretrain")
    experiment = mlm_experiment(args, runtime, tokenizer, built.model)
    built.model.to(runtime.device)
    trainer = run_transfer(args, runtime, built, experiment, "pretrain_trans.py",
                           results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
