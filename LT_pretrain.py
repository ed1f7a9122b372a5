"""Iterative magnitude pruning (IMP) on masked-language modelling (docs/faithfulness.md §3).

As the original: 10 % of the prunable set is pruned before any training, then 10 % more at
every ``--save_steps``; training stops after the ninth save (the 100 % mask). The original
never really rewound here (its rewind target aliased the live weights), so by default the
weights keep training across rounds (``--rewind none``); ``--rewind pretrained`` rewinds the
backbone to the pre-trained weights as the paper describes.

Masks: ``checkpoint-0/mask.pt`` is the 10 % mask (the original never saved it) and
``checkpoint-<k·save_steps>/mask.pt`` has 10·(k+1) %, so the 70 % ticket is
``checkpoint-<6·save_steps>/mask.pt``.

    python LT_pretrain.py --mlm --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 \
        --train_data_file ../shared/data/wikitext-2/test.txt \
        --eval_data_file ../shared/data/wikitext-2/valid.txt --block_size 128 \
        --output_dir out/imp_mlm --do_train --evaluate_during_training \
        --per_gpu_train_batch_size 16 --logging_steps 100 --save_steps 100 --num_train_epochs 10 --seed 57
"""
from utils.args import add_imp_args, training_parser
from utils.errors import run_cli
from utils.lottery import run_imp, start_run
from utils.models import load_model
from utils.text import add_text_args, mlm_experiment

DEFAULTS = dict(logging_steps=100, save_steps=100, epochs=1.0, batch_size=4)  # the original's


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0], **DEFAULTS)
    add_text_args(p)
    add_imp_args(p, rewind_default="none")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tokenizer, runtime = start_run(args, "LT_pretrain.py")
    model = load_model("pretrain", args.model_name_or_path).to(runtime.device)
    experiment = mlm_experiment(args, runtime, tokenizer, model)
    trainer = run_imp(args, runtime, model, experiment, "LT_pretrain.py", prune_first=True,
                      results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
