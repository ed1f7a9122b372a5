"""Figure ``masked_step``: the cost of training with a pruning mask.

Times real ``utils.train.Trainer`` steps (forward, backward, gradient masking, clipping, AdamW,
schedule) of the same random-weight model three ways, taking turns: dense, 50 % masked with the
hook-free masking (``plain``) and 50 % masked with ``torch.nn.utils.prune`` hooks. One record
per model shape, by default MiniLM (6 x 384) and BERT-base (12 x 768); it also reports the time
of the gradient masker on its own. Target: plain-masked / dense median step time <= 1.03.
"""
import copy
import gc
import time

from scripts.benchmarks.harness import (
    SHAPES,
    base_record,
    build_model,
    interleaved_times,
    log,
    make_trainer,
    median,
    paired_ratios,
    random_batch,
    rounded,
    shape_dict,
    synchronize,
)
from utils.magnitude import global_magnitude_prune
from utils.masks import GradientMasker
from utils.sparsity import model_sparsity


def figure_masked_step(opts):
    """One line per shape (yielded as soon as measured): median step times of dense,
    plain-masked and hooks-masked models."""
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


def grad_masker_time(trainer, batch, device, repeats=3):
    """Seconds of the plain masking's only extra work, zeroing the pruned gradients, done as
    one separate pass after backward (median of ``repeats``; the Trainer does it inside
    backward, where it can only be cheaper)."""
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
