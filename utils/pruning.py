"""Pruning and masks: the one home of the prunable set, global magnitude pruning, mask files,
mask application (hook-free or torch.nn.utils.prune hooks), rewinding and sparsity reports.

The prunable set (docs/faithfulness.md §1.1) is derived from the model: for every encoder
layer the ``weight`` of attention.self.query/key/value, attention.output.dense,
intermediate.dense and output.dense, plus ``bert.pooler.dense.weight``. BERT-base has 73 such
matrices (85,524,480 weights); MiniLM-L6 has 37.

A mask is a dict ``{"bert.encoder.layer.0.attention.self.query.weight_mask": 0/1 tensor, ...}``
(docs/faithfulness.md §1.3). Every masked module carries its mask as the buffer ``weight_mask``, whichever way it is
applied:

* ``impl="plain"`` (default, fast): ``weight`` stays a plain parameter holding zeros at pruned
  entries; :func:`mask_gradients` zeroes their gradients before clipping and the optimizer
  step, so AdamW (moments zero, decoupled decay of zero) keeps them exactly zero.
* ``impl="hooks"`` (faithful): ``torch.nn.utils.prune`` custom-from-mask, i.e. ``weight_orig``
  plus a forward pre-hook computing ``weight = weight_orig * weight_mask``.

Both give bit-identical weights after training (tests/test_pruning.py).

Example::

    masks = global_magnitude_prune(model, 0.1)          # 10 % of the prunable set
    save_mask("out/mask.pt", masks, model=model)        # utils.maskfile; + out/mask_sparsity.json
    apply_masks(other_model, load_mask("out/mask.pt", other_model))
"""
import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from utils.errors import UserError
from utils.io import atomic_write, load_tensor_dict, write_json  # noqa: F401  (re-exported for older imports)

MASK_SUFFIX = ".weight_mask"
POOLER = "bert.pooler.dense"
_ENCODER_LINEAR = re.compile(
    r"^bert\.encoder\.layer\.(\d+)\."
    r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)$"
)
IMPLS = ("plain", "hooks")
PRUNABLE_SETS = ("paper", "no_pooler")  # the original's 73 matrices, or all but the pooler


def unwrap(model):
    """The task model inside a DistributedDataParallel / DataParallel wrapper (or itself)."""
    return getattr(model, "module", model)


# --- the prunable set --------------------------------------------------------------------

def prunable_modules(model):
    """Ordered ``{module name: nn.Linear}`` of the prunable set (layer order, then pooler)."""
    model = unwrap(model)
    found = {}
    pooler = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if _ENCODER_LINEAR.match(name):
            found[name] = module
        elif name == POOLER:
            pooler = module
    if not found:
        raise UserError(f"{type(model).__name__} has no BERT encoder under the attribute 'bert'")
    if pooler is None:
        raise UserError(
            f"{type(model).__name__} has no bert.pooler: call utils.models.attach_pooler first "
            "so that masks keep the pooler key"
        )
    found[POOLER] = pooler
    return found


def mask_key(module_name):
    """``bert.pooler.dense`` -> ``bert.pooler.dense.weight_mask`` (the original file's key)."""
    return module_name + MASK_SUFFIX


def prunable_shapes(model):
    """``{mask key: weight shape}``; works on meta-device models (sizes only)."""
    return {mask_key(n): tuple(m.weight.shape) for n, m in prunable_modules(model).items()}


def count_prunable(model):
    """Number of weights in the prunable set (85,524,480 for BERT-base)."""
    return sum(math.prod(s) for s in prunable_shapes(model).values())


def _weight(module):
    """The dense parameter of a module: ``weight_orig`` under hooks, else ``weight``."""
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


def masking_impl(model):
    """'hooks', 'plain' or None (no mask attached yet)."""
    for module in prunable_modules(model).values():
        if prune.is_pruned(module):
            return "hooks"
        if hasattr(module, "weight_mask"):
            return "plain"
    return None


# --- masks: current state, application, gradients ----------------------------------------

