"""Benchmark of the performance targets of issue 6: one JSON line per figure (and model shape).

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
* ``report_speed``: ``report.py`` over 1,000 generated run folders (target < 10 s);
  ``scripts/benchmarks/report_speed.py``.

Without ../shared/data the glue_padding line says ``"skipped": true`` and why (meets_target null).

Commands (from the repository root)::

    python scripts/bench.py > bench.jsonl                 # all: ~13 min on 2 idle CPU cores
    python scripts/bench.py --only masked_step --steps 7  # one figure, more timed steps
    python scripts/bench.py --only prune_speed,mask_size
    python scripts/bench.py --quick                       # tiny, 1 thread, < 30 s (not meaningful)
    python scripts/bench.py --device cuda                 # on a GPU (adds fp16)

Progress goes to stderr; stdout carries only the JSON lines. On a machine shared with other
busy processes, OpenMP's spinning threads turn every parallel op into a wait for a time slice
(the pruning step measured 0.44 s with ``OMP_WAIT_POLICY=PASSIVE`` and 33 s without, at load
3.8 on 2 cores): prefix the command with ``OMP_WAIT_POLICY=PASSIVE`` there, or compare
``loadavg_1m`` in the machine record before trusting a ratio.
"""
import argparse
import copy
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from utils.errors import UserError, run_cli  # noqa: E402
from utils.pruning import imp_amount, magnitude_masks  # noqa: E402

FIGURES = ("masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed")
VOCAB = 30522  # bert-base-uncased / MiniLM vocabulary
SHAPES = {  # layers, hidden, heads, intermediate, vocab
    "minilm": (6, 384, 12, 1536, VOCAB),
    "bert-base": (12, 768, 12, 3072, VOCAB),
    "tiny": (2, 64, 2, 256, 512),  # --quick training figures
    "prune-small": (4, 64, 2, 256, 512),  # --quick pruning problem: 200,704 weights
}
SHARED = ROOT.parent / "shared" / "data"
MINILM_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
MRPC_DIR = SHARED / "glue" / "MRPC"
WEIGHT_STD = 0.04  # spread of the random weights ranked by the pruning figure


def log(msg):
    """Progress line on stderr (stdout carries only the JSON records)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- machine, models, trainers -------------------------------------------------------------

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


def shape_dict(name):
    """The named shape as a JSON-ready dict."""
    layers, hidden, heads, inter, vocab = SHAPES[name]
    return {"name": name, "layers": layers, "hidden": hidden, "heads": heads,
            "intermediate": inter, "vocab": vocab}


def bert_config(name, max_positions=512):
    """BertConfig of a named shape, two labels."""
    from transformers import BertConfig

    layers, hidden, heads, inter, vocab = SHAPES[name]
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=inter,
                      max_position_embeddings=max_positions, num_labels=2)


def build_model(name, seed, max_positions=512):
    """Random-weight BertForSequenceClassification of a named shape (it has a pooler)."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config(name, max_positions))


def prunable_shape_list(name):
    """Shapes of the prunable set of a named shape, from a meta-device model (no memory)."""
    from transformers import BertForSequenceClassification

    from utils.pruning import prunable_shapes

    with torch.device("meta"):
        model = BertForSequenceClassification(bert_config(name))
    return list(prunable_shapes(model).items())


