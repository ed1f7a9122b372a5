"""Structured masks: whole attention heads and whole feed-forward neurons (``--structure heads_ffn``).

A *unit* is one structure that can be removed:

* a **head** of layer l: its ``d`` rows of ``attention.self.query``, ``key`` and ``value`` and
  its ``d`` columns of ``attention.output.dense`` (``4 * d * hidden`` weights, ``d`` the head
  size);
* a **neuron** of layer l: its row of ``intermediate.dense`` and its column of ``output.dense``
  (``2 * hidden`` weights).

Heads and neurons together cover the encoder's six prunable matrices exactly, so a structured
mask is an ordinary mask file (0/1 weight masks, the pooler's all ones) that every script
loads, and its sparsity is counted over the encoder (the pooler stays dense).

Ranking (magnitude): the **mean absolute effective weight** of a unit. It is the unstructured
IMP score (|w|) averaged over the structure, so a 196,608-weight head of BERT-base and a
1,536-weight neuron compete on the same scale: a sum would make every head outrank every
neuron, and the mean is what an unstructured global ranking would keep on average. Pruning
walks the surviving units from the lowest score up (random pruning: in a seeded uniformly
random order) and removes them until the encoder's pruned weights reach the target, to the
nearest unit; every layer keeps at least one head (the one-head rule), so the largest reachable
sparsity is ``1 - L * 4 * d * hidden / encoder weights`` (97.2 % on BERT-base and MiniLM-L6,
whose FFN is 4x the hidden size and which have 12 heads per layer).

Example::

    masks = structured_prune(model, 0.5)               # 50 % of the encoder, heads_ffn
    layout = layout_from_masks(masks, head_size(model))  # heads and neurons kept per layer
"""
import re

import numpy as np
import torch

from utils.errors import UserError
from utils.masks import POOLER, apply_masks, current_masks, mask_key, masking_impl, prunable_modules

STRUCTURES = ("unstructured", "heads_ffn")
_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.")
PARTS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "ao": "attention.output.dense", "i": "intermediate.dense", "o": "output.dense"}


