"""Masks and the prunable set: the base every pruning module builds on.

The prunable set (docs/faithfulness.md §1.1) is derived from the model: for every encoder
layer the ``weight`` of attention.self.query/key/value, attention.output.dense,
intermediate.dense and output.dense, plus ``bert.pooler.dense.weight``. BERT-base has 73 such
matrices (85,524,480 weights); MiniLM-L6 has 37.

A mask is a dict ``{"bert.encoder.layer.0.attention.self.query.weight_mask": 0/1 tensor, ...}``
(docs/faithfulness.md §1.3). Every masked module carries its mask as the buffer ``weight_mask``,
whichever way it is applied:

* ``impl="plain"`` (default, fast): ``weight`` stays a plain parameter holding zeros at pruned
  entries; :func:`mask_gradients` zeroes their gradients before clipping and the optimizer
  step, so AdamW (moments zero, decoupled decay of zero) keeps them exactly zero.
* ``impl="hooks"`` (faithful): ``torch.nn.utils.prune`` custom-from-mask, i.e. ``weight_orig``
  plus a forward pre-hook computing ``weight = weight_orig * weight_mask``.

Both give bit-identical weights after training (tests/test_pruning.py).
"""
import math
import re

import torch
from torch import nn
from torch.nn.utils import prune

from utils.errors import UserError

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


def dense_weight(module):
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

def scored_names(model, prunable_set="paper"):
    """Names of the modules that compete in global pruning: the whole prunable set (``paper``,
    the default and the original's), or all of it but the pooler (``no_pooler``). Mask files
    keep every key either way; a pooler left out keeps an all-ones mask."""
    if prunable_set not in PRUNABLE_SETS:
        raise UserError(f"--prunable_set must be one of {', '.join(PRUNABLE_SETS)}, not {prunable_set!r}")
    names = list(prunable_modules(model))
    return [n for n in names if n != POOLER] if prunable_set == "no_pooler" else names


def in_prunable_set(key, prunable_set):
    """Whether mask key ``key`` competes under ``prunable_set`` (``no_pooler`` leaves the pooler out)."""
    return not (prunable_set == "no_pooler" and key == mask_key(POOLER))


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
        w = dense_weight(module)
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

