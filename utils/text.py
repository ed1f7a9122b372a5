"""Masked-language-modelling data and evaluation, as the legacy ``run_language_modeling.py`` did it.

docs/faithfulness.md §6.3 (blocks, line-by-line, 15 % / 80-10-10 corruption; perplexity and
masked-token accuracy). Evaluation is deterministic by default (``seed=0``);
``seed=None`` gives the original's fresh random masking at every call.

Example::

    tok = AutoTokenizer.from_pretrained("../shared/data/models/all-MiniLM-L6-v2")
    bs = resolve_block_size(-1, tok, model.config.max_position_embeddings)
    ds = load_text_dataset("../shared/data/wikitext-2/valid.txt", tok, bs)
    print(evaluate_mlm(model, ds, tok, batch_size=8, device=torch.device("cpu")))
"""
import codecs
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, SequentialSampler

from utils.args import UNUSED, data_cache_dir, first, train_rows
from utils.data import cached_dataset
from utils.errors import UserError
from utils.experiment import Experiment

SNIFF_BYTES = 1 << 20  # the cheap "is this text?" check reads the first 1 MB only


def resolve_block_size(block_size, tokenizer, max_positions):
    """Return the block length: None/≤0 → min(tokenizer max, model max); above the model max → UserError."""
    limits = [n for n in (tokenizer.model_max_length, max_positions) if n]
    if block_size is None or block_size <= 0:
        block_size = min(limits)
    elif max_positions and block_size > max_positions:
        raise UserError(f"--block_size {block_size} is above the model's maximum of {max_positions}")
    if block_size < 3:
        raise UserError(f"--block_size {block_size} is too small: [CLS] and [SEP] need 2 of at least 3 positions")
    return int(block_size)


def load_text_dataset(path, tokenizer, block_size, line_by_line=False, cache_dir=None, overwrite_cache=False):
    """Tokenise a raw text file into a ``Dataset`` with one column ``input_ids``, cached on disk.

    Default (legacy ``TextDataset``): the whole text tokenised without specials, cut into consecutive
    blocks of ``block_size - 2`` tokens (tail dropped), each wrapped ``[CLS] … [SEP]``.
    ``line_by_line``: each non-blank line encoded with specials, truncated to ``block_size``.
    """
    path = _check_text_file(path)
    params = {"block_size": int(block_size), "line_by_line": bool(line_by_line)}
    make = _line_dataset if line_by_line else _block_dataset
    prefix = f"{path.name}.{'lines' if line_by_line else 'blocks'}{block_size}"
    return cached_dataset(path, tokenizer, prefix, params,
                          lambda digest: make(_read_text(path), tokenizer, block_size, path),
                          cache_dir, overwrite_cache)


def _check_text_file(path):
    """Fail early, naming the file, if it is missing, empty or not UTF-8 text (first 1 MB)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: text file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as err:  # no read permission, an I/O error
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None
    if b"\x00" in head:
        raise UserError(f"{path}: not a text file (contains NUL bytes)")
    try:  # incremental decoder: a character cut at the 1 MB boundary is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 text (byte {err.start})") from None
    return path.resolve()


def _read_text(path):
    """Read the whole file as the original did (UTF-8, universal newlines); whitespace-only is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None
    if not text.strip():
        raise UserError(f"{path}: file is empty (only whitespace)")
    return text


