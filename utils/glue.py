"""GLUE data: the nine tasks read from their original TSV files, tokenised, cached, batched, scored.

Reads the layout that the GLUE download script writes and that the legacy transformers 2.x
processors read (docs/faithfulness.md §6.1): same columns, same label order, MNLI evaluated on
``dev_matched.tsv`` (``mnli``) and ``dev_mismatched.tsv`` (``mnli-mm``).

>>> from transformers import BertTokenizer
>>> tok = BertTokenizer("../shared/data/vocab/bert-base-uncased-vocab.txt")  # doctest: +SKIP
>>> train = load_glue_dataset("../shared/data/glue/MRPC", "mrpc", "train", tok)  # doctest: +SKIP
>>> len(train), train.column_names  # doctest: +SKIP
(3668, ['labels', 'input_ids', 'token_type_ids', 'attention_mask'])
"""
import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from torch.utils.data import DataLoader, SequentialSampler

from utils.args import data_cache_dir, first, train_rows
from utils.data import PaddingCollator, cached_dataset
from utils.errors import UserError
from utils.experiment import Experiment
from utils.metrics import glue_baseline, glue_metrics


@dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task keeps its text and label in each TSV row, and how it is scored."""

    name: str
    labels: tuple[str, ...] | None  # None for regression (STS-B)
    output_mode: str  # "classification" or "regression"
    text_a_col: int
    text_b_col: int | None  # None for single-sentence tasks
    label_col: int  # -1 means the last column, as in the legacy processors
    has_header: bool
    train_file: str
    dev_file: str

    @property
    def num_labels(self):
        """Size of the classifier output: 1 for regression."""
        return 1 if self.labels is None else len(self.labels)


def _task(name, labels, a, b, label, header=True, dev="dev.tsv"):
    mode = "regression" if labels is None else "classification"
    return GlueTask(name, labels, mode, a, b, label, header, "train.tsv", dev)


_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")
GLUE_TASKS = {
    "cola": _task("cola", _BINARY, 3, None, 1, header=False),
    "sst-2": _task("sst-2", _BINARY, 0, None, 1),
    "mrpc": _task("mrpc", _BINARY, 3, 4, 0),
    "sts-b": _task("sts-b", None, 7, 8, -1),
    "qqp": _task("qqp", _BINARY, 3, 4, 5),
    "mnli": _task("mnli", ("contradiction", "entailment", "neutral"), 8, 9, -1, dev="dev_matched.tsv"),
    "mnli-mm": _task(
        "mnli-mm", ("contradiction", "entailment", "neutral"), 8, 9, -1, dev="dev_mismatched.tsv"
    ),
    "qnli": _task("qnli", _NLI, 1, 2, -1),
    "rte": _task("rte", _NLI, 1, 2, -1),
    "wnli": _task("wnli", _BINARY, 1, 2, -1),
}
_ALIASES = {"sst2": "sst-2", "stsb": "sts-b"}  # the `datasets` GLUE config names
_SKIP_SHORT_ROWS = {"qqp"}  # the legacy QQP processor swallowed IndexError on short rows


def get_task(task_name):
    """The :class:`GlueTask` for a case-insensitive name (``SST-2``, ``sst2``, ``MNLI`` ...)."""
    key = str(task_name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise UserError(f"unknown --task_name {task_name!r} (choose from {', '.join(GLUE_TASKS)})")
    return GLUE_TASKS[key]


def eval_task_names(task_name):
    """Dev sets evaluated for a task: ``["mnli", "mnli-mm"]`` for MNLI, else just the task."""
    name = get_task(task_name).name
    return ["mnli", "mnli-mm"] if name == "mnli" else [name]


def _data_file(data_dir, task, split):
    if split not in ("train", "dev"):
        raise ValueError(f"split must be 'train' or 'dev', not {split!r}")
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir folder not found: {data_dir}")
    path = os.path.join(data_dir, task.train_file if split == "train" else task.dev_file)
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found (task {task.name} reads it from --data_dir)")
    return path


def _min_columns(task):
    """Columns a row needs; a label in column -1 must come after the text columns."""
    text_cols = [c for c in (task.text_a_col, task.text_b_col) if c is not None]
    return max(text_cols + [task.label_col]) + 1 if task.label_col >= 0 else max(text_cols) + 2


STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores


def _score(raw, where):
    """An STS-B score: a finite number in 0..5 (``nan``, ``inf`` or ``1e400`` would train a NaN loss)."""
    try:
        label = float(raw)
    except ValueError:
        raise UserError(f"{where}: label {raw!r} is not a number") from None
    if not math.isfinite(label):
        raise UserError(f"{where}: label {raw!r} is not a finite number")
    low, high = STSB_RANGE
    if not low <= label <= high:
        raise UserError(f"{where}: label {raw!r} lies outside the STS-B scores {low:g}-{high:g}")
    return label


def _row_to_example(task, row, where):
    """One TSV row -> example dict; ``where`` ("file line N") prefixes error messages."""
    need = _min_columns(task)
    if len(row) < need:
        raise UserError(f"{where}: expected at least {need} tab-separated columns, found {len(row)}")
    raw = row[task.label_col]
    if task.labels is None:
        label = _score(raw, where)
    elif raw in task.labels:
        label = task.labels.index(raw)
    else:
        raise UserError(f"{where}: label {raw!r} is not one of {', '.join(task.labels)}")
    text_b = row[task.text_b_col] if task.text_b_col is not None else None
    return {"text_a": row[task.text_a_col], "text_b": text_b, "label": label}


def _read_rows(task, path):
    """All examples of one TSV file and the number of short rows skipped (QQP only)."""
    examples, skipped = [], 0
    with open(path, encoding="utf-8-sig") as f:  # utf-8-sig drops MRPC's byte-order mark
        reader = csv.reader(f, delimiter="\t", quotechar=None)
        for row in reader:
            if task.has_header and reader.line_num == 1:
                continue
            if task.name in _SKIP_SHORT_ROWS and len(row) < _min_columns(task):
                skipped += 1
                continue
            examples.append(_row_to_example(task, row, f"{path} line {reader.line_num}"))
    return examples, skipped


def read_examples(data_dir, task_name, split):
    """Examples of ``split`` ("train" or "dev") as dicts ``text_a``, ``text_b``, ``label``.

    ``text_b`` is None for single-sentence tasks; ``label`` is the index in the task's label
    list, or a float for STS-B. Bad rows raise :class:`UserError` naming the file and line,
    except short QQP rows, which are skipped (as the legacy processor did) and counted in one
    warning line on stderr.
    """
    task = get_task(task_name)
    path = _data_file(data_dir, task, split)
    try:
        examples, skipped = _read_rows(task, path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a readable UTF-8 TSV file ({err})") from None
    except OSError as err:  # no read permission, a folder named train.tsv, an I/O error
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None
    if skipped:
        print(f"warning: {path}: skipped {skipped} rows with too few columns", file=sys.stderr)
    if not examples:
        raise UserError(f"{path}: no examples in file")
    return examples


# --- tokenised datasets, cached on disk ----------------------------------------------------


def _tokenize(examples, tokenizer, max_seq_length, fingerprint):
    """Dataset of unpadded ``input_ids``/``token_type_ids``/``attention_mask`` and ``labels``."""
    pair = examples[0]["text_b"] is not None
    columns = {"text_a": [e["text_a"] for e in examples], "labels": [e["label"] for e in examples]}
    if pair:
        columns["text_b"] = [e["text_b"] for e in examples]

    def encode(batch):
        args = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
        enc = tokenizer(*args, truncation=True, max_length=max_seq_length, return_token_type_ids=True)
        return {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    text_cols = ["text_a", "text_b"] if pair else ["text_a"]
    raw = Dataset.from_dict(columns)
    # an explicit fingerprint spares `datasets` from pickling the tokenizer to hash `encode`
    return raw.map(encode, batched=True, remove_columns=text_cols, new_fingerprint=fingerprint)


def load_glue_dataset(
    data_dir, task_name, split, tokenizer, max_seq_length=128, cache_dir=None, overwrite_cache=False
):
    """Tokenised ``split`` of a GLUE task as a :class:`datasets.Dataset`, cached on disk.

    Columns: ``input_ids``, ``token_type_ids``, ``attention_mask`` (unpadded, truncated
    longest-first to ``max_seq_length``) and ``labels`` (int, or float for STS-B). The cache
    lives in ``cache_dir`` or in ``.cache/`` next to the data file; ``overwrite_cache`` rebuilds it.
    """
    task = get_task(task_name)
    path = _data_file(data_dir, task, split)
    params = {  # the reading layout, not the task name, so mnli and mnli-mm share their train cache
        "max_seq_length": max_seq_length,
        "layout": [task.labels, task.text_a_col, task.text_b_col, task.label_col, task.has_header],
        "skip_short_rows": task.name in _SKIP_SHORT_ROWS,
    }
    build = lambda digest: _tokenize(read_examples(data_dir, task.name, split), tokenizer,  # noqa: E731
                                     max_seq_length, digest)
    return cached_dataset(path, tokenizer, f"glue_{Path(path).stem}_len{max_seq_length}", params, build,
                          cache_dir, overwrite_cache)


# --- batching and evaluation ---------------------------------------------------------------


GlueCollator = PaddingCollator  # pads to the longest row or a fixed length; labels long or float


def _predict(model, dataset, collator, batch_size, device, amp_dtype, regression):
    """Predictions, gold labels and mean batch loss over one dev set."""
    sampler = SequentialSampler(dataset)
    loader = DataLoader(dataset, sampler=sampler, batch_size=batch_size, collate_fn=collator)
    preds, golds, losses = [], [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(**batch)
        logits = out.logits.float()
        preds.append(logits.squeeze(-1) if regression else logits.argmax(dim=-1))
        golds.append(batch["labels"])
        losses.append(out.loss.float().item())
    preds = torch.cat(preds).cpu().numpy()
    golds = torch.cat(golds).cpu().numpy()
    return preds, golds, sum(losses) / len(losses)


@torch.no_grad()
def evaluate_glue(model, task_name, eval_datasets, collator, batch_size, device, amp_dtype=None):
    """GLUE dev metrics of ``model`` as plain floats.

    ``eval_datasets`` maps each name of :func:`eval_task_names` to its tokenised dev set.
    Predictions are the argmax of the logits, or the squeezed logit for STS-B. For MNLI the
    result holds the matched metrics under the plain keys (``acc``) and the mismatched accuracy
    under ``acc_mm``: the original overwrote matched ``acc`` with mismatched, we keep both.
    ``eval_loss`` is the mean batch loss on the first dev set.
    """
    names = eval_task_names(task_name)
    missing = [n for n in names if n not in eval_datasets]
    if missing:
        raise ValueError(f"eval_datasets lacks {missing} (expected keys {names})")
    regression = get_task(task_name).output_mode == "regression"
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        result = {}
        for i, name in enumerate(names):
            preds, golds, loss = _predict(
                model, eval_datasets[name], collator, batch_size, device, amp_dtype, regression
            )
            suffix = "" if i == 0 else "_mm"  # only MNLI has a second dev set
            for key, value in glue_metrics(name, preds, golds).items():
                result[key + suffix] = float(value)
            if i == 0:
                result["eval_loss"] = float(loss)
    finally:
        model.train(was_training)
    return result


def glue_experiment(args, runtime, tokenizer):
    """The :class:`utils.experiment.Experiment` of a GLUE run, from the scripts' flags: the
    training rows (None without --do_train), the collator, ``evaluate(model) -> dict`` on the
    dev set(s) (MNLI: matched and mismatched) and the trivial baseline on the rows evaluated.
    """
    task = get_task(args.task_name)
    cache = data_cache_dir(args)
    load = lambda name, split: load_glue_dataset(  # noqa: E731
        args.data_dir, name, split, tokenizer, args.max_seq_length, cache, args.overwrite_cache)
    train = train_rows(load(task.name, "train"), args) if args.do_train else None
    evals = {name: first(load(name, "dev"), args.max_eval_samples) for name in eval_task_names(task.name)}
    collator = GlueCollator(tokenizer, args.max_seq_length if args.pad_to_max_length else None)

    def evaluate_fn(model):
        return evaluate_glue(model, task.name, evals, collator, args.per_gpu_eval_batch_size,
                             runtime.device, runtime.amp_dtype)

    first_dev = evals[eval_task_names(task.name)[0]]
    _check_dev_rows(task, first_dev, args)
    return Experiment(task.name, train, collator, evaluate_fn, glue_baseline(task.name, first_dev["labels"]))


def _check_dev_rows(task, dev, args):
    """STS-B is scored by Pearson's correlation, which needs at least two dev rows."""
    if task.output_mode != "regression" or len(dev) >= 2:
        return
    path = _data_file(args.data_dir, task, "dev")
    cut = args.max_eval_samples is not None and args.max_eval_samples < 2
    where = f"--max_eval_samples {args.max_eval_samples}" if cut else path
    raise UserError(f"{where}: STS-B is scored by Pearson's correlation, which needs at least 2 dev rows; "
                    f"found {len(dev)}")


def add_glue_args(parser):
    """--data_dir, --task_name and --max_seq_length, as the original run_glue.py."""
    parser.add_argument("--data_dir", required=True, help="folder with the task's TSV files")
    parser.add_argument("--task_name", required=True, help=f"one of {', '.join(GLUE_TASKS)}")
    parser.add_argument("--max_seq_length", type=int, default=128, help="longer pairs are truncated")
