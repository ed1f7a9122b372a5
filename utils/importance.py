"""How much each attention head and FFN neuron matters, for structured pruning
(``--structure heads_ffn``), and the least-squares rescaling of the units a mask keeps.

Scores (``SCORES``), one per unit of :func:`utils.structured.unit_table`, higher = kept longer:

* ``magnitude``: mean |effective weight| of the unit (the existing score; heads and neurons of
  layers whose weights are on another scale compete unevenly: MiniLM-L6's last ``output.dense``
  has mean |w| 0.029 against 0.074 in layer 0's query, so its neurons go first).
* ``layer_norm_magnitude``: the same, divided by the root mean square of the scores of its
  group (the heads of its layer, or the neurons of its layer), so every group's scores have
  RMS 1 and no layer is emptied first merely because its weights are smaller.
* ``taylor``: first-order importance of a multiplicative gate of 1 on the unit's output: the
  mean over batches of |dL/dgate| (Michel et al. 2019 for heads; Prasanna et al. 2020).
* ``fisher``: the mean over batches of (dL/dgate)^2, the gate's empirical Fisher information
  (Kwon et al. 2022), i.e. twice the loss increase a second-order model predicts for removing it.

The gradient scores are computed per batch (the batch's mean loss), in eval mode (no dropout),
on the batches given, and only the gates receive gradients (the model's parameters do not).
Heads and neurons are put on one scale by ``normalise``: ``size`` (default) divides a unit's
importance by the weights it holds (a head 4 * d * hidden, a neuron 2 * hidden), i.e. the loss
cost per pruned weight, which is what a budget counted in weights trades off; ``none`` keeps the
raw importance (a head then outranks most neurons); ``layer`` divides by the group's RMS as
``layer_norm_magnitude`` does.

Gates exist only inside ``with UnitGates(model)``: forward pre-hooks on every layer's
``attention.output.dense`` (its input holds the heads' outputs side by side, head h in columns
h*d .. (h+1)*d) and ``output.dense`` (its input holds the neurons' activations). Outside the
block the model has no hook, so the gates cost nothing when not scoring; inside, gates of 1
leave every output bit-equal (x * 1.0 == x).
"""
import copy
import time

import numpy as np
import torch

from utils.masks import apply_masks, dense_weight, masking_impl, prunable_modules
from utils.structured import current_layout, encoder_layers, head_size, layout_from_masks, structured_prune, unit_table

SCORES = ("magnitude", "layer_norm_magnitude", "taylor", "fisher")
NORMALISE = ("size", "none", "layer")