def current_masks(model):
    """``{mask key: bool tensor on CPU}``; all-ones for modules that carry no mask yet."""
    out = {}
    for name, module in prunable_modules(model).items():
        m = getattr(module, "weight_mask", None)
        out[mask_key(name)] = (
            m.detach().to("cpu", torch.bool) if m is not None
            else torch.ones(module.weight.shape, dtype=torch.bool)
        )
    return out


def apply_masks(model, masks, impl="plain"):
    """Attach (or replace) masks on the prunable set; zeroes pruned weights.

    ``masks`` maps every mask key to a 0/1 tensor (bool or float, any device). Masks already
    attached are overwritten in place, so optimizer references to the parameters stay valid.
    """
    if impl not in IMPLS:
        raise UserError(f"--mask_impl must be one of {', '.join(IMPLS)}, not {impl!r}")
    present = masking_impl(model)
    if present is not None and present != impl:
        raise ValueError(f"model already carries {present} masks; cannot switch to {impl}")
    for name, module in prunable_modules(model).items():
        w = _weight(module)
        m = masks[mask_key(name)].to(device=w.device, dtype=w.dtype)
        if hasattr(module, "weight_mask"):
            module.weight_mask.copy_(m)
        elif impl == "hooks":
            prune.custom_from_mask(module, "weight", m)
        else:
            module.register_buffer("weight_mask", m.clone())
        if impl == "plain":
            with torch.no_grad():
                module.weight.mul_(module.weight_mask)


def enforce_masks(model):
    """Re-zero pruned weights (plain masking) after weights were loaded or rewound."""
    if masking_impl(model) != "plain":
        return
    with torch.no_grad():
        for module in prunable_modules(model).values():
            module.weight.mul_(module.weight_mask)


def _zero_pruned(mask):
    """Post-accumulate-grad hook multiplying the gradient by the 0/1 mask."""
    def hook(param):
        param.grad.mul_(mask)
    return hook


class GradientMasker:
    """Zeroes the gradients of pruned weights (plain masking's only per-step cost).

    The gradient is multiplied in place by the module's ``weight_mask`` buffer (same dtype as
    the weight), exactly what the hooks' ``weight_orig * weight_mask`` does to it in backward,
    so both implementations see the same gradients, non-finite values included (an fp16
    overflow at a pruned entry still makes GradScaler skip the step, as under hooks). On the
    CPU a multiply by a float mask is about 25x faster than ``masked_fill_`` with a bool mask.

    ``eager=True`` (one process) masks each gradient in a post-accumulate-grad hook, right after
    backward wrote it and while it is still in cache. ``eager=False`` (DistributedDataParallel,
    whose all-reduce may read gradients before such hooks run) masks everything when called,
    after backward. A no-op without plain masks (dense training, or hooks, whose gradients
    already come out multiplied). Masks replaced in place by :func:`apply_masks` are picked up;
    call :meth:`remove` when the model's masking itself changes.
    """

    def __init__(self, model, eager=True):
        self.pairs, self.handles = [], []
        if masking_impl(model) != "plain":
            return
        for module in prunable_modules(model).values():
            if eager:
                self.handles.append(module.weight.register_post_accumulate_grad_hook(_zero_pruned(module.weight_mask)))
            else:
                self.pairs.append((module.weight, module.weight_mask))

    def __call__(self):
        pairs = [(p.grad, m) for p, m in self.pairs if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))  # one fused call over all matrices

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []


def mask_gradients(model):
    """Zero the gradients of pruned weights once (after backward)."""
    GradientMasker(model, eager=False)()


def remove_masks(model):
    """Make pruning permanent and drop the masks: plain ``weight`` parameters, no buffers."""
    for module in prunable_modules(model).values():
        if prune.is_pruned(module):
            prune.remove(module, "weight")
        elif hasattr(module, "weight_mask"):
            del module._buffers["weight_mask"]


