"""Benchmark of the performance targets (docs/performance.md): one JSON line per figure (and model shape).

Figures (``--only`` picks some):

* ``masked_step``: training step with a 50 % mask / dense step (target <= 1.03), hook-free
  masking (``plain``) beside ``torch.nn.utils.prune`` hooks, through ``utils.train.Trainer``;
  MiniLM shape (6 x 384) and BERT-base shape (12 x 768), one line each.
* ``prune_speed``: one global magnitude-pruning step over BERT-base's 85.5M prunable weights,
  ``utils.pruning.magnitude_masks`` vs ``prune.global_unstructured`` (target >= 10x, same
  mask, extra peak memory <= one float32 copy of the weights, measured in a fresh process).
* ``mask_size``: ``save_mask(fmt="bool")`` vs the original's float file (target >= 4x).
* ``glue_padding``: MRPC fine-tuning examples/s, padding to the longest vs to 128
  (target >= 1.4x at the same dev acc/f1).
* ``mixed_precision``: bf16 (and on CUDA fp16) autocast step / fp32 step, BERT-base shape.
* ``report_speed``: ``report.py`` over 1,000 generated run folders (target < 10 s).
* ``state_write``: a resumable state (weights, masks, AdamW, RNGs) against the weights alone
  with safetensors (target: >= 80 % of its MB/s; training waits no longer than that write).
* ``structured``: structured tickets (whole heads and FFN neurons, 50 % and 70 % of the
  encoder) shrunk with ``utils.shrink.shrink_model`` against the dense model: inference at
  batch 32 x 128 and 1 x 128 and a training step, speed-ups, parameters and FLOPs; MiniLM and
  BERT-base shapes, one line per shape and sparsity (target: >= 1.5x inference speed-up at
  50 %, BERT-base shape, 32 x 128).

Each figure lives in ``scripts/benchmarks/<figure>.py`` (``figure_<figure>(opts)`` returns its
records); what they share (shapes, trainers, timing, records) is in
``scripts/benchmarks/harness.py``. This file parses the flags and runs them.

Without ../shared/data the glue_padding line says ``"skipped": true`` and why (meets_target null).

Commands (from the repository root)::

    python scripts/bench.py > bench.jsonl                 # all: ~13 min on 2 idle CPU cores,
                                                          # before structured (not yet timed)
    python scripts/bench.py --only masked_step --steps 7  # one figure, more timed steps
    python scripts/bench.py --only prune_speed,mask_size
    python scripts/bench.py --quick                       # tiny, 1 thread, < 30 s (not meaningful)
    python scripts/bench.py --device cuda                 # on a GPU (adds fp16)
    python scripts/bench.py --only structured --json_out bench.json  # records as one JSON list,
    python report.py runs/ --bench bench.json     # which report.py turns into a speed-up table
    python scripts/bench.py --only structured_masks --masks fisher=runs/x/mask.pt,taylor=runs/y/mask.pt
                                                          # chosen structured masks on their checkpoint
    python scripts/bench.py --only structured_masks --masks_from runs/glue_small2
                                                          # the structured tickets a folder fine-tuned

Progress goes to stderr; stdout carries only the JSON lines; ``--json_out FILE`` also writes
every record so far as one JSON list (atomically, rewritten after each record). On a machine
shared with other busy processes, OpenMP's spinning threads turn every parallel op into a wait
for a time slice (the pruning step measured 0.44 s with ``OMP_WAIT_POLICY=PASSIVE`` and 33 s
without, at load 3.8 on 2 cores): prefix the command with ``OMP_WAIT_POLICY=PASSIVE`` there, or compare
``loadavg_1m`` in the machine record before trusting a ratio.
"""
import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from scripts.benchmarks import glue_padding  # noqa: E402
from scripts.benchmarks.harness import MINILM_DIR, MRPC_DIR, SHAPES, log  # noqa: E402
from scripts.benchmarks.mask_size import figure_mask_size  # noqa: E402
from scripts.benchmarks.masked_step import figure_masked_step  # noqa: E402
from scripts.benchmarks.mixed_precision import figure_mixed_precision  # noqa: E402
from scripts.benchmarks.prune_speed import _memory_probe_main, figure_prune_speed  # noqa: E402
from scripts.benchmarks.report_speed import figure_report_speed  # noqa: E402
from scripts.benchmarks.state_write import figure_state_write  # noqa: E402
from scripts.benchmarks.structured import figure_structured  # noqa: E402
from scripts.benchmarks.structured_masks import figure_structured_masks  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json  # noqa: E402

FIGURES = ("masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed",
           "state_write", "structured")
OPT_IN = ("structured_masks",)  # figures that run only when --only names them (they need --masks)


def figure_glue_padding(opts):
    """The GLUE padding figure (scripts/benchmarks/glue_padding.py) on this module's
    ``MINILM_DIR`` and ``MRPC_DIR``, read at call time so that they can be pointed elsewhere."""
    return glue_padding.figure_glue_padding(opts, MINILM_DIR, MRPC_DIR)