class UnitGates:
    """Gates of 1 on every head and FFN neuron of the encoder, with gradients (see module)."""

    def __init__(self, model):
        self.d = head_size(model)
        self.layers = encoder_layers(prunable_modules(model))
        device = self.layers[0]["ao"].weight.device
        self.heads = [torch.ones(p["ao"].weight.shape[1] // self.d, device=device, requires_grad=True)
                      for p in self.layers]
        self.neurons = [torch.ones(p["o"].weight.shape[1], device=device, requires_grad=True) for p in self.layers]
        self._handles = []

    def _hook(self, gate, repeat):
        def pre(module, args):
            g = gate.repeat_interleave(repeat) if repeat > 1 else gate
            return (args[0] * g.to(args[0].dtype),) + tuple(args[1:])
        return pre

    def __enter__(self):
        for p, h, n in zip(self.layers, self.heads, self.neurons):
            self._handles.append(p["ao"].register_forward_pre_hook(self._hook(h, self.d)))
            self._handles.append(p["o"].register_forward_pre_hook(self._hook(n, 1)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def gates(self):
        return [*self.heads, *self.neurons]


def gate_gradients(model, batches, loss_fn=None):
    """Per batch, dL/dgate of every head and neuron: a list of ``(heads, neurons)``, each a
    list per layer of 1-D tensors (on the CPU). ``batches``: dicts of model inputs with labels;
    ``loss_fn(model, batch)`` -> scalar (default: the model's own ``.loss``)."""
    loss_fn = loss_fn or (lambda m, b: m(**b).loss)
    was_training = model.training
    model.eval()
    out = []
    try:
        with UnitGates(model) as gates:
            n_layers = len(gates.heads)
            for batch in batches:
                grads = torch.autograd.grad(loss_fn(model, batch), gates.gates())
                out.append(([g.detach().cpu() for g in grads[:n_layers]], [g.detach().cpu() for g in grads[n_layers:]]))
    finally:
        model.train(was_training)
    return out


def gradient_importance(grads, how):
    """Per unit, as :func:`utils.structured.unit_table` orders them (per layer: its heads,
    then its neurons): ``taylor`` the mean of |g| over batches, ``fisher`` the mean of g^2."""
    if not grads:
        raise ValueError("no batches to score on")
    if how not in ("taylor", "fisher"):
        raise ValueError(f"gradient scores are taylor or fisher, not {how!r}")
    f = torch.abs if how == "taylor" else torch.square
    n_layers = len(grads[0][0])
    flat = []
    for layer in range(n_layers):
        for part in (0, 1):
            flat.append(torch.stack([f(g[part][layer].double()) for g in grads]).mean(0))
    return np.concatenate([t.numpy() for t in flat])


def _group_rms(values, table):
    out = np.array(values, dtype=float)
    for layer in np.unique(table["layer"]):
        for kind in (0, 1):
            sel = (table["layer"] == layer) & (table["kind"] == kind)
            rms = np.sqrt(np.mean(out[sel] ** 2)) if sel.any() else 0.0
            out[sel] = out[sel] / rms if rms > 0 else 0.0
    return out


def unit_scores(model, layout, how="magnitude", batches=None, normalise="size", loss_fn=None):
    """(the unit table with ``score`` replaced by the ranking score, the raw importance).

    ``how``: one of :data:`SCORES`; the gradient scores need ``batches``. ``normalise`` (gradient
    scores only): one of :data:`NORMALISE` (see the module)."""
    table = unit_table(model, layout)
    if how == "magnitude":
        return table, table["score"].copy()
    if how == "layer_norm_magnitude":
        raw = table["score"].copy()
        table["score"] = _group_rms(raw, table)
        return table, raw
    if how not in ("taylor", "fisher"):
        raise ValueError(f"--structure_score must be one of {', '.join(SCORES)}, not {how!r}")
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISE)}, not {normalise!r}")
    raw = gradient_importance(gate_gradients(model, batches, loss_fn), how)
    if raw.shape != table["score"].shape:
        raise ValueError("gate gradients and the unit table disagree on the number of units")
    table["score"] = {"size": raw / table["size"], "none": raw, "layer": _group_rms(raw, table)}[normalise]
    return table, raw


def score_record(table, raw, how, normalise, n_batches, kept=None):
    """The per-unit scores as written beside a mask (``mask_scores.json``): why each unit went."""
    names = ("head", "neuron")
    units = [{"layer": int(table["layer"][u]), "unit": names[int(table["kind"][u])], "index": int(table["index"][u]),
              "importance": float(raw[u]), "score": float(table["score"][u]),
              "kept": None if kept is None else bool(kept[u])} for u in range(len(raw))]
    return {"score": how, "normalise": normalise if how in ("taylor", "fisher") else None,
            "batches": n_batches, "units": units}


# --- least-squares rescaling of the kept units --------------------------------------------

def _blocksum(m, group):
    n = m.shape[0] // group
    return m.reshape(n, group, n, group).sum((1, 3))


def least_squares_scales(a, b, wtw, kept, group):
    """Scales ``s`` of the kept units that bring the pruned layer's output closest to the full
    one, in the least-squares sense over the tokens seen.

    The dense layer's output without bias is ``Y = X_full W^T`` in the full model; in the pruned
    model unit u contributes ``C_u = X_u W_u^T`` (its ``group`` input columns, a head's d or a
    neuron's 1, and the same columns of ``W``). Minimising ||sum_u s_u C_u - Y||^2 over the kept
    units gives the normal equations ``G s = c`` with ``G_uv = sum((X_u^T X_v) * (W_u^T W_v))``
    and ``c_u = sum over u's columns of ((X^T X_full) * W^T W)``, so only ``a = X^T X`` and
    ``b = X^T X_full`` (pruned inputs X, accumulated over batches) and ``wtw = W^T W`` are needed.
    Returns one float64 scale per unit (1 for removed units)."""
    idx = [u for u in range(len(kept)) if kept[u]]
    scales = torch.ones(len(kept), dtype=torch.float64)
    if not idx:
        return scales
    gram = _blocksum(a * wtw, group)[idx][:, idx]
    rhs = (b * wtw).sum(1).reshape(len(kept), group).sum(1)[idx]
    scales[idx] = torch.linalg.lstsq(gram, rhs[:, None]).solution[:, 0]
    return scales


class _Inputs:
    """The input of one module during one forward pass, flattened to tokens x features."""

    def __init__(self, module):
        self.x = None
        self.handle = module.register_forward_pre_hook(self._keep)

    def _keep(self, mod, args):
        self.x = args[0].detach().reshape(-1, args[0].shape[-1]).double().cpu()


def _forward(model, batch):
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})