def random_weights(shapes, seed):
    """N(0, WEIGHT_STD) matrices drawn in place: no temporary copies (the memory probe relies on it)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.empty(s).normal_(0.0, WEIGHT_STD, generator=gen) for s in shapes]


def make_trainer(model, batch, opts, batch_size, amp=None, train_dataset=None, collate_fn=None):
    """A real ``utils.train.Trainer`` (AdamW, schedule, clipping, gradient masker)."""
    from utils.args import training_parser
    from utils.train import Trainer, setup_device

    argv = ["--output_dir", opts.tmp, "--per_gpu_train_batch_size", str(batch_size),
            "--max_steps", "1000000", "--save_steps", "0", "--logging_steps", "0",
            "--seed", str(opts.seed)]
    if opts.device.type == "cpu":
        argv.append("--no_cuda")
    if amp:
        argv.append(f"--{amp}")
    args = setup_device(training_parser("bench").parse_args(argv))
    model.to(args.device).train()
    if train_dataset is None:  # the timed batch is passed in by hand; the loader is never used
        train_dataset, collate_fn = [batch], (lambda rows: rows[0])
    return Trainer(args, model, train_dataset, collate_fn, script="bench.py")


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


def interleaved_times(trainers, batch, opts):
    """Per variant, the times of ``opts.steps`` steps after ``opts.warmup``; the variants take
    turns (order rotated every repetition) so machine noise hits all of them alike."""
    names = list(trainers)
    times = {n: [] for n in names}
    for rep in range(opts.warmup + opts.steps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            t = timed_step(trainers[name], batch, opts.device)
            if rep >= opts.warmup:
                times[name].append(t)
    return times


def median(values):
    """Median of a non-empty list (mean of the middle two for even lengths)."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


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


def base_record(figure, opts, **fields):
    """A figure's JSON record: figure name, its fields, the quick flag and the machine."""
    return {"figure": figure, **fields, "quick": opts.quick, "machine": machine_info(opts.device)}


def rounded(times):
    """Per-variant step times rounded for the record."""
    return {k: [round(t, 4) for t in v] for k, v in times.items()}


# --- figure 1: masked / dense training step -------------------------------------------------

def figure_masked_step(opts):
    """One line per shape (yielded as soon as measured): median step times of dense,
    plain-masked and hooks-masked models."""
    from utils.pruning import global_magnitude_prune, model_sparsity

    for shape in opts.shapes:
        log(f"masked_step: {shape}, batch {opts.batch}x{opts.seq}")
        dense = build_model(shape, opts.seed, max(512, opts.seq))
        models = {"dense": dense, "plain": copy.deepcopy(dense), "hooks": copy.deepcopy(dense)}
        for impl in ("plain", "hooks"):  # before the Trainer: it builds the GradientMasker
            global_magnitude_prune(models[impl], 0.5, impl=impl)
        sparsity = model_sparsity(models["plain"])
        batch = random_batch(opts.batch, opts.seq, SHAPES[shape][4], opts.seed, opts.device)
        trainers = {k: make_trainer(m, batch, opts, opts.batch) for k, m in models.items()}
        times = interleaved_times(trainers, batch, opts)
        med = {k: median(v) for k, v in times.items()}
        ratio = med["plain"] / med["dense"]
        masker_s = grad_masker_time(trainers["plain"], batch, opts.device)
        yield base_record(
            "masked_step", opts, model=shape_dict(shape), batch=opts.batch, seq=opts.seq,
            steps=opts.steps, warmup=opts.warmup, sparsity=round(sparsity, 3),
            median_s={k: round(v, 4) for k, v in med.items()}, times_s=rounded(times),
            ratio=ratio, hooks_ratio=med["hooks"] / med["dense"],
            paired=paired_ratios(times, "dense"), grad_masker_s=round(masker_s, 6),
            grad_masker_share=masker_s / med["dense"],
            target="plain-masked / dense median step time <= 1.03", meets_target=ratio <= 1.03)
        del trainers, models, dense
        gc.collect()


def paired_ratios(times, base):
    """Median over repetitions of variant/base step time within the same repetition: the
    variants ran seconds apart, so this cancels slow drifts of the machine's load."""
    return {f"{k}_ratio": median([a / b for a, b in zip(v, times[base])])
            for k, v in times.items() if k != base}


def grad_masker_time(trainer, batch, device, repeats=3):
    """Seconds of the plain masking's only extra work, zeroing the pruned gradients, done as
    one separate pass after backward (median of ``repeats``; the Trainer does it inside
    backward, where it can only be cheaper)."""
    from utils.pruning import GradientMasker

    masker = GradientMasker(trainer.model, eager=False)  # no hooks: just the (grad, mask) pairs
    trainer.forward_backward(batch)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        masker()
        synchronize(device)
        times.append(time.perf_counter() - start)
    trainer.model.zero_grad(set_to_none=True)
    return median(times)