RUNNERS = {"masked_step": figure_masked_step, "prune_speed": figure_prune_speed,
           "mask_size": figure_mask_size, "glue_padding": figure_glue_padding,
           "mixed_precision": figure_mixed_precision, "report_speed": figure_report_speed,
           "state_write": figure_state_write, "structured": figure_structured,
           "structured_masks": figure_structured_masks}


def parse_args(argv=None):
    """Flags of the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--quick", action="store_true",
      help="tiny shapes, 2 timed steps, 1 thread (< 30 s; numbers not meaningful)")
    a("--only", default="", help=f"comma-separated figures among {','.join(FIGURES + OPT_IN)}")
    a("--steps", type=int, default=None, help="timed steps per variant (default 5, --quick 2)")
    a("--warmup", type=int, default=1, help="untimed steps per variant first")
    a("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    a("--batch", type=int, default=None, help="batch size of the step figures and structured (default 32, --quick 4)")
    a("--seq", type=int, default=None, help="sequence length of the step figures and structured (128; --quick 16)")
    a("--glue_steps", type=int, default=None, help="timed MRPC steps per collator (20; --quick 2)")
    a("--glue_batch", type=int, default=None, help="MRPC batch size (default 32, --quick 8)")
    a("--prune_repeats", type=int, default=3,
      help="both pruning rounds, ours and torch's, are timed this many times (medians)")
    a("--shapes", default=None,
      help="model shapes of masked_step and structured (default minilm,bert-base; --quick tiny)")
    a("--seed", type=int, default=42, help="seed of weights, batches and data order")
    a("--threads", type=int, default=None, help="torch threads (default: torch's choice; --quick 1)")
    a("--json_out", default=None, metavar="FILE",
      help="also write all records as one JSON list to FILE (atomic; report.py --bench reads it)")
    a("--masks", default="", metavar="NAME=MASK,...",
      help="figure structured_masks: structured masks to shrink the --model checkpoint with and time")
    a("--masks_from", default="", metavar="RUNS_DIR",
      help="figure structured_masks: also every structured IMP ticket and random structured mask a finished "
           "STS-B fine-tune under RUNS_DIR used (named <IMP run>_<sparsity> and by the mask's folder)")
    a("--model", default=None, help="figure structured_masks: the checkpoint the masks were made for (MiniLM-L6)")
    a("--_memprobe", default=None, help=argparse.SUPPRESS)  # internal: the fresh-process probe
    opts = p.parse_args(argv)
    return finish_opts(opts)


def finish_opts(opts):
    """Quick/full defaults, figure list and device; bad values raise UserError."""
    quick = opts.quick
    for flag, full, small in (("steps", 5, 2), ("batch", 32, 4), ("seq", 128, 16),
                              ("glue_steps", 20, 2), ("glue_batch", 32, 8)):
        if getattr(opts, flag) is None:
            setattr(opts, flag, small if quick else full)
        if getattr(opts, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(opts, flag)}")
    if opts.threads is None and quick:  # on a busy machine, OpenMP barriers slow tiny ops ~4x
        opts.threads = 1
    if opts.threads is not None:
        if opts.threads < 1:
            raise UserError(f"--threads must be at least 1, got {opts.threads}")
        torch.set_num_threads(opts.threads)
    if opts.warmup < 0 or opts.prune_repeats < 1:
        raise UserError("--warmup must be >= 0 and --prune_repeats >= 1")
    shapes = opts.shapes or ("tiny" if quick else "minilm,bert-base")
    opts.shapes = [x.strip() for x in shapes.split(",") if x.strip()]
    bad = [x for x in opts.shapes if x not in SHAPES]
    if bad or not opts.shapes:
        name = bad[0] if bad else ""
        raise UserError(f"--shapes: unknown shape {name!r} (choose from {', '.join(SHAPES)})")
    opts.figures = [f.strip() for f in opts.only.split(",") if f.strip()] or list(FIGURES)
    bad = [f for f in opts.figures if f not in FIGURES + OPT_IN]
    if bad:
        raise UserError(f"--only: unknown figure {bad[0]!r} (choose from {', '.join(FIGURES + OPT_IN)})")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {opts.device!r}")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    use_cuda = opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available())
    opts.device = torch.device("cuda" if use_cuda else "cpu")
    if opts.seq > 512:
        raise UserError(f"--seq {opts.seq}: BERT positions stop at 512")
    if opts.json_out and Path(opts.json_out).is_dir():
        raise UserError(f"--json_out {opts.json_out} is a folder; give a file name")
    return opts


def main(argv=None):
    """Run the chosen figures; print and return their JSON records."""
    opts = parse_args(argv)
    if opts._memprobe is not None:
        _memory_probe_main(opts._memprobe)
        return []
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        opts.tmp = tmp
        for figure in opts.figures:
            start = time.perf_counter()
            for record in RUNNERS[figure](opts):
                records.append(record)
                print(json.dumps(record), flush=True)
                if opts.json_out:
                    write_json(opts.json_out, records)
            log(f"{figure} done in {time.perf_counter() - start:.1f} s")
            gc.collect()
    return records


if __name__ == "__main__":
    run_cli(main)
