"""Figure ``mixed_precision``: autocast training steps against fp32 ones.

Times real ``utils.train.Trainer`` steps of one dense random-weight model of BERT-base's shape
(``--quick``: a 2-layer 64-wide model) in fp32, under bf16 autocast and, on CUDA, under fp16
autocast, the variants taking turns over the same batch. Target: bf16 / fp32 step time < 1,
which needs native bf16 units (AVX512-BF16/AMX on a CPU, or a GPU).
"""
import copy

from scripts.benchmarks.harness import (
    SHAPES,
    base_record,
    build_model,
    interleaved_times,
    log,
    make_trainer,
    median,
    random_batch,
    rounded,
    shape_dict,
)


def figure_mixed_precision(opts):
    """fp32 vs bf16 (and fp16 on CUDA) autocast training steps of the same dense model."""
    shape = "tiny" if opts.quick else "bert-base"
    log(f"mixed_precision: {shape}, batch {opts.batch}x{opts.seq} on {opts.device.type}")
    model = build_model(shape, opts.seed, max(512, opts.seq))
    batch = random_batch(opts.batch, opts.seq, SHAPES[shape][4], opts.seed, opts.device)
    amps = {"fp32": None, "bf16": "bf16"}
    if opts.device.type == "cuda":
        amps["fp16"] = "fp16"
    trainers = {k: make_trainer(copy.deepcopy(model), batch, opts, opts.batch, amp=a)
                for k, a in amps.items()}
    times = interleaved_times(trainers, batch, opts)
    med = {k: median(v) for k, v in times.items()}
    ratios = {f"{k}_ratio": med[k] / med["fp32"] for k in med if k != "fp32"}
    return [base_record(
        "mixed_precision", opts, model=shape_dict(shape), batch=opts.batch, seq=opts.seq,
        steps=opts.steps, warmup=opts.warmup, median_s={k: round(v, 4) for k, v in med.items()},
        times_s=rounded(times), ratio=med["bf16"] / med["fp32"], **ratios,
        target="bf16 / fp32 step time < 1 (needs native bf16 units: AVX512-BF16/AMX or a GPU)",
        meets_target=med["bf16"] < med["fp32"])]