# --- figure 2: pruning speed and memory -----------------------------------------------------

class _Holder(nn.Module):
    """A bare module around one weight, for ``prune.global_unstructured``."""

    def __init__(self, weight):
        """Wrap ``weight`` (no copy) as the parameter ``weight``."""
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # shares the storage


def timed(fn, *args):
    """(seconds, result) of one call ``fn(*args)``."""
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def compare_masks(ours, theirs, weights):
    """Mismatching entries between two mask lists, and whether all sit on one tied |weight|."""
    n_diff, tie_values = 0, set()
    for o, t, w in zip(ours, theirs, weights):
        diff = o != t
        k = int(diff.sum())
        if k:
            n_diff += k
            tie_values.update(w.abs()[diff].unique().tolist())
    return {"masks_equal": n_diff == 0, "mismatches": n_diff,
            "mismatches_all_ties": n_diff == 0 or len(tie_values) == 1}


def pruned_count(masks):
    """Number of pruned (False) entries over a list of bool masks."""
    return sum(m.numel() - int(m.sum()) for m in masks)


def torch_prune(holders, amount):
    """The original's pruning step: ``prune.global_unstructured`` with L1Unstructured."""
    prune.global_unstructured([(h, "weight") for h in holders],
                              pruning_method=prune.L1Unstructured, amount=amount)
    return [h.weight_mask.to(torch.bool) for h in holders]


def prune_rounds(weights, repeats):
    """Both IMP rounds, ours and torch's taking turns, ``repeats`` times on the same weights.

    Returns per round: median seconds of each, the ratio, and the masks of the first repeat
    compared entry by entry.
    """
    amounts = (0.1, imp_amount(1))
    times = {(r, who): [] for r in (1, 2) for who in ("ours", "torch")}
    found = {}
    for rep in range(repeats):
        holders = [_Holder(w) for w in weights]  # fresh, unpruned modules on the same storage
        ours = None
        for r, amount in zip((1, 2), amounts):
            t_ours, ours = timed(magnitude_masks, weights, ours, amount)
            t_torch, theirs = timed(torch_prune, holders, amount)
            times[(r, "ours")].append(t_ours)
            times[(r, "torch")].append(t_torch)
            if rep == 0:
                found[r] = (ours, theirs)
        del holders
        gc.collect()
    out = {}
    for r, amount in zip((1, 2), amounts):
        ours, theirs = found[r]
        o, t = median(times[(r, "ours")]), median(times[(r, "torch")])
        out[r] = {"amount": amount, "ours_s": round(o, 4), "torch_s": round(t, 4), "ratio": t / o,
                  "ours_times_s": [round(x, 4) for x in times[(r, "ours")]],
                  "torch_times_s": [round(x, 4) for x in times[(r, "torch")]],
                  "pruned": pruned_count(ours), **compare_masks(ours, theirs, weights),
                  "pruned_equal": pruned_count(ours) == pruned_count(theirs)}
    return out[1], out[2]


def figure_prune_speed(opts):
    """Two IMP rounds (10 %, then 1/9 of the rest) with our pruning and with torch's."""
    name = "prune-small" if opts.quick else "bert-base"
    keys_shapes = prunable_shape_list(name)
    shapes = [s for _, s in keys_shapes]
    n = sum(math.prod(s) for s in shapes)
    log(f"prune_speed: {name}, {n:,} weights in {len(shapes)} matrices")
    probe = memory_probe(shapes, opts)
    weights = random_weights(shapes, opts.seed)
    magnitude_masks(random_weights([(64, 64)], 1), None, 0.1)  # warm-up of the kernels used
    r1, r2 = prune_rounds(weights, opts.prune_repeats)
    limit_mb = 4 * n / 1e6
    same = all(r["mismatches_all_ties"] and r["pruned_equal"] for r in (r1, r2))
    memory_ok = max(probe["extra_peak_mb"], probe["extra_peak_round2_mb"]) <= limit_mb
    meets = same and memory_ok and min(r1["ratio"], r2["ratio"]) >= 10
    return [base_record(
        "prune_speed", opts, model=shape_dict(name), n_weights=n, n_matrices=len(shapes),
        weight_std=WEIGHT_STD, ours_s=r1["ours_s"], torch_s=r1["torch_s"], ratio=r1["ratio"],
        masks_equal=r1["masks_equal"] and r2["masks_equal"], round1=r1, round2=r2,
        **probe,
        extra_peak_limit_mb=round(limit_mb, 1), memory_ok=memory_ok,
        target="torch time / our time >= 10 in both rounds, same masks (ties aside), "
               "extra peak memory <= one float32 copy of the prunable weights",
        meets_target=meets)]


