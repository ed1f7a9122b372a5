"""Figure ``structured_masks``: the speed-up of the structured masks a user chose, on the real
checkpoint they were made for.

``--masks name=MASK.pt,...`` (``mask_scores.json``-producing runs of ``oneshot_structured.py``
or structured IMP tickets) and ``--model DIR`` (the checkpoint, default MiniLM-L6 in
``../shared/data``): each mask is applied to the checkpoint's GLUE model and
``utils.shrink.shrink_model`` slices a copy to the heads and neurons it keeps; the dense model
and every shrunk one take turns (rotating order, one process) in an inference forward at
``--batch`` x ``--seq`` under ``torch.inference_mode``, median of ``--steps`` after
``--warmup``. Unlike figure ``structured`` (random-init weights ranked by magnitude), the speed
here is that of the mix of heads and neurons each criterion really kept.

One record per mask: ``infer_ratio`` (dense median / shrunk median), the medians, the encoder
sparsity, the heads and neurons kept per layer, parameters and encoder FLOPs.
"""
import copy
import gc
from pathlib import Path

from scripts.benchmarks.harness import MINILM_DIR, base_record, interleaved, log, median, random_batch, rounded
from scripts.benchmarks.structured import encoder_flops, forward_fn
from utils.errors import UserError
from utils.models import load_model
from utils.shrink import count_parameters, layer_sizes, shrink_model
from utils.sparsity import load_mask, sparsity_report
from utils.structured import head_size
from utils.structured_record import bench_masks


def parse_masks(text):
    """``name=path,...`` as a dict; a bad entry raises UserError."""
    out = {}
    for item in (x.strip() for x in (text or "").split(",") if x.strip()):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--masks: '{item}' is not name=MASK.pt")
        out[name] = path
    return out


def figure_structured_masks(opts):
    """Records, one per mask of ``opts.masks``."""
    masks = parse_masks(opts.masks)
    if getattr(opts, "masks_from", ""):
        if not Path(opts.masks_from).is_dir():
            raise UserError(f"--masks_from: no folder {opts.masks_from}")
        found = bench_masks(opts.masks_from)
        if not found:
            raise UserError(f"--masks_from: no structured mask used by a finished STS-B fine-tune under {opts.masks_from}")
        masks.update(found)
    if not masks:
        raise UserError("--only structured_masks needs --masks name=MASK.pt,... or --masks_from RUNS_DIR")
    model_dir = opts.model or str(MINILM_DIR)
    dense = load_model("glue", model_dir).to(opts.device)
    cfg = dense.config
    layers, hidden, heads, inter = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size
    d = head_size(dense)
    shrunk, info = {}, {}
    for name, path in masks.items():
        m = load_mask(path, dense)
        small, _ = shrink_model(copy.deepcopy(dense), m, f"--masks {name}")
        kept_heads, kept_neurons = layer_sizes(small)
        shrunk[name] = small
        info[name] = {"path": path, "sparsity": round(sparsity_report(m, prunable_set="no_pooler")["prunable"]["sparsity"], 3),
                      "heads": kept_heads, "neurons": kept_neurons}
    log(f"structured_masks: {', '.join(masks)} on {model_dir}, batch {opts.batch}x{opts.seq}")
    batch = random_batch(opts.batch, opts.seq, cfg.vocab_size, opts.seed, opts.device)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    fns = {"dense": forward_fn(dense, inputs), **{n: forward_fn(s, inputs) for n, s in shrunk.items()}}
    times = interleaved(fns, opts)
    med = {n: median(v) for n, v in times.items()}
    flops_dense = encoder_flops([heads] * layers, [inter] * layers, hidden, d, opts.batch, opts.seq)
    for name, kept in info.items():
        flops = encoder_flops(kept["heads"], kept["neurons"], hidden, d, opts.batch, opts.seq)
        yield base_record("structured_masks", opts, mask=name, mask_path=kept["path"], model=model_dir,
                          sparsity=kept["sparsity"], batch=opts.batch, seq=opts.seq, steps=opts.steps,
                          warmup=opts.warmup, heads_per_layer=kept["heads"], neurons_per_layer=kept["neurons"],
                          params={"dense": count_parameters(dense), "shrunk": count_parameters(shrunk[name])},
                          flops_ratio=flops_dense / flops, median_s={"dense": round(med["dense"], 5),
                                                                     "shrunk": round(med[name], 5)},
                          times_s=rounded({"dense": times["dense"], "shrunk": times[name]}),
                          infer_ratio=med["dense"] / med[name])
    del shrunk, dense
    gc.collect()
