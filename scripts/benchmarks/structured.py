"""Figure ``structured``: tickets that run faster, structured masks cut out for real.

For each model shape (by default MiniLM, 6 x 384, and BERT-base, 12 x 768; ``--quick``: the
tiny one), a random-weight ``BertForSequenceClassification`` gets structured masks of whole
attention heads and FFN neurons (``utils.structured.structured_prune``, ``how="magnitude"``)
at 50 % and 70 % encoder sparsity, and ``utils.shrink.shrink_model`` slices a copy of it down
to the kept heads and neurons. The masks rank random-init weights: which units go does not
matter here, only how many, since speed depends on the layer sizes alone (the record says so;
a ticket of trained weights keeps another mix of heads and neurons at the same sparsity, so
its speed-up differs: the per-layer sizes are in the record).

Timed against the dense model, the variants taking turns in rotating order in one process,
median of ``--steps`` after ``--warmup``:

* ``infer``: a forward in eval mode under ``torch.inference_mode`` at ``--batch`` x ``--seq``
  (32 x 128; ``--quick`` 4 x 16), the masked full model (dense speed) timed beside them;
* ``infer1``: the same at batch 1 x ``--seq``;
* ``train``: one real ``utils.train.Trainer`` step (forward, backward, clipping, AdamW,
  schedule) at ``--batch`` x ``--seq``.

One record per shape and sparsity (the dense times are shared by the shape's records):
speed-ups ``infer_ratio``, ``infer1_ratio``, ``train_ratio`` (dense time / shrunk time),
``masked_infer_ratio`` (dense / masked: about 1), ``flops_ratio`` (dense / shrunk FLOPs),
parameters, FLOPs per forward and the heads and neurons kept. Target, on BERT-base at 50 %
only: ``infer_ratio >= 1.5`` at 32 x 128; the other records say ``target: null``.

FLOPs (:func:`encoder_flops`) count the encoder's matmuls, 2 per multiply-add: the Q/K/V and
attention-output projections, the attention scores (Q K^T) and context (A V), and both FFN
matrices. Embeddings, LayerNorms, softmax, GELU, biases, the pooler and the classifier are
left out (together under 1 % of the 715 GFLOP of BERT-base's encoder at 32 x 128).
"""
import copy
import gc

import torch

from scripts.benchmarks.harness import (
    SHAPES,
    base_record,
    build_model,
    interleaved,
    interleaved_times,
    log,
    make_trainer,
    median,
    random_batch,
    rounded,
    shape_dict,
)
from utils.shrink import count_parameters, layer_sizes, shrink_model
from utils.sparsity import sparsity_report
from utils.structured import head_size, structured_prune

SPARSITIES = (50, 70)  # encoder sparsity, percent
TARGET_SHAPE, TARGET_SPARSITY, TARGET_SPEEDUP = "bert-base", 50, 1.5
WEIGHTS_NOTE = ("random-init weights, structured_prune(how='magnitude'): which heads and neurons go does "
                "not change the speed, only how many per layer (heads_per_layer, neurons_per_layer); a "
                "ticket of trained weights keeps another mix of heads and neurons at the same sparsity")
FLOPS_NOTE = ("encoder matmuls, 2 FLOPs per multiply-add: Q/K/V/O projections, attention scores and "
              "context, FFN in and out; embeddings, LayerNorm, softmax, GELU, biases, pooler and "
              "classifier not counted")


def encoder_flops(heads, neurons, hidden, head_size, batch, seq):
    """FLOPs of one encoder forward over ``batch`` x ``seq`` tokens, layer ``l`` keeping
    ``heads[l]`` heads of ``head_size`` and ``neurons[l]`` FFN neurons (see the module doc)."""
    tokens = batch * seq
    total = 0
    for h, n in zip(heads, neurons):
        width = h * head_size  # all_head_size of the layer
        total += 2 * tokens * hidden * width * 4  # query, key, value and attention.output.dense
        total += 2 * batch * h * seq * seq * head_size * 2  # scores Q K^T and context A V
        total += 2 * tokens * hidden * n * 2  # intermediate.dense and output.dense
    return total


def encoder_parameters(model):
    """Parameters of ``model.bert.encoder`` (every layer: projections, FFN, LayerNorms, biases)."""
    return sum(p.numel() for p in model.bert.encoder.parameters())


def forward_fn(model, inputs):
    """One inference forward: eval mode, ``torch.inference_mode``, no labels."""
    model.eval()

    def run():
        with torch.inference_mode():
            model(**inputs)
    return run


def own(variants, name, sp):
    """A record's view of one measurement: dense, this sparsity's shrunk (and masked) model."""
    out = {"dense": variants["dense"], "shrunk": variants[name]}
    if f"masked{sp}" in variants:
        out["masked"] = variants[f"masked{sp}"]
    return out