def memory_probe(shapes, opts):
    """Run :func:`_memory_probe_main` in a fresh interpreter (clean peak-RSS counter)."""
    spec = json.dumps({"shapes": [list(s) for s in shapes], "seed": opts.seed,
                       "threads": torch.get_num_threads()})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_memprobe", spec],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _proc_status_bytes(field):
    """A ``kB`` field of /proc/self/status (Linux) in bytes, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes():
    """Peak RSS of this process image. VmHWM belongs to the memory map made by exec; ru_maxrss
    is not reset by exec and starts at the *parent's* RSS at fork (gigabytes after the step
    figures), so it is only the fallback off Linux."""
    hwm = _proc_status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss():
    """Restart VmHWM at the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_probe_main(spec):
    """In the fresh process: allocate the weights, then read the peak RSS around each round.

    Round 2 is measured from the state after round 1 (its masks held, as a model holds them)
    when the peak can be reset, else from the same baseline as round 1.
    """
    spec = json.loads(spec)
    torch.set_num_threads(spec["threads"])
    magnitude_masks(random_weights([(64, 64)], 1), None, 0.1)  # fixed costs (kernels, pools)
    weights = random_weights([tuple(s) for s in spec["shapes"]], spec["seed"])
    before, current = _peak_rss_bytes(), _proc_status_bytes("VmRSS") or 0
    masks = magnitude_masks(weights, None, 0.1)
    one = _peak_rss_bytes()
    reset = _reset_peak_rss()
    before2 = _peak_rss_bytes() if reset else before
    magnitude_masks(weights, masks, imp_amount(1))
    two = _peak_rss_bytes()
    print(json.dumps({"extra_peak_mb": round((one - before) / 1e6, 2),
                      "extra_peak_round2_mb": round((two - before2) / 1e6, 2),
                      "round2_from_state_after_round1": reset,
                      "baseline_peak_over_current_mb": round((before - current) / 1e6, 2)}))


# --- figure 3: mask file size ---------------------------------------------------------------

def figure_mask_size(opts):
    """Bool vs float mask files of a 50 % mask; the bool file must work in torch's prune."""
    from utils.pruning import save_mask

    name = "prune-small" if opts.quick else "bert-base"
    keys_shapes = prunable_shape_list(name)
    log(f"mask_size: {name}")
    weights = random_weights([s for _, s in keys_shapes], opts.seed)
    masks = dict(zip([k for k, _ in keys_shapes], magnitude_masks(weights, None, 0.5)))
    del weights
    n = sum(m.numel() for m in masks.values())
    with tempfile.TemporaryDirectory(dir=opts.tmp) as tmp:
        paths = {fmt: Path(tmp) / f"mask_{fmt}.pt" for fmt in ("bool", "float")}
        report = None
        for fmt, path in paths.items():
            report = save_mask(path, masks, fmt=fmt)
        size = {fmt: path.stat().st_size for fmt, path in paths.items()}
        loaded = torch.load(paths["bool"], map_location="cpu", weights_only=True)
        loads = set(loaded) == set(masks) and all(v.dtype == torch.bool for v in loaded.values())
        prune_sparsity = apply_like_original(name, loaded, opts.seed)
    sparsity = report["prunable"]["sparsity"]
    ratio = size["float"] / size["bool"]
    return [base_record(
        "mask_size", opts, model=shape_dict(name), n_entries=n, n_matrices=len(masks),
        sparsity=sparsity, bool_bytes=size["bool"], float_bytes=size["float"], ratio=ratio,
        element_ratio=float(torch.float32.itemsize / torch.bool.itemsize),
        framing_bytes=size["bool"] - n, loads_weights_only=loads,
        loads_in_torch_prune=loads and prune_sparsity == sparsity,
        torch_prune_sparsity=prune_sparsity,
        target="4x fewer bytes per mask entry (bool vs float32) with the same keys; the file "
               "ratio falls short of 4 only by the fixed zip/pickle framing (framing_bytes, "
               "required <= 0.1 % of the file)",
        meets_target=(torch.float32.itemsize // torch.bool.itemsize >= 4
                      and size["bool"] - n <= 0.001 * size["bool"]))]