def _block_dataset(text, tokenizer, block_size, path):
    """Concatenate the token ids of the whole text and cut them into [CLS] + block + [SEP] rows."""
    # BERT's tokenizer splits on whitespace and turns "\n" into a space, so tokenising line by line
    # and concatenating gives exactly the ids of tokenising the whole string at once (the original).
    lines = Dataset.from_dict({"text": text.split("\n")})
    ids = lines.map(_tokenize_fn(tokenizer, add_special_tokens=False), batched=True,
                    remove_columns=["text"], desc="Tokenising")
    flat = _flatten_ids(ids)
    inner = block_size - 2
    n_blocks = len(flat) // inner
    if n_blocks == 0:
        raise UserError(f"{path} has {len(flat)} tokens, fewer than one block of {inner} "
                        f"(--block_size {block_size} minus [CLS] and [SEP])")
    blocks = flat[: n_blocks * inner].reshape(n_blocks, inner)
    cls = np.full((n_blocks, 1), tokenizer.cls_token_id, dtype=blocks.dtype)
    sep = np.full((n_blocks, 1), tokenizer.sep_token_id, dtype=blocks.dtype)
    rows = np.concatenate([cls, blocks, sep], axis=1)
    # Build the list column straight from numpy: no per-token python objects for big corpora.
    offsets = pa.array(np.arange(0, rows.size + 1, block_size, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(rows.ravel()))
    return Dataset(pa.table({"input_ids": column}))


def _line_dataset(text, tokenizer, block_size, path):
    """One row per non-blank line, encoded with specials and truncated to ``block_size``."""
    lines = [line for line in text.splitlines() if line and not line.isspace()]
    ds = Dataset.from_dict({"text": lines})
    return ds.map(_tokenize_fn(tokenizer, add_special_tokens=True, truncation=True, max_length=block_size),
                  batched=True, remove_columns=["text"], desc="Tokenising")


def _tokenize_fn(tokenizer, **kwargs):
    """A batched ``map`` function returning only ``input_ids``."""
    def fn(batch):
        enc = tokenizer(batch["text"], return_attention_mask=False, return_token_type_ids=False,
                        verbose=False, **kwargs)
        return {"input_ids": enc["input_ids"]}
    return fn


def _flatten_ids(ds):
    """All ids of a list column, in order, as one numpy array (read from Arrow, no python lists)."""
    chunks = [c.flatten().to_numpy(zero_copy_only=False) for c in ds.data.column("input_ids").chunks]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)


