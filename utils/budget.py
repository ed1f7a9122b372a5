"""The IMP budget study (scripts/imp_budget.sh, scripts/imp_budget.py): how far each IMP run's
tickets lie from one-shot magnitude pruning (OMP) of the same checkpoint, against how far its
rounds moved the weights.

A round's *learning-rate integral* is the sum of the learning rates of its updates (updates x
mean learning rate): the scale of the change delta that fine-tuning adds to theta0 before the
round's magnitude pruning (each round rewinds to theta0, so the mask is that of theta0 + delta).
The *measured movement* is ||theta_k - theta0|| / ||theta0|| over the weights the round's mask
kept, theta_k being the weights the round trained (``--save_round_weights 1``). *From OMP
toward random* is (1 - overlap) / s at sparsity s: 0 for the OMP mask itself, about 1 for a mask
as unrelated to OMP as an independent random one.
"""
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from utils.io import read_json
from utils.masks import MASK_SUFFIX, in_prunable_set
from utils.overlap import kept_overlap, random_expectation
from utils.sparsity import load_mask


def lr_integral(lr, steps, schedule_steps, warmup=0):
    """Sum of the learning rates of ``steps`` updates of a linear schedule (warm-up ``warmup``
    updates, then linear decay to 0 at ``schedule_steps``), as the trainer applies it: update t
    (0-based) uses lr x (t / warmup) during warm-up, else lr x (T - t) / (T - warmup)."""
    total = 0.0
    for t in range(steps):
        if t < warmup:
            total += lr * t / max(1, warmup)
        else:
            total += lr * max(0.0, (schedule_steps - t) / max(1, schedule_steps - warmup))
    return total


def round_lr_integral(args):
    """One IMP round's learning-rate integral from the run's ``args.json``: rounds of
    ``save_steps`` updates; ``per_round`` schedules span a round, ``whole_run`` ones the run
    (``max_steps``, the trainer's ``t_total``; else the epochs' updates)."""
    s = int(args["save_steps"])
    if args.get("round_schedule") == "per_round":
        return lr_integral(float(args["learning_rate"]), s, s, int(args.get("warmup_steps") or 0))
    t_total = int(args.get("max_steps") or 0)
    if t_total <= 0:
        raise ValueError("whole_run schedule without --max_steps: its length is not in args.json")
    return lr_integral(float(args["learning_rate"]), s, t_total, int(args.get("warmup_steps") or 0))


def _weights(path):
    return load_file(str(path))


def _lookup(state, mask_key):
    """The weight of a mask key in a state dict whose keys may lack the task model's prefix."""
    name = mask_key[: -len(MASK_SUFFIX)] + ".weight"
    if name in state:
        return state[name]
    short = name.split(".", 1)[1]  # bert.encoder... -> encoder...
    return state.get(short)


def movement(trained, theta0, mask, prunable_set):
    """||trained - theta0|| / ||theta0|| over the kept entries of ``mask`` in the prunable set."""
    num = den = 0.0
    for key, m in mask.items():
        if not in_prunable_set(key, prunable_set):
            continue
        a, b = _lookup(trained, key), _lookup(theta0, key)
        if a is None or b is None:
            raise ValueError(f"no weight for {key} in the round's or the checkpoint's weights")
        m = m.to(torch.bool)
        num += float(((a.float() - b.float())[m] ** 2).sum())
        den += float((b.float()[m] ** 2).sum())
    return math.sqrt(num / den) if den else float("nan")


def budget_rows(imp_dir, omp_root, theta0_path=None):
    """One row per pruning event of one IMP run: sparsity, ticket-OMP overlap, the random
    expectation, the in-loop score before the event, the round's learning-rate integral and
    (when the round's weights and ``theta0_path`` are there) its measured movement."""
    imp_dir = Path(imp_dir)
    args = read_json(imp_dir / "args.json")
    res = read_json(imp_dir / "results.json")
    pset = res.get("prunable_set", "paper")
    integral = round_lr_integral(args)
    theta0 = _weights(theta0_path) if theta0_path and Path(theta0_path).is_file() else None
    metric = (res.get("baseline") or {}).get("metric")
    scores = {e["step"]: e.get(metric) for e in res.get("evaluations", [])}
    rows, previous = [], None
    for m in res.get("masks", []):
        level = round(m["sparsity"])
        ticket = load_mask(imp_dir / m["path"])
        omp_path = Path(omp_root) / f"omp_{pset}_{level}" / "mask.pt"
        ov = kept_overlap(ticket, load_mask(omp_path), pset) if omp_path.is_file() else None
        moved = None
        weights = imp_dir / f"checkpoint-{m['step']}" / "model.safetensors"
        if theta0 is not None and weights.is_file():
            in_force = previous if previous is not None else {k: torch.ones_like(v) for k, v in ticket.items()}
            moved = movement(_weights(weights), theta0, in_force, pset)
        score = scores.get(m["step"])
        rows.append({"event": m.get("pruning_event"), "step": m["step"], "sparsity": level,
                     "omp_overlap": ov["share"] if ov else None, "random_overlap": random_expectation(level),
                     "toward_random": (1 - ov["share"]) / (level / 100) if ov and level else None,
                     "score_before": None if score is None else 100.0 * score, "metric": metric,
                     "lr_integral": integral, "movement": moved})
        previous = ticket
    return {"run": str(imp_dir), "learning_rate": float(args["learning_rate"]),
            "round_updates": int(args["save_steps"]), "round_schedule": args.get("round_schedule"),
            "train_rows": args.get("max_train_samples"), "train_subset_seed": args.get("train_subset_seed"),
            "prunable_set": pset, "wall_time_s": res.get("wall_time_s"), "rows": rows}


def budget_table(studies):
    """Markdown: one line per IMP run and sparsity."""
    head = ("| round budget | LR integral per round | sparsity | ticket-OMP overlap | random masks | "
            "from OMP toward random | in-loop score before the event | movement of the round |")
    lines = [head, "|" + "---|" * 8]
    for st in studies:
        budget = f"{st['round_updates']} updates, lr {st['learning_rate']:g}, {st['round_schedule']}"
        for r in st["rows"]:
            ov = "–" if r["omp_overlap"] is None else f"{100 * r['omp_overlap']:.2f} %"
            sc = "–" if r["score_before"] is None else f"{r['score_before']:.1f}"
            mv = "–" if r["movement"] is None else f"{100 * r['movement']:.2f} %"
            tr = "–" if r.get("toward_random") is None else f"{100 * r['toward_random']:.1f} %"
            lines.append(f"| {budget} | {r['lr_integral']:.4f} | {r['sparsity']} % | {ov} | "
                         f"{100 * r['random_overlap']:.0f} % | {tr} | {sc} | {mv} |")
    return "\n".join(lines)