def apply_like_original(name, masks, seed):
    """Apply a loaded mask with ``prune.CustomFromMask.apply`` as the original did.

    Returns the sparsity (%) of the masks the modules now carry, or None when a module's
    effective weight is not ``weight_orig`` with exactly the masked entries zeroed.
    """
    from utils.pruning import mask_key, prunable_modules

    model = build_model(name, seed)
    modules = prunable_modules(model)
    pruned = total = 0
    for mod_name, module in modules.items():
        prune.CustomFromMask.apply(module, "weight", mask=masks[mask_key(mod_name)])
        keep = module.weight_mask.bool()
        # weights that happen to be exactly 0 in the random init are not counted as pruned
        if not (bool((module.weight[~keep] == 0).all())
                and torch.equal(module.weight[keep], module.weight_orig[keep])):
            return None
        pruned += int((~keep).sum())
        total += keep.numel()
    return 100.0 * pruned / total


# --- figure 4: GLUE padding -----------------------------------------------------------------

TINY_WORDS = ("the a cat dog sat on mat good bad movie film great not very it this that he she "
              "they man woman river year first one two three city paris france capital").split()


def tiny_tokenizer():
    """A WordPiece tokenizer over specials, single characters and a few words (no download)."""
    import string

    from transformers import BertTokenizer

    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    toks += list(string.ascii_lowercase + string.digits + string.punctuation)
    toks += ["##" + c for c in string.ascii_lowercase + string.digits] + TINY_WORDS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(toks))}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    tok.model_max_length = 128
    return tok


def write_tiny_mrpc(folder, seed, n_train=64, n_dev=24):
    """train.tsv and dev.tsv in MRPC's layout, sentences of 3 to 24 known words."""
    import random

    rng = random.Random(seed)
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [header]
        for i in range(n):
            a = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 24)))
            b = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 24)))
            rows.append(f"{rng.randint(0, 1)}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\n")
        (Path(folder) / f"{split}.tsv").write_text("".join(rows), encoding="utf-8")


def glue_inputs(opts):
    """(tokenizer, model, data dir, model label) for the padding figure, or None when absent."""
    from utils.models import load_model, load_tokenizer

    if opts.quick:
        data = Path(tempfile.mkdtemp(dir=opts.tmp, prefix="mrpc_"))
        write_tiny_mrpc(data, opts.seed)
        return tiny_tokenizer(), build_model("tiny", opts.seed), data, shape_dict("tiny")
    if not (MINILM_DIR.is_dir() and MRPC_DIR.is_dir()):
        return None
    model = load_model("glue", str(MINILM_DIR), seed=opts.seed, num_labels=2, finetuning_task="mrpc")
    return load_tokenizer(str(MINILM_DIR)), model, MRPC_DIR, {"name": MINILM_DIR.name, **{
        k: v for k, v in shape_dict("minilm").items() if k != "name"}}


def figure_glue_padding(opts):
    """Examples/s of MRPC training steps, pad-to-longest vs fixed 128, and dev metrics of both."""
    from utils.glue import GlueCollator, evaluate_glue, load_glue_dataset

    inputs = glue_inputs(opts)
    if inputs is None:
        return [base_record("glue_padding", opts, skipped=True, meets_target=None,
                            reason=f"shared data absent: need {MINILM_DIR} and {MRPC_DIR}")]
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