def head_size(model_or_config):
    """The attention head size (hidden / heads of the config; shrunk models keep both)."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(config.hidden_size // config.num_attention_heads)


def encoder_layers(modules):
    """``[{part: module}]`` per encoder layer, from :func:`utils.pruning.prunable_modules`."""
    layers = {}
    for name, module in modules.items():
        match = _LAYER.match(name)
        if not match:
            continue
        part = name[match.end():]
        key = next((k for k, v in PARTS.items() if v == part), None)
        if key is not None:
            layers.setdefault(int(match.group(1)), {})[key] = module
    return [layers[i] for i in sorted(layers)]


def masked_weight(module):
    """The weight a module computes with: ``weight_orig * weight_mask`` under hooks, else ``weight``
    (zeros at pruned entries); compare :func:`utils.masks.dense_weight`, the raw parameter."""
    return module.weight_orig * module.weight_mask if hasattr(module, "weight_orig") else module.weight


# --- layouts: which heads and neurons a mask keeps -------------------------------------------

def _mask_of(masks, layer, part):
    return masks[f"bert.encoder.layer.{layer}.{PARTS[part]}.weight_mask"].to(torch.bool)


def layout_from_masks(masks, d, source="mask"):
    """``[{"heads": bool[n_heads], "neurons": bool[n_neurons]}]`` per layer, kept = True.

    Raises :class:`UserError` naming the first matrix whose zeros are not whole heads and
    neurons (an unstructured mask), so the structure can be read back from any mask file.
    """
    layers = sorted({int(m.group(1)) for k in masks if (m := _LAYER.match(k))})
    out = []
    for layer in layers:
        q = _mask_of(masks, layer, "q")
        n_heads = q.shape[0] // d
        heads = q.view(n_heads, -1).any(dim=1)
        neurons = _mask_of(masks, layer, "i").any(dim=1)
        expected = _layer_masks(heads, neurons, d, q.shape[1])
        for part, want in expected.items():
            got = _mask_of(masks, layer, part)
            if got.shape != want.shape or not torch.equal(got, want):
                raise UserError(f"{source}: bert.encoder.layer.{layer}.{PARTS[part]} is not pruned in whole "
                                "heads and FFN neurons (an unstructured mask; --structure heads_ffn masks "
                                "are needed here)")
        out.append({"heads": heads, "neurons": neurons})
    return out


def is_structured(masks, d):
    try:
        layout_from_masks(masks, d)
        return True
    except UserError:
        return False


def _layer_masks(heads, neurons, d, hidden):
    """The six weight masks of one layer from its kept heads and neurons."""
    rows = heads.repeat_interleave(d)  # one entry per row of query/key/value
    qkv = rows[:, None].expand(rows.numel(), hidden).clone()
    return {"q": qkv, "k": qkv.clone(), "v": qkv.clone(),
            "ao": rows[None, :].expand(hidden, rows.numel()).clone(),
            "i": neurons[:, None].expand(neurons.numel(), hidden).clone(),
            "o": neurons[None, :].expand(hidden, neurons.numel()).clone()}


def masks_from_layout(model, layout):
    """A full mask dict (every prunable key; the pooler's all ones) for ``layout``."""
    modules = prunable_modules(model)
    d = head_size(model)
    masks = {}
    for layer, parts in enumerate(encoder_layers(modules)):
        hidden = parts["q"].weight.shape[1]
        for part, m in _layer_masks(layout[layer]["heads"], layout[layer]["neurons"], d, hidden).items():
            masks[f"bert.encoder.layer.{layer}.{PARTS[part]}.weight_mask"] = m
    masks[mask_key(POOLER)] = torch.ones(modules[POOLER].weight.shape, dtype=torch.bool)
    return {mask_key(n): masks[mask_key(n)] for n in modules}  # the prunable set's order


def current_layout(model):
    """The layout of the masks the model carries (everything kept when it carries none)."""
    return layout_from_masks(current_masks(model), head_size(model), "the model's current mask")


# --- units, sizes, scores -----------------------------------------------------------------

def unit_table(model, layout):
    """Every unit as parallel numpy arrays: layer, kind (0 head, 1 neuron), index, size,
    magnitude score (mean |effective weight|) and alive (kept by ``layout``)."""
    d = head_size(model)
    cols = {k: [] for k in ("layer", "kind", "index", "size", "score", "alive")}
    with torch.no_grad():
        for layer, p in enumerate(encoder_layers(prunable_modules(model))):
            q, k, v, ao = (masked_weight(p[x]).detach().float().cpu() for x in ("q", "k", "v", "ao"))
            hidden = q.shape[1]
            n_heads = q.shape[0] // d
            head_sum = sum(w.abs().view(n_heads, d * hidden).sum(1) for w in (q, k, v))
            head_sum = head_sum + ao.abs().view(hidden, n_heads, d).sum((0, 2))
            i, o = (masked_weight(p[x]).detach().float().cpu() for x in ("i", "o"))
            neuron_sum = i.abs().sum(1) + o.abs().sum(0)
            for kind, sums, size in ((0, head_sum, 4 * d * hidden), (1, neuron_sum, 2 * hidden)):
                n = sums.numel()
                cols["layer"] += [layer] * n
                cols["kind"] += [kind] * n
                cols["index"] += list(range(n))
                cols["size"] += [size] * n
                cols["score"] += (sums.double() / size).tolist()
                cols["alive"] += layout[layer]["heads" if kind == 0 else "neurons"].tolist()
    return {k: np.asarray(v) for k, v in cols.items()}


def encoder_total(table):
    """Weights of the encoder's prunable matrices (= the sum of every unit's size)."""
    return int(table["size"].sum())


def choose(table, target, order):
    """Units to remove (indices into ``table``) so that the encoder's pruned weights reach
    ``target``, to the nearest unit: walk ``order`` (surviving units only), remove each unit
    that still fits, and at the first that would overshoot remove it only if that lands
    nearer the target, then stop. A layer's last surviving head is never removed."""
    removed = int(table["size"][~table["alive"]].sum())
    heads_left = {}
    for layer, kind, alive in zip(table["layer"], table["kind"], table["alive"]):
        if kind == 0 and alive:
            heads_left[layer] = heads_left.get(layer, 0) + 1
    chosen = []
    for u in order:
        if removed >= target:
            break
        if not table["alive"][u]:
            continue
        layer, size = int(table["layer"][u]), int(table["size"][u])
        if table["kind"][u] == 0 and heads_left[layer] <= 1:
            continue  # the one-head rule
        if removed + size > target:
            if removed + size - target < target - removed:
                chosen.append(u)
                removed += size
            break
        chosen.append(u)
        removed += size
        if table["kind"][u] == 0:
            heads_left[layer] -= 1
    return chosen, removed


def max_sparsity(model):
    """Largest encoder sparsity the one-head rule allows (fraction)."""
    d = head_size(model)
    layers = encoder_layers(prunable_modules(model))
    total = sum(p[x].weight.numel() for p in layers for x in PARTS)
    return 1.0 - sum(4 * d * p["q"].weight.shape[1] for p in layers) / total


def structured_prune(model, fraction, how="magnitude", seed=0, impl=None, table=None):
    """Remove heads and neurons until ``fraction`` of the encoder's prunable weights are pruned
    (cumulative, counting earlier pruning; to the nearest unit; at most :func:`max_sparsity`).

    ``how="magnitude"``: lowest score first (ties by layer, heads before neurons, index), the
    score being mean |effective weight| or, with ``table`` (a :func:`unit_table` of the model's
    current layout whose ``score`` another criterion filled, :mod:`utils.importance`), that
    score; ``how="random"``: a uniformly random order drawn from ``seed``. Earlier pruned units
    stay pruned (masks nest). Applies and returns the masks (every prunable key).
    """
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"structured pruning fraction must lie in [0, 1], got {fraction}")
    layout = current_layout(model)
    table = unit_table(model, layout) if table is None else table
    target = round(fraction * encoder_total(table))
    n = table["size"].size
    if how == "magnitude":
        order = np.lexsort((table["index"], table["kind"], table["layer"], table["score"]))
    elif how == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        raise ValueError(f"how must be magnitude or random, not {how!r}")
    chosen, _ = choose(table, target, order)
    new = [{"heads": lay["heads"].clone(), "neurons": lay["neurons"].clone()} for lay in layout]
    for u in chosen:
        new[int(table["layer"][u])]["heads" if table["kind"][u] == 0 else "neurons"][int(table["index"][u])] = False
    masks = masks_from_layout(model, new)
    apply_masks(model, masks, impl or masking_impl(model) or "plain")
    return masks


