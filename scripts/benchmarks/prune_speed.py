"""Figure ``prune_speed``: one global magnitude-pruning step, ours against torch's.

Runs the first two IMP rounds (10 %, then 1/9 of the rest) over the prunable weights of
BERT-base (85.5M weights; ``--quick``: a 4-layer 64-wide model) with
``utils.pruning.magnitude_masks`` and with ``prune.global_unstructured``, taking turns, and
compares the masks entry by entry (mismatches may only sit on tied magnitudes). The extra peak
memory of our rounds is measured in a fresh process (``bench.py --_memprobe``) so the peak-RSS
counter is clean. Target: torch time / our time >= 10 in both rounds, the same masks, and an
extra peak memory of at most one float32 copy of the prunable weights.
"""
import gc
import json
import math
import resource
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from scripts.benchmarks.harness import (
    ROOT,
    WEIGHT_STD,
    base_record,
    log,
    median,
    prunable_shape_list,
    random_weights,
    shape_dict,
    timed,
)
from utils.magnitude import imp_amount, magnitude_masks

BENCH = ROOT / "scripts" / "bench.py"  # the entry point re-run with --_memprobe


class _Holder(nn.Module):
    """A bare module around one weight, for ``prune.global_unstructured``."""

    def __init__(self, weight):
        """Wrap ``weight`` (no copy) as the parameter ``weight``."""
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # shares the storage


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
    proc = subprocess.run([sys.executable, str(BENCH), "--_memprobe", spec],
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
