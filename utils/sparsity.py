"""Sparsity reports of a mask and reading mask files (the original format), above :mod:`utils.masks`.

Writing them is :func:`utils.maskfile.save_mask`.
"""
import sys
from pathlib import Path

import torch

from utils.errors import UserError
from utils.io import load_tensor_dict
from utils.masks import (
    _ENCODER_LINEAR,
    MASK_SUFFIX,
    POOLER,
    in_prunable_set,
    prunable_modules,
    prunable_shapes,
    scored_names,
    unwrap,
)

# --- sparsity report ---------------------------------------------------------------------

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
        if in_prunable_set(key, prunable_set):
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

