"""Global magnitude pruning (the paper's selection) and IMP's rewinding, above :mod:`utils.masks`."""
import math

import numpy as np
import torch

from utils.errors import UserError
from utils.masks import (
    apply_masks,
    effective_state_dict,
    enforce_masks,
    mask_key,
    masking_impl,
    prunable_modules,
    scored_names,
    unwrap,
)

# --- global magnitude pruning ------------------------------------------------------------

CHUNK = 1 << 18  # entries scored at a time: 1 MB of float32, so intermediates stay in cache


def _flat_numpy(t):
    """A flat numpy view of a CPU tensor (a CPU float32 copy of a CUDA or bfloat16 one)."""
    t = t.detach()
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bool):
        t = t.to("cpu", torch.bool if t.dtype == torch.bool else torch.float32)
    return t.reshape(-1).numpy()


def _chunks(weights, masks):
    """Yield (matrix index, flat start, |weight| chunk, surviving-entry chunk or None).

    Scores are the raw magnitudes as float32; the earlier mask comes beside them as bool rather
    than folded into the scores, so no pass writes over the scores. Both are numpy arrays over
    reused buffers: consume them before the next step. numpy's comparisons and ``flatnonzero``
    are several times faster than torch's on these CPU chunks, and cache-sized chunks bound the
    extra memory to one chunk (plus a CPU copy of one matrix when the weights live on a GPU).
    """
    buf = np.empty(CHUNK, dtype=np.float32)
    alive = np.empty(CHUNK, dtype=bool)
    for i, (w, m) in enumerate(zip(weights, masks)):
        flat_w = _flat_numpy(w)
        flat_m = None if m is None else _flat_numpy(m)
        for start in range(0, flat_w.size, CHUNK):
            end = min(start + CHUNK, flat_w.size)
            n = end - start
            s = np.abs(flat_w[start:end], out=buf[:n])
            if flat_m is None:
                yield i, start, s, None
            elif flat_m.dtype == bool:
                yield i, start, s, flat_m[start:end]
            else:
                yield i, start, s, np.not_equal(flat_m[start:end], 0, out=alive[:n])


def _surviving(masks):
    """Number of surviving (non-zero) entries over a list of masks (None = all survive)."""
    return sum(int(np.count_nonzero(_flat_numpy(m))) for m in masks if m is not None)


