"""The structured records as data, for the docs' tables and figure: the no-retraining masks of
``scripts/structured_nr.sh`` (:func:`seed_cells`) and the structured IMP tickets by score of the
reproduction's folder (:func:`imp_cells`), each with the measured inference speed-up of its
shrunk model (``scripts/bench.py --only structured_masks``, a JSON list beside the record)."""
import json
import re
from pathlib import Path

from utils.figures import plot_speed_score
from utils.io import read_json, write_json
from utils.runs import collect, imp_series
from utils.stats import difference, mean_std, verdict
from utils.tables import level, summarise

ROOT = Path(__file__).resolve().parents[1]
NORM_LABELS = {"size": "per weight", "none": "raw", "layer": "per layer group"}
SCORE = re.compile(r", (\w+) score \((\w+), ")
IMP_BENCH = "bench_structured_imp.json"


def _headline(path):
    """The headline score (percent) of a run's complete.json, or None."""
    rec = json.loads(path.read_text()) if path.is_file() else {}
    return (rec.get("headline") or {}).get("value")


def _bench(path):
    """The bench records of a JSON list (none when the file is missing)."""
    return json.loads(path.read_text()) if path.is_file() else []


def seed_cells(folder):
    """The seeded no-retraining record (scripts/structured_nr.sh) as data: ``(seeds, dense, cells)``
    with ``dense`` {seed: score} and one dict per cell (label, rescaled, rate, ``scores`` {seed:
    Pearson without training}, ``gap`` (mean against each seed's own dense model), ``speed``
    (mean speed-up of the seeds' masks), ``short`` [the short fine-tune's score per seed])."""
    root = ROOT / folder
    speed = {}  # cell -> speed-ups of its seeds' masks
    for r in _bench(root / "bench_masks_seeds.json"):
        speed.setdefault(re.sub(r"_s\d+$", "", Path(r["mask_path"]).parent.name), []).append(r["infer_ratio"])
    seeds = sorted(int(d.name[7:]) for d in root.glob("dense_s*") if (d / "complete.json").is_file())
    dense = {k: _headline(root / f"dense_s{k}" / "complete.json") for k in seeds}
    names = sorted({re.sub(r"_s\d+$", "", d.name) for d in root.glob("*_s[0-9]*")
                    if d.is_dir() and re.search(r"_s\d+$", d.name) and not d.name.startswith("dense")})
    cells = []
    for cell in sorted(names, key=lambda c: (int(c.rsplit("_", 1)[1]), c)):
        score, rescaled, rate = re.match(r"(.+)_r([01])_(\d+)$", cell).groups()
        scores = {}
        for k in seeds:
            res = root / f"{cell}_s{k}" / "results.json"
            scores[k] = 100 * json.loads(res.read_text())["eval"]["pearson"] if res.is_file() else None
        gaps = [scores[k] - dense[k] for k in seeds if scores[k] is not None and dense[k] is not None]
        name, norm = score.rsplit("_", 1)
        cells.append({"label": name if "magnitude" in name else f"{name} ({NORM_LABELS[norm]})",
                      "rescaled": rescaled == "1", "rate": int(rate), "scores": scores,
                      "gap": sum(gaps) / len(gaps) if gaps else None,
                      "speed": sum(speed[cell]) / len(speed[cell]) if speed.get(cell) else None,
                      "short": [_headline(root / f"{cell}_s{k}_ft" / "complete.json") for k in seeds]})
    return seeds, dense, cells