def structure_report(masks, d):
    """Heads and neurons kept per layer (for the sparsity report of a structured mask)."""
    layout = layout_from_masks(masks, d)
    return {
        "structure": "heads_ffn",
        "heads_kept": [int(x["heads"].sum()) for x in layout],
        "heads_total": [int(x["heads"].numel()) for x in layout],
        "neurons_kept": [int(x["neurons"].sum()) for x in layout],
        "neurons_total": [int(x["neurons"].numel()) for x in layout],
    }


def resolve_prunable_set(ns, argv=()):
    """The prunable set the parsed flags ``ns`` mean: ``--structure heads_ffn`` leaves the pooler
    dense (``no_pooler``), and an explicit ``--prunable_set paper`` in ``argv`` conflicts with it."""
    if getattr(ns, "structure", "unstructured") != "heads_ffn":
        if getattr(ns, "structure_score", "magnitude") != "magnitude":
            raise UserError(f"--structure_score {ns.structure_score} ranks heads and neurons: it needs "
                            "--structure heads_ffn")
        return ns.prunable_set
    if "--prunable_set" in argv and ns.prunable_set == "paper":
        raise UserError("--structure heads_ffn leaves the pooler dense: it cannot be combined with "
                        "--prunable_set paper")
    return "no_pooler"