def effective_state_dict(model):
    """State dict with plain names (``…weight``, effective values) and no ``weight_mask`` keys.

    Checkpoints are written from this, so ``from_pretrained``/``load_state_dict`` on an unpruned
    model of the same class reads them (the original's hooked state dicts could not, docs/faithfulness.md §4.3).
    """
    out = {}
    for key, value in unwrap(model).state_dict().items():
        if key.endswith(MASK_SUFFIX):
            continue
        if key.endswith(".weight_orig"):
            base = key[: -len("_orig")]
            value = value * unwrap(model).state_dict()[base + "_mask"]
            key = base
        out[key] = value.detach()
    return out


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


def scored_names(model, prunable_set="paper"):
    """Names of the modules that compete in global pruning: the whole prunable set (``paper``,
    the default and the original's), or all of it but the pooler (``no_pooler``). Mask files
    keep every key either way; a pooler left out keeps an all-ones mask."""
    if prunable_set not in PRUNABLE_SETS:
        raise UserError(f"--prunable_set must be one of {', '.join(PRUNABLE_SETS)}, not {prunable_set!r}")
    names = list(prunable_modules(model))
    return [n for n in names if n != POOLER] if prunable_set == "no_pooler" else names


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


# --- sparsity report ---------------------------------------------------------------------

def _in_set(key, prunable_set):
    return not (prunable_set == "no_pooler" and key == mask_key(POOLER))


def sparsity_report(masks, model=None, prunable_set="paper"):
    """Per matrix, over the prunable set (the paper's number) and over the whole model.

    Percentages of pruned entries. ``prunable_set="no_pooler"`` counts the prunable sparsity over
    every matrix but the pooler (which such masks keep whole). ``emptied`` lists every matrix
    pruned entirely, with what that cuts off. ``model`` (optional) supplies the whole-model
    parameter count.
    """
    per = {}
    total = pruned = pruned_all = 0
    for key, m in masks.items():
        n = m.numel()
        z = n - int(m.to(torch.bool).sum())
        per[key] = {"shape": list(m.shape), "total": n, "pruned": z, "sparsity": 100.0 * z / n}
        pruned_all += z
        if _in_set(key, prunable_set):
            total += n
            pruned += z
    report = {
        "matrices": len(masks),
        "prunable_set": prunable_set,
        "prunable": {"total": total, "pruned": pruned, "sparsity": 100.0 * pruned / max(total, 1)},
        "per_matrix": per,
        "emptied": emptied_matrices(masks),
    }
    if model is not None:
        n_params = sum(
            p.numel() for n, p in unwrap(model).named_parameters()
        )
        report["model"] = {"total": n_params, "pruned": pruned_all, "sparsity": 100.0 * pruned_all / n_params}
    return report


_EFFECTS = {
    "attention.self.query": "every attention score of layer {i} is equal: each token averages the values uniformly",
    "attention.self.key": "every attention score of layer {i} is equal: each token averages the values uniformly",
    "attention.self.value": "the attention of layer {i} outputs only its value bias (no token information)",
    "attention.output.dense": "the attention block of layer {i} adds only a constant (its bias) to the residual",
    "intermediate.dense": "the feed-forward block of layer {i} adds only a constant to the residual",
    "output.dense": "the feed-forward block of layer {i} adds only a constant to the residual",
}


def emptied_matrices(masks):
    """``[{"key", "effect"}]`` for every matrix whose mask is all zeros, saying what it cuts off."""
    out = []
    for key, m in masks.items():
        if m.numel() == 0 or bool(m.to(torch.bool).any()):
            continue
        name = key[: -len(MASK_SUFFIX)]
        if name == POOLER:
            effect = ("the pooled [CLS] output is a constant (tanh of the pooler bias): a "
                      "sequence-classification head cannot see the input (QA and MLM heads do not use it)")
        else:
            match = _ENCODER_LINEAR.match(name)
            part = match.group(2) if match else ""
            effect = _EFFECTS.get(part, "this matrix contributes nothing").format(i=match.group(1) if match else "?")
        out.append({"key": key, "effect": effect})
    return out


def warn_emptied(report, source):
    """Print one warning line per matrix that ``report`` found pruned entirely."""
    import sys

    for item in report.get("emptied", []):
        print(f"warning: {source}: {item['key']} is pruned entirely: {item['effect']}", file=sys.stderr)