def rewind_cells(folder, nr_folder):
    """The no-retraining masks rewound to the pre-trained weights and fine-tuned like every ticket
    (runs ``nr_<score>_<normalise>_<rate>_s<seed>`` under ``folder``), beside what the same mask
    scored without training on the fine-tuned model it was chosen on (``nr_folder``, the rescaled
    cell where there is one): one dict per cell (label, rate, ``rewound`` {seed: score},
    ``no_training`` {seed: score}, ``rescaled``, ``rewound_10_epochs`` {seed: score or None}: the
    same run fine-tuned 10 epochs, ``epochs10/<run>``)."""
    _, _, cells = seed_cells(nr_folder)
    out = {}
    for d in sorted((ROOT / folder).glob("nr_*_s[0-9]*")):
        m = re.fullmatch(r"nr_(.+)_(\d+)_s(\d+)", d.name)
        score = _headline(d / "complete.json")
        if not m or score is None:
            continue
        name, rate, seed = m.group(1), int(m.group(2)), int(m.group(3))
        score_name, norm = name.rsplit("_", 1)
        label = score_name if "magnitude" in score_name else f"{score_name} ({NORM_LABELS[norm]})"
        nr = next((c for c in sorted(cells, key=lambda c: not c["rescaled"])  # the rescaled cell first
                   if c["label"] == label and c["rate"] == rate), None)
        cell = out.setdefault((label, rate), {"label": label, "rate": rate, "rewound": {}, "no_training": {}, "rewound_10_epochs": {},
                                              "rescaled": bool(nr and nr["rescaled"])})
        cell["rewound"][seed] = score
        cell["rewound_10_epochs"][seed] = _headline(d.parent / "epochs10" / d.name / "complete.json")
        cell["no_training"][seed] = nr["scores"].get(seed) if nr else None
    return [out[k] for k in sorted(out, key=lambda k: (k[1], k[0]))]


def score_label(series):
    """A structured IMP series' score as the tables name it: ``magnitude`` (no score in the
    series), ``fisher (raw)``, ``taylor (per weight)``, ``layer_norm_magnitude``."""
    m = SCORE.search(series or "")
    if not m:
        return "magnitude"
    score, norm = m.groups()
    return score if "magnitude" in score else f"{score} ({NORM_LABELS.get(norm, norm)})"


def _imp_masks(root, task):
    """``(run folder, mask entry)`` of every mask each structured IMP run of ``task`` under
    ``root`` wrote (its ``results.json`` ``masks``)."""
    for res_path in sorted(Path(root).rglob("results.json")):
        res = read_json(res_path) or {}
        if res.get("kind") == "imp" and res.get("structure") == "heads_ffn" and res.get("task") == task:
            for m in res.get("masks", []) or []:
                yield res_path.parent, m


def imp_structures(root, task):
    """``{series: {level: {"run", "heads", "neurons"}}}``: the heads and FFN neurons each
    structured IMP run's masks keep per layer (``mask_sparsity.json`` beside each mask)."""
    out = {}
    for run, m in _imp_masks(root, task):
        st = (read_json((run / m["path"]).with_name("mask_sparsity.json")) or {}).get("structure")
        if st:
            out.setdefault(imp_series(read_json(run / "args.json")), {})[level(m["sparsity"])] = {
                "run": run.name, "heads": st["heads_kept"], "neurons": st["neurons_kept"]}
    return out


def bench_masks(runs_dir, task="sts-b", levels=None):
    """``{name: mask path}`` of every structured IMP ticket (``<IMP run>_<level>``) and random
    structured mask (its folder) under ``runs_dir`` that a fine-tune used, the names
    :func:`imp_cells` reads the bench by (``levels``: only those sparsities)."""
    runs_dir = Path(runs_dir)
    used = {level(r["sparsity"]) for r in collect(runs_dir).finished
            if r.get("set") == "heads_ffn" and r["task"] == task and r.get("sparsity") and r["kind"] == "finetune"}
    used &= set(levels) if levels else used
    out = {}
    for run, m in _imp_masks(runs_dir, task):
        if level(m["sparsity"]) in used and (run / m["path"]).is_file():
            out[f"{run.name}_{level(m['sparsity'])}"] = str(run / m["path"])
    for lv in sorted(used):
        for d in sorted(runs_dir.glob(f"masks/random_heads_ffn_{lv}_s*")):
            if (d / "mask.pt").is_file():
                out[d.name] = str(d / "mask.pt")
    return out