# --- figure 5: mixed precision --------------------------------------------------------------

def figure_mixed_precision(opts):
    """fp32 vs bf16 (and fp16 on CUDA) autocast training steps of the same dense model."""
    shape = "tiny" if opts.quick else "bert-base"
    log(f"mixed_precision: {shape}, batch {opts.batch}x{opts.seq} on {opts.device.type}")
    model = build_model(shape, opts.seed, max(512, opts.seq))
    batch = random_batch(opts.batch, opts.seq, SHAPES[shape][4], opts.seed, opts.device)
    amps = {"fp32": None, "bf16": "bf16"}
    if opts.device.type == "cuda":
        amps["fp16"] = "fp16"
    trainers = {k: make_trainer(copy.deepcopy(model), batch, opts, opts.batch, amp=a)
                for k, a in amps.items()}
    times = interleaved_times(trainers, batch, opts)
    med = {k: median(v) for k, v in times.items()}
    ratios = {f"{k}_ratio": med[k] / med["fp32"] for k in med if k != "fp32"}
    return [base_record(
        "mixed_precision", opts, model=shape_dict(shape), batch=opts.batch, seq=opts.seq,
        steps=opts.steps, warmup=opts.warmup, median_s={k: round(v, 4) for k, v in med.items()},
        times_s=rounded(times), ratio=med["bf16"] / med["fp32"], **ratios,
        target="bf16 / fp32 step time < 1 (needs native bf16 units: AVX512-BF16/AMX or a GPU)",
        meets_target=med["bf16"] < med["fp32"])]


# --- command line ---------------------------------------------------------------------------

def figure_report_speed(opts):
    """The report over 1,000 generated run folders (scripts/benchmarks/report_speed.py)."""
    from scripts.benchmarks.report_speed import figure_report_speed as run

    return run(opts, base_record)


RUNNERS = {"masked_step": figure_masked_step, "prune_speed": figure_prune_speed,
           "mask_size": figure_mask_size, "glue_padding": figure_glue_padding,
           "mixed_precision": figure_mixed_precision, "report_speed": figure_report_speed}


def parse_args(argv=None):
    """Flags of the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--quick", action="store_true",
      help="tiny shapes, 2 timed steps, 1 thread (< 30 s; numbers not meaningful)")
    a("--only", default="", help=f"comma-separated figures among {','.join(FIGURES)}")
    a("--steps", type=int, default=None, help="timed steps per variant (default 5, --quick 2)")
    a("--warmup", type=int, default=1, help="untimed steps per variant first")
    a("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    a("--batch", type=int, default=None, help="batch size of the step figures (default 32, --quick 4)")
    a("--seq", type=int, default=None, help="sequence length of the step figures (128; --quick 16)")
    a("--glue_steps", type=int, default=None, help="timed MRPC steps per collator (20; --quick 2)")
    a("--glue_batch", type=int, default=None, help="MRPC batch size (default 32, --quick 8)")
    a("--prune_repeats", type=int, default=3,
      help="both pruning rounds, ours and torch's, are timed this many times (medians)")
    a("--shapes", default=None, help="masked_step model shapes (default minilm,bert-base; --quick tiny)")
    a("--seed", type=int, default=42, help="seed of weights, batches and data order")
    a("--threads", type=int, default=None, help="torch threads (default: torch's choice; --quick 1)")
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
    bad = [f for f in opts.figures if f not in FIGURES]
    if bad:
        raise UserError(f"--only: unknown figure {bad[0]!r} (choose from {', '.join(FIGURES)})")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {opts.device!r}")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    use_cuda = opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available())
    opts.device = torch.device("cuda" if use_cuda else "cpu")
    if opts.seq > 512:
        raise UserError(f"--seq {opts.seq}: BERT positions stop at 512")
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
            log(f"{figure} done in {time.perf_counter() - start:.1f} s")
            gc.collect()
    return records


if __name__ == "__main__":
    run_cli(main)
