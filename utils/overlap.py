"""How much two masks agree: the share of one mask's kept weights that the other keeps too.

Two masks at the same sparsity s keep the same number of weights, so the share is symmetric;
for two independent uniformly random masks its expectation is 1 - s (each kept weight of the
first is kept by the second with probability 1 - s). A ticket that shares 99 % of its kept
weights with one-shot magnitude pruning of the same checkpoint (OMP) is, for all purposes,
that OMP mask; one near 1 - s is as unrelated to it as a random mask.

Only the matrices of the prunable set are compared: under ``no_pooler`` the pooler is kept
whole by every mask and would add agreement that says nothing.
"""
from pathlib import Path

import torch

from utils.pruning import _in_set, load_mask


def kept_overlap(a, b, prunable_set="paper"):
    """``{"shared": kept by both, "kept_a", "kept_b", "total", "share": shared / kept_a,
    "sparsity_a", "sparsity_b"}`` over the matrices of ``prunable_set`` that both masks hold.

    ``a`` and ``b``: ``{mask key: 0/1 or bool tensor}``; their keys in the set must agree and
    their shapes too (a ``ValueError`` names the first that does not)."""
    keys = sorted(k for k in a if _in_set(k, prunable_set))
    other = sorted(k for k in b if _in_set(k, prunable_set))
    if keys != other:
        diff = sorted(set(keys) ^ set(other))
        raise ValueError(f"masks of different matrices: {diff[0]} is in one only")
    shared = kept_a = kept_b = total = 0
    for k in keys:
        x, y = a[k].to(torch.bool), b[k].to(torch.bool)
        if x.shape != y.shape:
            raise ValueError(f"{k}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        shared += int((x & y).sum())
        kept_a += int(x.sum())
        kept_b += int(y.sum())
        total += x.numel()
    return {"shared": shared, "kept_a": kept_a, "kept_b": kept_b, "total": total,
            "share": shared / kept_a if kept_a else float("nan"),
            "sparsity_a": 100.0 * (1 - kept_a / total) if total else float("nan"),
            "sparsity_b": 100.0 * (1 - kept_b / total) if total else float("nan")}


def random_expectation(sparsity_percent):
    """Expected share of kept weights two independent uniformly random masks at this sparsity
    (percent) have in common: 1 - s."""
    return 1.0 - sparsity_percent / 100.0


def file_overlap(path_a, path_b, prunable_set="paper"):
    """:func:`kept_overlap` of two mask files (``mask.pt``)."""
    return kept_overlap(load_mask(Path(path_a)), load_mask(Path(path_b)), prunable_set)