def _sample_scores(weights, masks, n_sample, seed=0):
    """Scores of about ``n_sample`` entries, a stratified uniform sample (each matrix gives its
    share, drawn with replacement), pruned entries scoring -1 (below every surviving one).
    Returned unsorted, as a float32 numpy array."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(w.numel() for w in weights)
    parts = []
    for w, m in zip(weights, masks):
        k = max(1, round(n_sample * w.numel() / total)) if w.numel() else 0
        if not k:
            continue
        local = torch.randint(w.numel(), (k,), generator=gen).to(w.device)
        s = w.detach().reshape(-1)[local].to("cpu", torch.float32).abs()
        if m is not None:
            s.masked_fill_(m.detach().reshape(-1)[local.to(m.device)].to("cpu") == 0, -1.0)
        parts.append(s.numpy())
    return np.concatenate(parts)


def magnitude_masks(weights, masks, amount):
    """New masks after pruning ``amount`` of the surviving entries by global |weight|.

    Faithful to ``prune.global_unstructured(..., L1Unstructured, amount)``: exactly
    ``round(amount * remaining)`` of the smallest surviving entries go, earlier zeros stay.
    Ties at the threshold are broken by position (torch's ``topk`` order is unspecified).

    The threshold is found without sorting or copying everything: a sample's quantiles bracket
    it, one pass counts the surviving entries below the bracket and keeps those inside it, a
    selection on that small set gives the exact value, and a second pass writes the masks.
    Both passes run in numpy over cache-sized chunks (numpy's comparisons are several times
    faster than torch's on CPU chunks, and the work is memory-bound: one thread suffices); extra
    memory is the bracketed entries (about 1 % of the weights) plus one chunk, besides the
    returned masks. About 0.1-0.2 s per round on BERT-base's 85.5M weights (scripts/bench.py).

    weights: list of tensors (scores are their absolute values); masks: list of 0/1 tensors
    (or None for no earlier pruning). Returns a list of bool tensors on the CPU.
    """
    if not 0.0 <= amount <= 1.0:
        raise UserError(f"pruning amount must lie in [0, 1], got {amount}")
    if masks is None:
        masks = [None] * len(weights)
    total = sum(w.numel() for w in weights)
    remaining = sum(w.numel() for w, m in zip(weights, masks) if m is None) + _surviving(masks)
    n_prune = round(amount * remaining)  # python round, as torch's _compute_nparams_toprune
    if n_prune == 0:
        return [torch.ones(w.shape, dtype=torch.bool) if m is None else m.detach().to("cpu", torch.bool)
                for w, m in zip(weights, masks)]
    threshold, n_below, n_equal = _select(weights, masks, n_prune, total - remaining)
    ties_to_prune = n_prune - n_below  # 1 <= ties_to_prune <= n_equal
    out = [torch.empty(w.shape, dtype=torch.bool) for w in weights]
    out_np = [o.view(-1).numpy() for o in out]
    tie = np.empty(CHUNK, dtype=bool)
    for i, start, s, alive in _chunks(weights, masks):
        keep = np.greater(s, threshold, out=out_np[i][start:start + s.size])
        if alive is not None:
            keep &= alive
        if ties_to_prune < n_equal:  # keep the ties beyond the first ties_to_prune, by position
            t = np.equal(s, threshold, out=tie[:s.size])
            if alive is not None:
                t &= alive
            tie_idx = np.flatnonzero(t)
            keep[tie_idx[ties_to_prune:]] = True
            ties_to_prune = max(0, ties_to_prune - tie_idx.size)
            n_equal -= tie_idx.size
    return out


def _select(weights, masks, target, n_pruned):
    """(value of the target-th smallest surviving score, #surviving scores below it, #equal).

    ``n_pruned`` earlier-pruned entries sit below every surviving score in the sample.
    """
    total = sum(w.numel() for w in weights)
    m = min(total, 1 << 18)
    sample = _sample_scores(weights, masks, m)
    m = sample.size
    q = (n_pruned + target) / total
    margin = 8 * math.sqrt(max(q * (1 - q), 1.0 / m) / m) + 2.0 / m  # 8 standard errors
    lo_i, hi_i = max(0, math.floor((q - margin) * m)), min(m - 1, math.ceil((q + margin) * m))
    sample.partition([lo_i, hi_i])
    lo, hi = max(0.0, float(sample[lo_i])), float(sample[hi_i])
    below, inside = 0, []
    low, band, upper = (np.empty(CHUNK, dtype=bool) for _ in range(3))
    for _, _, s, alive in _chunks(weights, masks):
        n = s.size
        lt = np.less(s, lo, out=low[:n])
        inband = np.greater_equal(s, lo, out=band[:n])
        inband &= np.less_equal(s, hi, out=upper[:n])
        if alive is not None:
            lt &= alive
            inband &= alive
        below += int(np.count_nonzero(lt))
        inside.append(s[np.flatnonzero(inband)])
    inside = np.concatenate(inside)
    if not below < target <= below + inside.size:  # the bracket missed (rare): take all
        below = 0
        inside = np.concatenate([s[a] if a is not None else s.copy() for _, _, s, a in _chunks(weights, masks)])
    k = target - below
    value = float(np.partition(inside, k - 1)[k - 1])
    return value, below + int(np.count_nonzero(inside < value)), int(np.count_nonzero(inside == value))


def global_magnitude_prune(model, amount, impl=None, prunable_set="paper"):
    """Prune ``amount`` of the model's surviving prunable weights by global magnitude, in place.

    Scores are the effective weights (trained weight × existing mask). ``prunable_set``
    (``paper`` or ``no_pooler``) picks which matrices compete; the others keep their mask (all
    ones unless pruned before). Returns the new masks for every prunable matrix
    (``{mask key: bool tensor}``). ``impl`` defaults to the masking already attached, else plain.
    """
    modules = prunable_modules(model)
    names = scored_names(model, prunable_set)
    weights = [modules[n].weight for n in names]  # effective weight under hooks too
    old = [getattr(modules[n], "weight_mask", None) for n in names]
    new = dict(zip(names, magnitude_masks(weights, None if all(o is None for o in old) else old, amount)))
    masks = {}
    for n, module in modules.items():
        if n in new:
            masks[mask_key(n)] = new[n]
        else:
            m = getattr(module, "weight_mask", None)
            masks[mask_key(n)] = (torch.ones(module.weight.shape, dtype=torch.bool) if m is None
                                  else m.detach().to("cpu", torch.bool))
    apply_masks(model, masks, impl or masking_impl(model) or "plain")
    return masks


def imp_amount(pruning_step, rounds=10):
    """The original IMP schedule: ``1/(10-k)`` of what remains, i.e. 10 % of the original set
    per event (10 %, 20 %, … 100 % after k+1 events; docs/faithfulness.md §1.2)."""
    return 1.0 / (rounds - pruning_step)


# --- rewinding ---------------------------------------------------------------------------

def snapshot_state(model):
    """A detached CPU *copy* of the model's weights under plain names (the rewind target).

    The original aliased the live tensors, so its rewind silently did nothing on CPU and in
    LT_pretrain (docs/faithfulness.md §3.2); cloning makes the rewind real.
    """
    return {k: v.detach().clone().cpu() for k, v in effective_state_dict(model).items()}


def rewind(model, snapshot, include_head=False, include_backbone=True):
    """Copy the snapshot's backbone (every ``bert.*`` tensor) back into the model, in place.

    Masks are kept (pruned weights stay zero); the task head keeps its trained values unless
    ``include_head`` (then it returns to the snapshot's values too).
    """
    model = unwrap(model)
    params = dict(model.named_parameters())
    params.update(model.named_buffers())
    with torch.no_grad():
        for key, value in snapshot.items():
            if not (include_backbone if key.startswith("bert.") else include_head):
                continue
            target = params.get(key + "_orig") if key + "_orig" in params else params.get(key)
            if target is None:
                continue  # non-persistent buffers and the like
            target.copy_(value.to(target.device, target.dtype))
    enforce_masks(model)

