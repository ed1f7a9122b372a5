"""Figure ``glue_padding``: MRPC fine-tuning speed, padding to the longest vs to 128.

Fine-tunes all-MiniLM-L6-v2 on MRPC from ``../shared/data`` with two collators taking turns
over the same shuffled batches, one padding each batch to its longest pair and one padding
every pair to 128 tokens, and times real training steps (data loading included) as examples/s.
Both collators also evaluate the same model on the dev set, whose accuracy and F1 must agree.
Without the shared data the record says ``"skipped": true`` and why (``meets_target`` null);
``--quick`` uses a generated tiny MRPC and tokenizer instead. Target: examples/s padding to the
longest / padding to 128 >= 1.4 at the same dev acc/f1.
"""
import copy
import random
import string
import tempfile
import time
from pathlib import Path

import torch
from transformers import BertTokenizer

from scripts.benchmarks.harness import (
    MINILM_DIR,
    MRPC_DIR,
    base_record,
    build_model,
    log,
    make_trainer,
    shape_dict,
    synchronize,
)
from utils.glue import GlueCollator, evaluate_glue, load_glue_dataset
from utils.models import load_model, load_tokenizer

TINY_WORDS = ("the a cat dog sat on mat good bad movie film great not very it this that he she "
              "they man woman river year first one two three city paris france capital").split()


def tiny_tokenizer():
    """A WordPiece tokenizer over specials, single characters and a few words (no download)."""
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    toks += list(string.ascii_lowercase + string.digits + string.punctuation)
    toks += ["##" + c for c in string.ascii_lowercase + string.digits] + TINY_WORDS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(toks))}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    tok.model_max_length = 128
    return tok


def write_tiny_mrpc(folder, seed, n_train=64, n_dev=24):
    """train.tsv and dev.tsv in MRPC's layout, sentences of 3 to 24 known words."""
    rng = random.Random(seed)
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [header]
        for i in range(n):
            a = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 24)))
            b = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 24)))
            rows.append(f"{rng.randint(0, 1)}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\n")
        (Path(folder) / f"{split}.tsv").write_text("".join(rows), encoding="utf-8")


def glue_inputs(opts, minilm_dir=MINILM_DIR, mrpc_dir=MRPC_DIR):
    """(tokenizer, model, data dir, model label) for the padding figure, or None when absent."""
    if opts.quick:
        data = Path(tempfile.mkdtemp(dir=opts.tmp, prefix="mrpc_"))
        write_tiny_mrpc(data, opts.seed)
        return tiny_tokenizer(), build_model("tiny", opts.seed), data, shape_dict("tiny")
    if not (minilm_dir.is_dir() and mrpc_dir.is_dir()):
        return None
    model = load_model("glue", str(minilm_dir), seed=opts.seed, num_labels=2, finetuning_task="mrpc")
    return load_tokenizer(str(minilm_dir)), model, mrpc_dir, {"name": minilm_dir.name, **{
        k: v for k, v in shape_dict("minilm").items() if k != "name"}}


def figure_glue_padding(opts, minilm_dir=MINILM_DIR, mrpc_dir=MRPC_DIR):
    """Examples/s of MRPC training steps, pad-to-longest vs fixed 128, and dev metrics of both.

    ``minilm_dir`` and ``mrpc_dir`` are the model and data folders of the full run (default:
    under ``../shared/data``); ``bench.py`` passes its own ``MINILM_DIR`` and ``MRPC_DIR``.
    """
    inputs = glue_inputs(opts, minilm_dir, mrpc_dir)
    if inputs is None:
        return [base_record("glue_padding", opts, skipped=True, meets_target=None,
                            reason=f"shared data absent: need {minilm_dir} and {mrpc_dir}")]
    tok, model, data, model_info = inputs
    log(f"glue_padding: {model_info['name']} on {data}")
    cache = tempfile.mkdtemp(dir=opts.tmp, prefix="cache_")  # never the shared folder's .cache
    train = load_glue_dataset(str(data), "mrpc", "train", tok, 128, cache_dir=cache)
    dev = load_glue_dataset(str(data), "mrpc", "dev", tok, 128, cache_dir=cache)
    collators = {"longest": GlueCollator(tok, None), "fixed128": GlueCollator(tok, 128)}
    model.to(opts.device)
    metrics = {k: evaluate_glue(model, "mrpc", {"mrpc": dev}, c, opts.glue_batch, opts.device)
               for k, c in collators.items()}  # the same untrained model: padding is masked
    trainers = {k: make_trainer(copy.deepcopy(model), None, opts, opts.glue_batch,
                                train_dataset=train, collate_fn=c) for k, c in collators.items()}
    times, lengths = glue_train_times(trainers, opts)
    examples = opts.glue_steps * opts.glue_batch
    per_s = {k: examples / sum(v) for k, v in times.items()}
    ratio = per_s["longest"] / per_s["fixed128"]
    agree = all(metrics["longest"][m] == metrics["fixed128"][m] for m in ("acc", "f1"))
    return [base_record(
        "glue_padding", opts, model=model_info, task="mrpc", batch=opts.glue_batch,
        steps=opts.glue_steps, warmup=opts.warmup, examples=examples,
        train_s={k: round(sum(v), 3) for k, v in times.items()},
        examples_per_s={k: round(v, 3) for k, v in per_s.items()},
        mean_padded_len={k: round(sum(v) / len(v), 2) for k, v in lengths.items()},
        ratio=ratio, metrics=metrics, metrics_agree=agree,
        target="examples/s padding to the longest / padding to 128 >= 1.4 at the same dev acc/f1",
        meets_target=ratio >= 1.4 and agree)]


def glue_train_times(trainers, opts):
    """Interleaved real steps (data loading included) over the same shuffled batches."""
    iters = {k: iter(t.loader) for k, t in trainers.items()}
    names = list(trainers)
    times, lengths = {k: [] for k in names}, {k: [] for k in names}
    for rep in range(opts.warmup + opts.glue_steps):
        labels = []
        for name in names[rep % 2:] + names[:rep % 2]:
            synchronize(opts.device)
            start = time.perf_counter()
            batch = next_batch(iters, name, trainers)
            trainers[name].forward_backward(batch)
            trainers[name].optimizer_step()
            synchronize(opts.device)
            if rep >= opts.warmup:
                times[name].append(time.perf_counter() - start)
                lengths[name].append(batch["input_ids"].shape[1])
            labels.append(batch["labels"])
        if not torch.equal(labels[0], labels[1]):
            raise RuntimeError("the two collators saw different examples")
    return times, lengths


def next_batch(iters, name, trainers):
    """Next batch of a trainer's own loader, restarting it at the end of an epoch."""
    try:
        return next(iters[name])
    except StopIteration:
        iters[name] = iter(trainers[name].loader)
        return next(iters[name])

