"""Command-line flags shared by the training scripts: every flag of the original is accepted
(those it never read are marked unused), plus this project's additions.

Each script builds its parser with :func:`training_parser` and adds its data flags, then the
IMP (:func:`add_imp_args`) or fixed-mask (:func:`add_transfer_args`) group.
"""
import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from utils.config import freeze
from utils.errors import UserError
from utils.importance import NORMALISE, SCORES
from utils.io import check_cache_dir
from utils.structured import STRUCTURES, resolve_prunable_set

UNUSED = "accepted for compatibility; unused, as in the original"


def _finite(v):
    return v == v and v not in (float("inf"), float("-inf"))


# Ranges of numeric flags, checked at parse time for every flag a script has (None: unset).
RANGES = {
    "per_gpu_train_batch_size": (lambda v: v >= 1, "must be at least 1"),
    "per_gpu_eval_batch_size": (lambda v: v >= 1, "must be at least 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "must be at least 1"),
    "learning_rate": (lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    "weight_decay": (lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    "adam_epsilon": (lambda v: _finite(v) and v > 0, "must be a finite number > 0"),
    "max_grad_norm": (lambda v: _finite(v) and v > 0, "must be a finite number > 0"),
    "num_train_epochs": (lambda v: _finite(v) and v > 0, "must be a finite number > 0"),
    "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
    "logging_steps": (lambda v: v >= 0, "must be >= 0 (0: never)"),
    "save_steps": (lambda v: v >= 0, "must be >= 0 (0: never)"),
    "num_workers": (lambda v: v >= 0, "must be >= 0"),
    "max_train_samples": (lambda v: v is None or v >= 1, "must be at least 1"),
    "max_eval_samples": (lambda v: v is None or v >= 1, "must be at least 1"),
    "train_subset_seed": (lambda v: v is None or 0 <= v < 2**32, "must lie in 0 .. 2**32 - 1"),
    "seed": (lambda v: 0 <= v < 2**32, "must lie in 0 .. 2**32 - 1 (numpy's seeds)"),
    "imp_rounds": (lambda v: v >= 1, "must be at least 1"),
    "max_seq_length": (lambda v: v >= 3, "must be at least 3 ([CLS], a token, [SEP])"),
    "mlm_probability": (lambda v: _finite(v) and 0 < v < 1, "must lie strictly between 0 and 1"),
    "n_best_size": (lambda v: v >= 1, "must be at least 1"),
    "max_answer_length": (lambda v: v >= 1, "must be at least 1"),
    "score_batches": (lambda v: v >= 1, "must be at least 1"),
    "checkpoint_steps": (lambda v: v >= -1, "must be -1 (never), 0 (automatic) or a number of updates"),
    "transfer_sparsity": (lambda v: 0 <= v <= 100, "must lie in 0 .. 100 (a sparsity in percent)"),
}

# folder flags that may not be empty: "" would silently mean the current folder (or a default)
NON_EMPTY = ("output_dir",)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that checks the range of every numeric flag (:data:`RANGES`) and returns
    a frozen :class:`utils.config.Config` that keeps the arguments it parsed (``config.argv``),
    so the command a run records is the one it ran, also when ``main(argv)`` is called
    in-process. Flags that other flags decide (``derived``) are set before freezing. ``ranges`` overrides rules of :data:`RANGES` for
    one script (pertub_weight.py's ``--seed -1``: unseeded, as the original)."""

    def __init__(self, *a, ranges=None, **kw):
        super().__init__(*a, **kw)
        self.ranges = {**RANGES, **(ranges or {})}
        self.derived = []  # (flag, fn(namespace, argv) -> value): flags another flag decides, before freezing

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        ns = super().parse_args(argv, namespace)
        for name, (ok, rule) in self.ranges.items():
            value = getattr(ns, name, None)
            if value is not None and not ok(value):
                self.error(f"argument --{name}: {rule}, got {value}")
        if getattr(ns, "train_subset_seed", None) is not None and getattr(ns, "max_train_samples", None) is None:
            self.error("argument --train_subset_seed: needs --max_train_samples (the size of the subset)")
        for name in NON_EMPTY:
            value = getattr(ns, name, None)
            if isinstance(value, str) and not value.strip():
                self.error(f"argument --{name}: must not be empty (give a folder; '.' is the current one)")
        if getattr(ns, "cache_dir", None):
            check_cache_dir(ns.cache_dir)  # a file: refused before anything runs, not a run uncached
        for name, derive in self.derived:
            try:
                setattr(ns, name, derive(ns, argv))
            except UserError as err:  # a conflict between flags: a usage error
                self.error(str(err))
        return freeze(ns, argv)


# flags naming files or folders a run reads: its --output_dir may neither be nor hold one
INPUT_FLAGS = ("model_name_or_path", "config_name", "tokenizer_name", "mask_dir", "weight_pertub", "data_dir",
               "train_file", "predict_file", "train_data_file", "eval_data_file")


def input_paths(args):
    """``{"--flag": path}`` of the inputs ``args`` names (:data:`INPUT_FLAGS`, unset ones left out)."""
    return {f"--{k}": getattr(args, k) for k in INPUT_FLAGS if getattr(args, k, None)}


def command_of(script, args):
    """``script`` and the arguments it was given, shell-quoted."""
    argv = getattr(args, "argv", None)
    return " ".join([script] + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])])


def training_parser(description, logging_steps=500, save_steps=500, epochs=3.0, batch_size=8,
                    learning_rate=5e-5):
    """Parser with the legacy Hugging Face example flags and their per-script defaults."""
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--output_dir", required=True, help="where results, masks and checkpoints go")
    a("--model_type", default="bert", help="only 'bert' is supported")
    a("--model_name_or_path", default="bert-base-uncased",
      help="local folder of a BERT checkpoint (or a name already in the local HF cache)")
    a("--config_name", default="", help="config folder if not the model's")
    a("--tokenizer_name", default="", help="tokenizer folder if not the model's")
    a("--cache_dir", default="", help="folder for tokenised-data caches (default ~/.cache/bert-tickets)")
    a("--do_train", action="store_true", help="train (IMP or fine-tuning)")
    a("--do_eval", action="store_true", help=UNUSED + " (evaluation comes from --evaluate_during_training)")
    a("--evaluate_during_training", action="store_true", help="evaluate every --logging_steps")
    a("--do_lower_case", action="store_true", help="lower-case input (uncased models lower-case anyway)")
    a("--per_gpu_train_batch_size", type=int, default=batch_size, help="batch size per process")
    a("--per_gpu_eval_batch_size", type=int, default=batch_size, help="evaluation batch size")
    a("--gradient_accumulation_steps", type=int, default=1, help="updates accumulate this many batches")
    a("--learning_rate", type=float, default=learning_rate, help="peak learning rate of AdamW")
    a("--weight_decay", type=float, default=0.0, help="AdamW decay (not on biases/LayerNorm)")
    a("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    a("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm")
    a("--num_train_epochs", type=float, default=epochs, help="epochs (IMP: of the whole run)")
    a("--max_steps", type=int, default=-1, help="if > 0: stop after this many updates (sets t_total)")
    a("--warmup_steps", type=int, default=0, help="linear warm-up steps")
    a("--logging_steps", type=int, default=logging_steps, help="evaluate/log every N updates")
    a("--save_steps", type=int, default=save_steps, help="IMP round length / checkpoint period (0: none)")
    a("--eval_all_checkpoints", action="store_true", help=UNUSED)
    a("--no_cuda", action="store_true", help="run on the CPU even if CUDA is there")
    a("--overwrite_output_dir", action="store_true", help="allow a non-empty --output_dir")
    a("--overwrite_cache", action="store_true", help="rebuild tokenised-data caches")
    a("--keep_foreign_files", action="store_true",
      help="write into an --output_dir that also holds entries no run of this tool wrote (they stay)")
    a("--seed", type=int, default=42, help="seed for head init, data order and masking")
    a("--fp16", action="store_true", help="float16 autocast + GradScaler (CUDA)")
    a("--fp16_opt_level", default="O1", help=UNUSED + " (apex is replaced by torch.amp)")
    a("--bf16", action="store_true", help="bfloat16 autocast (CUDA or CPU)")
    a("--local_rank", type=int, default=-1, help="set by torchrun through LOCAL_RANK")
    a("--server_ip", default="", help=UNUSED)
    a("--server_port", default="", help=UNUSED)
    a("--mask_impl", choices=("plain", "hooks"), default="plain",
      help="plain: hook-free masking at dense speed; hooks: torch.nn.utils.prune as the original")
    a("--mask_format", choices=("bool", "float"), default="bool",
      help="mask.pt tensors: bool (4x smaller) or the original's float32")
    a("--pad_to_max_length", action="store_true",
      help="pad every batch to --max_seq_length as the original (default: longest in batch)")
    a("--num_workers", type=int, default=0, help="DataLoader worker processes")
    a("--max_train_samples", type=int, default=None,
      help="use only the first N training examples (quick runs; default all)")
    a("--train_subset_seed", type=int, default=None,
      help="with --max_train_samples N: train on N rows drawn at random with this seed (spread over "
           "the whole file) instead of the first N")
    a("--max_eval_samples", type=int, default=None,
      help="evaluate on only the first N examples (quick runs; default all)")
    a("--resume", action="store_true",
      help="continue a killed run from its latest state in <output_dir>/resume (same command + --resume)")
    a("--checkpoint_steps", type=int, default=0,
      help="write a resumable state every N updates; 0: after every pruning event (IMP) or every "
           "epoch (fine-tuning); -1: never")
    return p


def first(dataset, n):
    """The first ``n`` rows of a ``datasets.Dataset`` (all of them when n is None)."""
    if dataset is None or n is None or n >= len(dataset):
        return dataset
    return dataset.select(range(n))


def train_rows(dataset, args):
    """The training rows a run uses: all, the first ``--max_train_samples`` or, with
    ``--train_subset_seed``, that many drawn without replacement with that seed (kept in file
    order; the same seed and file give the same rows on any machine)."""
    n, seed = args.max_train_samples, getattr(args, "train_subset_seed", None)
    if dataset is None or seed is None:
        return first(dataset, n)
    if n >= len(dataset):
        return dataset

    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    return dataset.select(rows.tolist())


def add_imp_args(p, rewind_default="pretrained"):
    """Flags of the IMP scripts (LT_*.py)."""
    a = p.add_argument
    a("--rewind", choices=("pretrained", "none"), default=rewind_default,
      help="after each pruning, rewind the backbone to the pre-trained weights, or keep training")
    a("--rewind_head", action="store_true",
      help="also return the task head to its initial (random) values each round (default: the "
           "head keeps its trained values, as the original)")
    a("--round_schedule", choices=("whole_run", "per_round"), default="whole_run",
      help="whole_run: each round restarts a linear schedule spanning the whole run (original); "
           "per_round: the schedule decays to 0 within each round")
    a("--imp_rounds", type=int, default=10,
      help="pruning events: each removes 1/rounds of the original prunable set")
    a("--prunable_set", choices=("paper", "no_pooler"), default="paper",
      help="paper: the 73 matrices incl. the pooler (original); no_pooler: leave the pooler out of "
           "pruning (its mask key stays, all ones; sparsity counts the rest)")
    add_structure_arg(p)
    a("--save_round_weights", type=int, default=1, choices=(0, 1),
      help="1: save each round's trained weights in checkpoint-<step>/ (as the original)")


def add_structure_arg(p):
    """``--structure`` and the structured score's flags (IMP scripts and oneshot.py); with
    ``--structure heads_ffn`` the parsed ``prunable_set`` is ``no_pooler``."""
    p.add_argument("--structure", choices=STRUCTURES, default="unstructured",
                   help="unstructured: single weights (the paper's); heads_ffn: whole attention heads and "
                        "FFN neurons, ranked by --structure_score, every layer keeping one head; "
                        "the pooler stays dense and sparsity counts the encoder (implies "
                        "--prunable_set no_pooler)")
    p.add_argument("--structure_score", choices=SCORES, default="magnitude",
                   help="--structure heads_ffn: how units are ranked: mean |w| (magnitude, the earlier "
                        "records'), mean |w| over its layer group's RMS (layer_norm_magnitude), or the "
                        "loss gradient of a gate on the unit (taylor: mean |dL/dg|, fisher: mean "
                        "(dL/dg)^2) on --score_batches training batches")
    p.add_argument("--score_batches", type=int, default=16,
                   help="training batches a taylor/fisher score averages over (at each pruning event)")
    p.add_argument("--score_normalise", choices=NORMALISE, default="size",
                   help="taylor/fisher: heads and neurons on one scale by importance per weight (size), "
                        "raw importance (none), or over the RMS of the unit's layer group (layer)")
    p.derived.append(("prunable_set", resolve_prunable_set))  # the parser must define --prunable_set


def add_transfer_args(p):
    """Flags of the fixed-mask scripts (*_trans.py)."""
    a = p.add_argument
    a("--dir", default=None, choices=("pre", "rand"),
      help="pre: pre-trained weights; rand: random init (default pre; the original crashed without it)")
    a("--mask_dir", default=None, help="mask.pt to apply and keep fixed (none: dense)")
    a("--weight_pertub", default=None,
      help="partial state dict (e.g. tmp/shuffle_weight.pt) loaded over the weights before masking")
    a("--save_model", action="store_true",
      help="at the end, write the fine-tuned model with its mask applied (effective weights, no mask "
           "buffers), its config and the tokenizer to <output_dir>/model/: a --model_name_or_path for "
           "any script, and the input of shrink.py")


def data_cache_dir(args):
    """Folder for tokenised-data caches: --cache_dir, else ~/.cache/bert-tickets (never the data
    folder, which may be shared or read-only)."""
    if args.cache_dir:
        return Path(args.cache_dir)
    return Path(os.environ.get("BERT_TICKETS_CACHE", Path.home() / ".cache" / "bert-tickets"))