def mask_tokens(input_ids, tokenizer, mlm_probability=0.15, generator=None, special_tokens_mask=None,
                at_least_one=False):
    """Return ``(corrupted input_ids, labels)`` with the original 15 % / 80-10-10 MLM corruption.

    Each token that is neither special nor padding is selected with probability ``mlm_probability``;
    labels hold the original id there and -100 elsewhere. Of the selected: 80 % → [MASK], half of the
    rest → an id uniform over ``len(tokenizer)``, the rest unchanged. The draws (in the legacy order)
    come from ``generator`` if given, else the global torch RNG. ``input_ids`` is not modified.
    Note: the legacy BERT tokenizer marked only [CLS]/[SEP] as special here; like transformers 5, every
    id in ``tokenizer.all_special_ids`` ([UNK], [MASK] too) is excluded unless ``special_tokens_mask``
    is given.
    ``at_least_one`` (training batches): when the draws select no token of the whole batch, one
    maskable token, drawn uniformly, is selected anyway (and corrupted 80-10-10 as the others): a
    batch without a masked token has no MLM loss (NaN, as the original got on short blocks, e.g.
    ``--block_size 3``). Batches that drew a token are unchanged, draws included.
    """
    if not 0.0 < mlm_probability <= 1.0:
        raise UserError(f"--mlm_probability {mlm_probability} must be in (0, 1]")
    inputs, labels = input_ids.clone(), input_ids.clone()
    if special_tokens_mask is None:
        special_ids = torch.tensor(tokenizer.all_special_ids, device=inputs.device)
        special_tokens_mask = torch.isin(inputs, special_ids)
    never = special_tokens_mask.bool() | inputs.eq(tokenizer.pad_token_id)
    device, shape = inputs.device, inputs.shape
    probability = torch.full(shape, float(mlm_probability), device=device).masked_fill_(never, 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()
    if at_least_one and not bool(selected.any()):
        candidates = (~never).flatten().nonzero().flatten()
        if candidates.numel():  # else every token is special or padding: nothing can be masked
            pick = torch.randint(candidates.numel(), (1,), generator=generator, device=device)
            selected.view(-1)[candidates[pick]] = True
    labels[~selected] = -100
    to_mask = torch.bernoulli(torch.full(shape, 0.8, device=device), generator=generator).bool() & selected
    inputs[to_mask] = tokenizer.mask_token_id
    to_random = (torch.bernoulli(torch.full(shape, 0.5, device=device), generator=generator).bool()
                 & selected & ~to_mask)
    random_ids = torch.randint(len(tokenizer), shape, dtype=inputs.dtype, device=device, generator=generator)
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


class MLMCollator:
    """Pad ``input_ids`` to the batch's longest (pad id, right side), add ``attention_mask``, corrupt for MLM."""

    def __init__(self, tokenizer, mlm_probability=0.15, generator=None, at_least_one=False):
        """``generator``: a ``torch.Generator`` for reproducible masking; None uses the global RNG.
        ``at_least_one``: every batch has a masked token (training; :func:`mask_tokens`)."""
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise UserError("the tokenizer has no [MASK] or [PAD] token: it cannot be used for MLM")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.generator = generator
        self.at_least_one = at_least_one

    def __call__(self, features):
        """``features``: rows with ``input_ids`` (lists or tensors) → dict of long tensors."""
        rows = [torch.as_tensor(f["input_ids"] if isinstance(f, dict) else f, dtype=torch.long) for f in features]
        longest = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        special = attention_mask.eq(0) | torch.isin(input_ids, torch.tensor(self.tokenizer.all_special_ids))
        input_ids, labels = mask_tokens(input_ids, self.tokenizer, self.mlm_probability, self.generator, special,
                                        at_least_one=self.at_least_one)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def evaluate_mlm(model, dataset, tokenizer, batch_size, device, amp_dtype=None, mlm_probability=0.15, seed=0):
    """Masked-LM evaluation → ``{"perplexity", "acc", "eval_loss"}`` as plain floats.

    Batches are taken in order and masked by an ``MLMCollator`` whose generator is seeded with ``seed``
    afresh at each call, so the same weights always give the same numbers; ``seed=None`` masks from
    the global RNG like the original (different at every call). ``eval_loss`` is the mean over batches
    of the batch-mean MLM loss and ``perplexity = exp(eval_loss)``, as the original. ``acc`` is top-1
    accuracy in percent counted over all masked tokens (label ≠ -100); the original instead averaged
    per-batch accuracies weighted by batch × length. A batch with no masked token (possible only for
    tiny inputs; the original got NaN) is left out of the loss mean.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    collator = MLMCollator(tokenizer, mlm_probability, generator)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=SequentialSampler(dataset), collate_fn=collator)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per batch
    n_batches = torch.zeros((), dtype=torch.long, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n_masked = torch.zeros((), dtype=torch.long, device=device)
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                out = model(**batch)
                selected = batch["labels"].ne(-100)
                count = selected.sum()
                loss_sum += torch.where(count > 0, out.loss.double(), 0.0)
                n_batches += (count > 0).long()
                correct += out.logits[selected].argmax(-1).eq(batch["labels"][selected]).sum()
                n_masked += count
    finally:
        model.train(was_training)
    if int(n_masked) == 0:
        raise ValueError("MLM evaluation found no token to mask (empty or all-special evaluation set)")
    eval_loss = float(loss_sum / n_batches)
    perplexity = math.exp(eval_loss) if eval_loss < 709.0 else math.inf  # 709: the largest exp in a double
    return {"perplexity": perplexity, "acc": 100.0 * int(correct) / int(n_masked), "eval_loss": eval_loss}


def mlm_baseline(dataset, tokenizer, batch_size, mlm_probability=0.15, seed=0):
    """The trivial MLM baseline: always predict the most frequent masked target token, under the
    same seeded masking as :func:`evaluate_mlm` -> ``{"metric": "acc", "value": percent}``."""
    generator = torch.Generator().manual_seed(seed)
    collator = MLMCollator(tokenizer, mlm_probability, generator)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=SequentialSampler(dataset), collate_fn=collator)
    counts = torch.zeros(len(tokenizer), dtype=torch.long)
    for batch in loader:
        labels = batch["labels"][batch["labels"].ne(-100)]
        counts += torch.bincount(labels, minlength=counts.numel())[: counts.numel()]
    total = int(counts.sum())
    if total == 0:
        return None
    top = int(counts.argmax())
    return {"metric": "acc", "value": 100.0 * int(counts[top]) / total,
            "what": f"always the most frequent masked token ({tokenizer.convert_ids_to_tokens(top)!r})"}


def add_text_args(parser):
    """The data flags of the original run_language_modeling.py."""
    a = parser.add_argument
    a("--train_data_file", required=True, help="raw text to train on")
    a("--eval_data_file", default=None, help="raw text to evaluate on")
    a("--line_by_line", action="store_true", help="one example per non-blank line (default: blocks)")
    a("--should_continue", action="store_true", help=UNUSED + " (resume from the newest checkpoint)")
    a("--mlm", action="store_true", help="masked-language modelling (required for BERT)")
    a("--mlm_probability", type=float, default=0.15, help="fraction of tokens corrupted")
    a("--block_size", type=int, default=-1, help="tokens per block (-1: the model's maximum)")
    a("--noise_rate", type=float, default=0.01, help=UNUSED)
    a("--save_total_limit", type=int, default=None,
      help=UNUSED + " (the original deleted old checkpoints, masks included; this never deletes masks)")
    a("--eval_masking", choices=("fixed", "random"), default="fixed",
      help="fixed: evaluation masks seeded by --seed, so repeated evaluations agree; random: fresh "
           "masks from the global RNG at every evaluation, as the original")


def mlm_experiment(args, runtime, tokenizer, model):
    """The :class:`utils.experiment.Experiment` of an MLM run, from the scripts' flags: training
    blocks (None without --do_train), the collator, ``evaluate`` (None without --eval_data_file)
    and the most-frequent-token baseline.
    """
    if not args.mlm:
        raise UserError("BERT is a masked language model: pass --mlm (as the original required)")
    if (args.do_eval or args.evaluate_during_training) and not args.eval_data_file:
        raise UserError("--do_eval/--evaluate_during_training need --eval_data_file")
    block = resolve_block_size(args.block_size, tokenizer, model.config.max_position_embeddings)
    cache = data_cache_dir(args)
    load = lambda path: load_text_dataset(path, tokenizer, block, args.line_by_line, cache,  # noqa: E731
                                          args.overwrite_cache)
    train = train_rows(load(args.train_data_file), args) if args.do_train else None
    collator = MLMCollator(tokenizer, args.mlm_probability, at_least_one=True)  # no batch without a loss
    if not args.eval_data_file:
        print("note: no --eval_data_file: this run ends without a score (its complete.json has no headline, "
              "and the report lists it as finished without a score, in no table)")
        return Experiment("mlm", train, collator)
    evals = first(load(args.eval_data_file), args.max_eval_samples)
    seed = args.seed if args.eval_masking == "fixed" else None

    def evaluate_fn(m):
        return evaluate_mlm(m, evals, tokenizer, args.per_gpu_eval_batch_size, runtime.device,
                            runtime.amp_dtype, args.mlm_probability, seed=seed)

    baseline = mlm_baseline(evals, tokenizer, args.per_gpu_eval_batch_size, args.mlm_probability,
                            seed if seed is not None else args.seed)
    if baseline is None:  # before anything is written: evaluating would fail mid-run
        raise UserError(f"--eval_data_file {args.eval_data_file}: no token of its {len(evals)} row(s) is masked "
                        f"(every token is special, or --mlm_probability {args.mlm_probability:g} selects none): "
                        "the masked-LM evaluation would have nothing to score")
    return Experiment("mlm", train, collator, evaluate_fn, baseline)