def rescale_kept_units(model, masks, batches, full=None):
    """Kwon et al.'s idea without retraining: layer by layer (its heads, then its neurons),
    fold into the output weights of ``model`` (a dense, fine-tuned model that ``masks``, a
    structured mask, prunes) the least-squares scales (:func:`least_squares_scales`) that best
    restore the full model's outputs on ``batches``, the earlier layers already pruned and
    rescaled. ``full``: the dense model (default: a copy of ``model``, which must then still be
    dense). Applies the masks. Returns ``[{"layer", "heads": scales, "neurons": scales}]``."""
    d = head_size(model)
    layout = layout_from_masks(masks, d)
    full = (copy.deepcopy(model) if full is None else full).eval()
    was_training = model.training
    model.eval()
    apply_masks(model, masks, masking_impl(model) or "plain")
    pairs = zip(encoder_layers(prunable_modules(full)), encoder_layers(prunable_modules(model)))
    out = []
    try:
        for li, (pf, p) in enumerate(pairs):
            rec = {"layer": li}
            for part, key, group in (("ao", "heads", d), ("o", "neurons", 1)):
                w = pf[part].weight.detach().double().cpu()
                seen_full, seen = _Inputs(pf[part]), _Inputs(p[part])
                a = b = None
                try:
                    for batch in batches:
                        _forward(full, batch)
                        _forward(model, batch)
                        xa, xb = seen.x.T @ seen.x, seen.x.T @ seen_full.x
                        a, b = (xa, xb) if a is None else (a + xa, b + xb)
                finally:
                    seen_full.handle.remove()
                    seen.handle.remove()
                s = least_squares_scales(a, b, w.T @ w, layout[li][key].tolist(), group)
                with torch.no_grad():
                    target = dense_weight(p[part])
                    target.mul_(s.to(target.dtype).repeat_interleave(group).to(target.device)[None, :])
                rec[key] = s.tolist()
            out.append(rec)
    finally:
        model.train(was_training)
    return out


# --- the one-shot path: score on a task's batches, prune, optionally rescale -----------------

def score_batches(dataset, collator, batch_size, n_batches, seed, device):
    """The first ``n_batches`` batches of a seeded shuffle of ``dataset`` (on ``device``)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=g).tolist()
    out = []
    for i in range(min(n_batches, (len(order) + batch_size - 1) // batch_size)):
        rows = [dataset[j] for j in order[i * batch_size:(i + 1) * batch_size]]
        out.append({k: v.to(device) for k, v in collator(rows).items()})
    return out


def oneshot_structured(model, fraction, how, batches, normalise="size", rescale=False):
    """Score every head and neuron of ``model`` (:func:`unit_scores`), remove the lowest until
    ``fraction`` of the encoder's weights are pruned (:func:`utils.structured.structured_prune`),
    and with ``rescale`` fold the least-squares scales of the kept units into the weights
    (:func:`rescale_kept_units`). Returns (masks, the score record, the scales or None, seconds
    spent scoring, seconds spent rescaling)."""
    dense = copy.deepcopy(model) if rescale else None
    start = time.perf_counter()
    table, raw = unit_scores(model, current_layout(model), how, batches, normalise)
    masks = structured_prune(model, fraction, table=table)
    scored = time.perf_counter() - start
    record = score_record(table, raw, how, normalise, len(batches) if how in ("taylor", "fisher") else 0,
                          kept_units(masks, model))
    scales, rescaled = None, 0.0
    if rescale:
        start = time.perf_counter()
        scales = rescale_kept_units(model, masks, batches, full=dense)
        rescaled = time.perf_counter() - start
    return masks, record, scales, scored, rescaled


def event_table(args, model, dataset, collator, event):
    """The scored unit table an IMP pruning event ranks by (``--structure_score``), or None for
    ``magnitude`` (the structured pruner's own score). Gradient scores use ``--score_batches``
    batches of a shuffle of the training rows seeded by ``--seed`` and the event, on the weights
    the round just trained. Returns (table or None, the score record or None)."""
    how = getattr(args, "structure_score", "magnitude")
    if how == "magnitude":
        return None, None
    batches = None
    if how in ("taylor", "fisher"):
        batches = score_batches(dataset, collator, args.per_gpu_train_batch_size, args.score_batches,
                                args.seed + 1000 * event, next(model.parameters()).device)
    table, raw = unit_scores(model, current_layout(model), how, batches, args.score_normalise)
    return table, (table, raw, how, args.score_normalise, len(batches or []))


def kept_units(masks, model):
    """Per unit, in :func:`utils.structured.unit_table` order, whether ``masks`` keeps it."""
    layout = layout_from_masks(masks, head_size(model))
    return np.concatenate([np.concatenate([lay["heads"].numpy(), lay["neurons"].numpy()]) for lay in layout])
