"""Iterative magnitude pruning (IMP) on SQuAD v1.1 (docs/faithfulness.md §3).

The loop of LT_glue.py on ``BertForQuestionAnswering`` (with the pooler attached, so masks
have the same 73 keys as GLUE's): rounds of ``--save_steps`` updates, 10 % of the original
prunable set pruned after each, backbone rewound to the pre-trained weights,
``checkpoint-<step>/mask.pt`` written; stops after the 10th pruning.

    python LT_squad.py --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 \
        --train_file ../shared/data/squad/train-split-of-dev-v1.1.json \
        --predict_file ../shared/data/squad/eval-split-of-dev-v1.1.json \
        --output_dir out/imp_squad --do_train --evaluate_during_training --do_lower_case \
        --per_gpu_train_batch_size 16 --learning_rate 3e-5 --num_train_epochs 40 \
        --max_seq_length 384 --doc_stride 128 --logging_steps 2200 --save_steps 2200 --seed 57
"""
from utils.args import add_imp_args, training_parser
from utils.errors import run_cli
from utils.lottery import run_imp, start_run
from utils.models import load_model
from utils.squad import add_squad_args, squad_experiment

DEFAULTS = dict(logging_steps=10000, save_steps=10000, epochs=20.0)  # the original LT_squad.py's


def parse_args(argv=None):
    p = training_parser(__doc__.split("\n\n")[0], **DEFAULTS)
    add_squad_args(p)
    add_imp_args(p)
    return p.parse_args(argv)


def main(argv=None, script="LT_squad.py"):
    args = parse_args(argv)
    tokenizer, runtime = start_run(args, script)
    experiment = squad_experiment(args, runtime, tokenizer)
    model = load_model("squad", args.model_name_or_path).to(runtime.device)
    trainer = run_imp(args, runtime, model, experiment, script, results_extra={"model": args.model_name_or_path})
    return trainer.results


if __name__ == "__main__":
    run_cli(main)