def imp_cells(record, task="sts-b"):
    """The structured IMP tickets of a record, one dict per (score, sparsity): the ticket's and
    random structured pruning's scores (mean, std, n), the ticket against the full model and
    against random pruning (difference with its 95 % interval, verdict), the heads and neurons
    the ticket keeps per layer and the measured speed-up of the ticket's and the random masks'
    shrunk models (``IMP_BENCH``: masks named ``<IMP run>_<level>`` and by their folder).
    Returns ``(full, cells)`` with ``full`` the full model's (mean, std, n)."""
    root = ROOT / record
    summary = summarise(collect(root).finished)
    full = summary["full"].get(task, [])
    speed = {r["mask"]: r["infer_ratio"] for r in _bench(root / IMP_BENCH)}
    structures = imp_structures(root, task)
    cells = []
    series = sorted({se for (t, s, m, _, se) in summary["cells"] if (t, s, m) == (task, "heads_ffn", "imp")})
    for se in series:
        for lv in sorted({lv for (t, s, m, lv, e) in summary["cells"] if (t, s, m, e) == (task, "heads_ffn", "imp", se)}):
            ticket = summary["cells"][(task, "heads_ffn", "imp", lv, se)]
            rnd = summary["cells"].get((task, "heads_ffn", "random", lv, ""), [])
            st = structures.get(se, {}).get(lv, {})
            vs_full, vs_random = difference(ticket, full), difference(ticket, rnd)
            lr = re.search(r"lr ([0-9.e+-]+)", se or "")
            label = score_label(se) + (f", lr {float(lr.group(1)):.0e}".replace("e-0", "e-") if lr else "")
            cells.append({"label": label, "score": score_label(se), "series": se, "rate": lv, "ticket": mean_std(ticket),
                          "random": mean_std(rnd), "vs_full": vs_full, "verdict": verdict(vs_full, "dense"),
                          "vs_random": vs_random, "verdict_random": verdict(vs_random, "random pruning"),
                          "heads": st.get("heads"), "neurons": st.get("neurons"),
                          "speed": speed.get(f"{st.get('run')}_{lv}"),
                          "random_speed": mean_std(v for k, v in speed.items()
                                                   if re.fullmatch(rf"random_heads_ffn_{lv}_s\d+", k))[0]})
    return mean_std(full), cells


def structured_figure(folder, out_dir, imp_record=None, task="sts-b"):
    """``speed_score.png`` in ``out_dir``: each criterion's no-retraining score (mean of the seeds)
    against its measured speed-up at 30, 50 and 70 %, and, from ``imp_record``, each score's
    structured IMP ticket (fine-tuned from θ0 with the mask) and random structured pruning where
    their speed-ups were measured; ``figures.json`` holds the data drawn."""
    seeds, dense, cells = seed_cells(folder)
    series = {}
    for c in cells:
        vals = [v for v in c["scores"].values() if v is not None]
        if c["speed"] and vals:
            label = c["label"] + (" + rescaling" if c["rescaled"] else "") + ", no training"
            series.setdefault(label, []).append((round(c["speed"], 4), round(sum(vals) / len(vals), 4)))
    for c in imp_cells(imp_record, task)[1] if imp_record else []:
        if c["speed"]:
            series.setdefault(f"IMP ticket, {c['label']}, fine-tuned", []).append(
                (round(c["speed"], 4), round(c["ticket"][0], 4)))
        if c["random_speed"] and c["random"][0] is not None:
            pt = (round(c["random_speed"], 4), round(c["random"][0], 4))
            if pt not in series.setdefault("random structured, fine-tuned", []):
                series["random structured, fine-tuned"].append(pt)
    full = [v for v in dense.values() if v is not None]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = plot_speed_score(series, round(sum(full) / len(full), 4), out / "speed_score.png")
    write_json(out / "figures.json", {"speed_score.png": data})
    return data

