"""Shared harness of the benchmark figures run by ``scripts/bench.py``.

Paths of the shared data, the named model shapes and the random weights and batches built from
them, real ``utils.train.Trainer`` instances and the interleaved timing of their steps, the
machine description and the JSON record every figure returns, and the progress log on stderr.
Everything here is used by more than one figure (or by the entry point itself).
"""
import os
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from utils.args import training_parser
from utils.config import setup_runtime
from utils.experiment import Experiment
from utils.masks import prunable_shapes
from utils.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
MINILM_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
MRPC_DIR = SHARED / "glue" / "MRPC"
WEIGHT_STD = 0.04  # spread of the random weights ranked by the pruning figure
VOCAB = 30522  # bert-base-uncased / MiniLM vocabulary
SHAPES = {  # layers, hidden, heads, intermediate, vocab
    "minilm": (6, 384, 12, 1536, VOCAB),
    "bert-base": (12, 768, 12, 3072, VOCAB),
    "tiny": (2, 64, 2, 256, 512),  # --quick training figures
    "prune-small": (4, 64, 2, 256, 512),  # --quick pruning problem: 200,704 weights
}


def log(msg):
    """Progress line on stderr (stdout carries only the JSON records)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- machine and records --------------------------------------------------------------------

def cpu_name():
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device):
    """Where the numbers come from: platform, CPUs, torch, threads, device (and GPU name)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE tames shared machines
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def base_record(figure, opts, **fields):
    """A figure's JSON record: figure name, its fields, the quick flag and the machine."""
    return {"figure": figure, **fields, "quick": opts.quick, "machine": machine_info(opts.device)}


# --- model shapes, weights and batches ------------------------------------------------------

def shape_dict(name):
    """The named shape as a JSON-ready dict."""
    layers, hidden, heads, inter, vocab = SHAPES[name]
    return {"name": name, "layers": layers, "hidden": hidden, "heads": heads,
            "intermediate": inter, "vocab": vocab}


def bert_config(name, max_positions=512):
    """BertConfig of a named shape, two labels."""
    layers, hidden, heads, inter, vocab = SHAPES[name]
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=inter,
                      max_position_embeddings=max_positions, num_labels=2)


def build_model(name, seed, max_positions=512):
    """Random-weight BertForSequenceClassification of a named shape (it has a pooler)."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config(name, max_positions))


def prunable_shape_list(name):
    """Shapes of the prunable set of a named shape, from a meta-device model (no memory)."""
    with torch.device("meta"):
        model = BertForSequenceClassification(bert_config(name))
    return list(prunable_shapes(model).items())


def random_weights(shapes, seed):
    """N(0, WEIGHT_STD) matrices drawn in place: no temporary copies (the memory probe relies on it)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.empty(s).normal_(0.0, WEIGHT_STD, generator=gen) for s in shapes]


def random_batch(batch, seq, vocab, seed, device):
    """Random token ids (no padding) and binary labels."""
    gen = torch.Generator().manual_seed(seed)
    out = {
        "input_ids": torch.randint(1, vocab, (batch, seq), generator=gen),
        "token_type_ids": torch.zeros(batch, seq, dtype=torch.long),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch,), generator=gen),
    }
    return {k: v.to(device) for k, v in out.items()}


# --- trainers and timing --------------------------------------------------------------------

def make_trainer(model, batch, opts, batch_size, amp=None, train_dataset=None, collate_fn=None, output_dir=None):
    """A real ``utils.train.Trainer`` (AdamW, schedule, clipping, gradient masker)."""
    argv = ["--output_dir", str(output_dir or opts.tmp), "--per_gpu_train_batch_size", str(batch_size),
            "--max_steps", "1000000", "--save_steps", "0", "--logging_steps", "0",
            "--seed", str(opts.seed)]
    if opts.device.type == "cpu":
        argv.append("--no_cuda")
    if amp:
        argv.append(f"--{amp}")
    config = training_parser("bench").parse_args(argv)
    runtime = setup_runtime(config)
    model.to(runtime.device).train()
    if train_dataset is None:  # the timed batch is passed in by hand; the loader is never used
        train_dataset, collate_fn = [batch], (lambda rows: rows[0])
    return Trainer(config, runtime, model, Experiment("bench", train_dataset, collate_fn), script="bench.py")


def synchronize(device):
    """Wait for queued CUDA work so that wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(trainer, batch, device):
    """Seconds of one real training step: forward, backward, mask, clip, AdamW, schedule."""
    synchronize(device)
    start = time.perf_counter()
    trainer.forward_backward(batch)
    trainer.optimizer_step()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(fns, opts):
    """Per variant, the seconds of ``opts.steps`` calls of ``fns[name]()`` after ``opts.warmup``;
    the variants take turns (order rotated every repetition) so machine noise hits all of them
    alike."""
    names = list(fns)
    times = {n: [] for n in names}
    for rep in range(opts.warmup + opts.steps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(opts.device)
            start = time.perf_counter()
            fns[name]()
            synchronize(opts.device)
            if rep >= opts.warmup:
                times[name].append(time.perf_counter() - start)
    return times


def interleaved_times(trainers, batch, opts):
    """:func:`interleaved` over one real training step of each trainer."""
    return interleaved({n: (lambda t=t: (t.forward_backward(batch), t.optimizer_step())) for n, t in trainers.items()},
                       opts)


def timed(fn, *args):
    """(seconds, result) of one call ``fn(*args)``."""
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def median(values):
    """Median of a non-empty list (mean of the middle two for even lengths)."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def rounded(times):
    """Per-variant step times rounded for the record."""
    return {k: [round(t, 4) for t in v] for k, v in times.items()}


def paired_ratios(times, base):
    """Median over repetitions of variant/base step time within the same repetition: the
    variants ran seconds apart, so this cancels slow drifts of the machine's load."""
    return {f"{k}_ratio": median([a / b for a, b in zip(v, times[base])])
            for k, v in times.items() if k != base}