def format_sparsity(report):
    """One line for logs: prunable-set and whole-model sparsity."""
    which = " (pooler left out)" if report.get("prunable_set") == "no_pooler" else ""
    line = (f"sparsity {report['prunable']['sparsity']:.2f}% of {report['prunable']['total']:,} "
            f"prunable weights{which} in {report['matrices']} matrices")
    if "model" in report:
        line += f" ({report['model']['sparsity']:.2f}% of all {report['model']['total']:,} parameters)"
    if "structure" in report:
        st = report["structure"]
        line += (f"; heads kept per layer {st['heads_kept']} of {st['heads_total'][0]}, FFN neurons kept "
                 f"{st['neurons_kept']} of {st['neurons_total'][0]}")
    return line


def model_sparsity(model, prunable_set="paper"):
    """Percentage of exact zeros among the effective prunable weights (``see_weight_rate``),
    over the paper's set or all of it but the pooler."""
    modules = prunable_modules(model)
    names = scored_names(model, prunable_set)
    zeros = sum(int((modules[n].weight == 0).sum()) for n in names)
    return 100.0 * zeros / sum(modules[n].weight.numel() for n in names)


# --- mask files --------------------------------------------------------------------------

def report_path(mask_path):
    """``…/mask.pt`` -> ``…/mask_sparsity.json``."""
    p = Path(mask_path)
    return p.with_name(p.stem + "_sparsity.json")


def load_mask(path, model=None):
    """Read and check a mask file; returns ``{mask key: bool tensor}`` on the CPU.

    Accepts the original's float files (also saved from CUDA) and ours (bool). With ``model``,
    the keys must be exactly the model's prunable set and the shapes must match; any head's
    mask fits any other head's model. Problems raise :class:`UserError` naming the file.
    """
    path = Path(path)
    data = load_tensor_dict(path, "mask file")
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor) or not str(k).endswith(MASK_SUFFIX)]
    if bad:
        raise UserError(f"mask file {path}: entry {bad[0]!r} is not a *.weight_mask tensor")
    masks = {}
    for key, value in data.items():
        if value.dtype != torch.bool:
            if not bool(((value == 0) | (value == 1)).all()):
                raise UserError(f"{path}: {key} has values other than 0 and 1")
        masks[key] = value.to(torch.bool)
    if model is not None:
        check_mask_fits(masks, model, path)
    return masks


def check_mask_fits(masks, model, source="mask"):
    """Raise :class:`UserError` unless ``masks`` has exactly the model's keys and shapes."""
    shapes = prunable_shapes(model)
    missing = [k for k in shapes if k not in masks]
    extra = [k for k in masks if k not in shapes]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), first {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} extra key(s), first {extra[0]}")
        raise UserError(
            f"{source} does not fit this model ({len(shapes)} prunable matrices): " + "; ".join(parts)
        )
    for key, shape in shapes.items():
        if tuple(masks[key].shape) != shape:
            raise UserError(
                f"{source}: {key} has shape {tuple(masks[key].shape)}, the model's weight is {shape} "
                "(a mask for a model of another size?)"
            )


# --- layer-shuffled weights (pertub_weight.py) --------------------------------------------

def shuffled_layer_weights(model, seed=None):
    """The prunable matrices with whole encoder layers permuted (docs/faithfulness.md §5.2).

    Target layer i receives all six matrices of layer perm[i] (one permutation for all six);
    the pooler is copied unchanged; keys are plain ``…weight`` names. Returns (dict, perm).
    """
    modules = prunable_modules(model)
    n_layers = 1 + max(int(_ENCODER_LINEAR.match(n).group(1)) for n in modules if n != POOLER)
    perm = np.random.default_rng(seed).permutation(n_layers).tolist()
    out = {}
    for name, module in modules.items():
        if name == POOLER:
            source = name
        else:
            layer = int(_ENCODER_LINEAR.match(name).group(1))
            source = name.replace(f"bert.encoder.layer.{layer}.", f"bert.encoder.layer.{perm[layer]}.", 1)
        out[name + ".weight"] = _weight(modules[source]).detach().clone().cpu()
    return out, perm
