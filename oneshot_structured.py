"""One-shot structured pruning from a task's data: whole attention heads and FFN neurons ranked by
their importance to the task's loss (``--structure_score taylor|fisher``, on ``--score_batches``
training batches) or by weight magnitude, removed until ``--rate`` of the encoder's weights are
pruned (the pooler stays dense; every layer keeps a head), with no training. Starts from a
fine-tuned model (the usual case: Kwon et al.'s no-retraining recipe, with ``--rescale``) or from
the pre-trained weights with a fresh task head (say which: the record names the checkpoint).

``--rescale`` folds into the output weights the least-squares scales of the kept units that best
restore the dense model's layer outputs on the same batches. Writes to ``--output_dir``:
``mask.pt`` (an ordinary structured mask every script loads), ``mask_sparsity.json``,
``mask_provenance.json``, ``mask_scores.json`` (every unit's importance and score, and whether it
was kept), ``results.json`` (timings; with ``--do_eval`` the dev score of the pruned model
without training) and, with ``--rescale``, ``model/`` (the rescaled, pruned model: a
``--model_name_or_path`` for ``glue_trans.py`` to evaluate or fine-tune with the mask fixed).

    python oneshot_structured.py --task_name STS-B --data_dir ../shared/data/glue/STS-B \
        --model_name_or_path runs/sts-b/dense_s1/model --structure_score fisher --score_batches 16 \
        --rate 0.5 --rescale --do_eval --output_dir runs/sts-b/fisher_50
"""
import argparse
import time

from utils.args import Parser, command_of, data_cache_dir, first, train_rows
from utils.config import set_seed, setup_runtime
from utils.errors import UserError, run_cli
from utils.export import save_model_folder
from utils.glue import GlueCollator, eval_task_names, evaluate_glue, get_task, glue_baseline, load_glue_dataset
from utils.importance import NORMALISE, SCORES, oneshot_structured, score_batches
from utils.io import check_dir_writable, write_json
from utils.maskfile import save_mask
from utils.models import load_model, load_tokenizer
from utils.provenance import checkpoint_identity, environment, write_record
from utils.rundir import plain_args


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--task_name", required=True)
    a("--data_dir", required=True, help="the task's folder (train.tsv, dev.tsv)")
    a("--model_name_or_path", required=True, help="a fine-tuned model folder, or a pre-trained checkpoint")
    a("--output_dir", required=True)
    a("--structure_score", choices=SCORES, default="fisher", help="how heads and neurons are ranked")
    a("--normalise", choices=NORMALISE, default="size",
      help="gradient scores: per weight of the unit (size), raw (none), or over the RMS of its layer's group")
    a("--score_batches", type=int, default=16, help="training batches the gradient scores average over")
    a("--rate", type=float, required=True, help="fraction of the encoder's weights to prune")
    a("--rescale", action="store_true", help="least-squares rescaling of the kept units (writes model/)")
    a("--do_eval", action="store_true", help="evaluate the pruned model on the dev set, without training")
    a("--per_gpu_train_batch_size", type=int, default=32)
    a("--per_gpu_eval_batch_size", type=int, default=64)
    a("--max_seq_length", type=int, default=128)
    a("--max_train_samples", type=int, default=None)
    a("--train_subset_seed", type=int, default=None)
    a("--max_eval_samples", type=int, default=None)
    a("--cache_dir", default="")
    a("--overwrite_cache", action="store_true")
    a("--overwrite_output_dir", action="store_true", help="replace the mask.pt already in --output_dir")
    a("--seed", type=int, default=42, help="seed of the batches' order (and of a fresh task head)")
    a("--no_cuda", action="store_true")
    args = p.parse_args(argv)
    if not 0.0 < args.rate < 1.0:
        p.error(f"argument --rate: must lie strictly between 0 and 1, got {args.rate}")
    if args.score_batches < 1:
        p.error(f"argument --score_batches: must be at least 1, got {args.score_batches}")
    return args


def main(argv=None):
    args = parse_args(argv)
    task = get_task(args.task_name)
    out = check_dir_writable(args.output_dir, "--output_dir")
    if (out / "mask.pt").exists() and not args.overwrite_output_dir:
        raise UserError(f"--output_dir {out} already holds mask.pt; use --overwrite_output_dir to replace it")
    device = setup_runtime(args).device
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.model_name_or_path)
    model = load_model("glue", args.model_name_or_path, num_labels=task.num_labels,
                       finetuning_task=task.name).to(device)
    load = lambda split, name=task.name: load_glue_dataset(  # noqa: E731
        args.data_dir, name, split, tokenizer, args.max_seq_length, data_cache_dir(args), args.overwrite_cache)
    train = train_rows(load("train"), args)
    collator = GlueCollator(tokenizer, None)
    batches = score_batches(train, collator, args.per_gpu_train_batch_size, args.score_batches, args.seed, device)
    masks, record, scales, t_score, t_rescale = oneshot_structured(
        model, args.rate, args.structure_score, batches, args.normalise, args.rescale)
    out.mkdir(parents=True, exist_ok=True)
    report = save_mask(out / "mask.pt", masks, model=model, prunable_set="no_pooler", structure="heads_ffn")
    write_json(out / "mask_scores.json", {**record, "scales": scales})
    identity = checkpoint_identity(args.model_name_or_path, model.config, init="pre")
    write_record(out / "mask.pt", {
        "kind": f"structured_{args.structure_score}", "structure": "heads_ffn", "script": "oneshot_structured.py",
        "command": command_of("oneshot_structured.py", args), "task": task.name, "seed": args.seed,
        "rate": args.rate, "prunable_set": "no_pooler", "sparsity": report["prunable"]["sparsity"],
        "score": args.structure_score, "normalise": args.normalise, "score_batches": len(batches),
        "rescaled": args.rescale, "checkpoint": identity, "structured": report.get("structure"),
        "args": plain_args(args), "environment": environment()})
    results = {"script": "oneshot_structured.py", "kind": "structured_oneshot", "task": task.name,
               "score": args.structure_score, "sparsity": report["prunable"]["sparsity"],
               "seconds": {"scoring": round(t_score, 3), "rescaling": round(t_rescale, 3)},
               "heads_kept": report["structure"]["heads_kept"], "neurons_kept": report["structure"]["neurons_kept"]}
    if args.do_eval:
        evals = {n: first(load("dev", n), args.max_eval_samples) for n in eval_task_names(task.name)}
        start = time.perf_counter()
        results["eval"] = evaluate_glue(model, task.name, evals, collator, args.per_gpu_eval_batch_size, device)
        results["seconds"]["eval"] = round(time.perf_counter() - start, 3)
        results["baseline"] = glue_baseline(task.name, evals[eval_task_names(task.name)[0]]["labels"])
    if args.rescale:
        save_model_folder(model, out / "model", args.model_name_or_path)
    write_json(out / "results.json", results)
    print(f"{report['prunable']['sparsity']:.1f}% of the encoder pruned by {args.structure_score} "
          f"({len(batches)} batches, {t_score:.1f} s)" + (f", rescaled in {t_rescale:.1f} s" if args.rescale else "")
          + (f"; dev {results['eval']}" if args.do_eval else ""))
    return results


if __name__ == "__main__":
    run_cli(main)