def target_fields(shape, sparsity, infer_ratio):
    """``target`` and ``meets_target`` of a record: set on BERT-base at 50 % only."""
    if shape != TARGET_SHAPE or sparsity != TARGET_SPARSITY:
        return {"target": None, "meets_target": None}
    return {"target": f"dense / shrunk inference time >= {TARGET_SPEEDUP} at 50 % structured sparsity, "
                      "BERT-base shape, batch 32 x 128",
            "target_speedup": TARGET_SPEEDUP, "meets_target": bool(infer_ratio >= TARGET_SPEEDUP)}


def _prune_and_shrink(dense):
    """Per sparsity: the masked copy, the shrunk model and what it kept (heads, neurons per layer)."""
    masked, shrunk, info = {}, {}, {}
    for sp in SPARSITIES:
        m = copy.deepcopy(dense)
        masks = structured_prune(m, sp / 100, how="magnitude")
        s, _ = shrink_model(copy.deepcopy(m), masks)
        heads, neurons = layer_sizes(s)
        masked[sp], shrunk[sp] = m, s
        sparsity = sparsity_report(masks, prunable_set="no_pooler")["prunable"]["sparsity"]  # the encoder
        info[sp] = {"sparsity": round(sparsity, 3), "heads": heads, "neurons": neurons}
    return masked, shrunk, info


def _time_all(dense, masked, shrunk, batch, opts):
    """Interleaved times of inference (batch and one row) and of a training step, per model."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    one = {k: v[:1] for k, v in inputs.items()}
    names = ["dense", *(f"shrunk{sp}" for sp in SPARSITIES)]
    models = {"dense": dense, **{f"shrunk{sp}": shrunk[sp] for sp in SPARSITIES}}
    fns = {n: forward_fn(models[n], inputs) for n in names}
    fns.update({f"masked{sp}": forward_fn(masked[sp], inputs) for sp in SPARSITIES})
    times = {"infer": interleaved(fns, opts)}
    times["infer1"] = interleaved({n: forward_fn(models[n], one) for n in names}, opts)
    del fns
    masked.clear()
    gc.collect()
    trainers = {n: make_trainer(models[n], batch, opts, opts.batch) for n in names}  # .train()
    times["train"] = interleaved_times(trainers, batch, opts)
    return times


def figure_structured(opts):
    """Records per shape and sparsity (yielded once the shape is measured)."""
    for shape in opts.shapes:
        layers, hidden, n_heads, inter, vocab = SHAPES[shape]
        log(f"structured: {shape}, sparsity {'/'.join(map(str, SPARSITIES))} %, "
            f"batch {opts.batch}x{opts.seq} and 1x{opts.seq}")
        dense = build_model(shape, opts.seed, max(512, opts.seq)).to(opts.device)
        d = head_size(dense)
        masked, shrunk, info = _prune_and_shrink(dense)
        batch = random_batch(opts.batch, opts.seq, vocab, opts.seed, opts.device)
        times = _time_all(dense, masked, shrunk, batch, opts)
        med = {k: {n: median(v) for n, v in t.items()} for k, t in times.items()}
        params = {"dense": count_parameters(dense), "dense_encoder": encoder_parameters(dense)}
        flops_dense = encoder_flops([n_heads] * layers, [inter] * layers, hidden, d, opts.batch, opts.seq)
        for sp in SPARSITIES:
            name, kept = f"shrunk{sp}", info[sp]
            flops_shrunk = encoder_flops(kept["heads"], kept["neurons"], hidden, d, opts.batch, opts.seq)
            pick = {k: own(v, name, sp) for k, v in med.items()}
            infer_ratio = pick["infer"]["dense"] / pick["infer"]["shrunk"]
            yield base_record(
                "structured", opts, model=shape_dict(shape), sparsity_target=sp, sparsity=kept["sparsity"],
                weights=WEIGHTS_NOTE, batch=opts.batch, seq=opts.seq, batch_small=1, steps=opts.steps,
                warmup=opts.warmup, heads_kept=sum(kept["heads"]), heads_total=layers * n_heads,
                neurons_kept=sum(kept["neurons"]), neurons_total=layers * inter,
                heads_per_layer=kept["heads"], neurons_per_layer=kept["neurons"],
                params={**params, "shrunk": count_parameters(shrunk[sp]),
                        "shrunk_encoder": encoder_parameters(shrunk[sp])},
                flops={"batch": opts.batch, "seq": opts.seq, "dense": flops_dense, "shrunk": flops_shrunk,
                       "counted": FLOPS_NOTE},
                flops_ratio=flops_dense / flops_shrunk,
                median_s={k: {n: round(t, 5) for n, t in v.items()} for k, v in pick.items()},
                times_s={k: rounded(own(v, name, sp)) for k, v in times.items()}, infer_ratio=infer_ratio,
                infer1_ratio=pick["infer1"]["dense"] / pick["infer1"]["shrunk"],
                train_ratio=pick["train"]["dense"] / pick["train"]["shrunk"],
                masked_infer_ratio=pick["infer"]["dense"] / pick["infer"]["masked"],
                **target_fields(shape, sp, infer_ratio))
        del shrunk, dense
        gc.collect()
