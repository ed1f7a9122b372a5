"""Turn finished runs into the paper's results: Table 2, the IMP curves and the transfer matrix.

Reads every run under a folder (a run is a folder with ``args.json``) and works out what each
run is from what it wrote, never from folder names: the script, the task, ``--dir``, and the
provenance of the mask and weight file it loaded (``args.json`` ``provenance``, else a record
of the same sha256 found under the folder). Scores are each finished run's final evaluation
(``complete.json`` ``headline``, in percent); a folder without ``complete.json`` is an
unfinished run and is listed, not scored.

Definitions (PAPER_RESULTS.md): a ticket is *matching* at a sparsity when its score is at least
the full model's mean minus one sample standard deviation over fine-tuning seeds (the paper's
rule), or at least the mean (the stricter "match or exceed"). With one dense seed there is no
standard deviation and the first rule falls back to the second (said in the output).

    python report.py runs/glue_small --out figs/small
"""
import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

from utils.errors import UserError
from utils.io import read_json, write_text

METHODS = ("full", "imp", "random", "omp", "reinit", "shuffled")
LABELS = {"full": "full model", "imp": "IMP ticket", "random": "random pruning", "omp": "OMP",
          "reinit": "random re-init", "shuffled": "shuffled weights", "transfer": "transferred ticket"}
METRIC_NAMES = {"mcc": "Matthews", "acc": "acc", "pearson": "Pearson", "f1": "F1"}
TASK_NAMES = {"cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "squad": "SQuAD",
              "mlm": "MLM", "omp": "OMP"}
FINAL_NOTE = "Scores: each run's final evaluation on the dev rows it evaluated, headline metric in percent."


def task_label(task):
    return TASK_NAMES.get(str(task).lower(), str(task))


# --- reading runs ---------------------------------------------------------------------------

def mask_set(record):
    """The set column of a mask's record: its prunable set (``paper``/``no_pooler``), or
    ``heads_ffn`` for a structured mask (whole heads and neurons, the pooler dense)."""
    record = record or {}
    if record.get("structure") == "heads_ffn":
        return "heads_ffn"
    return record.get("prunable_set", "paper")


def find_run_dirs(root):
    """Every folder under ``root`` holding an ``args.json`` (checkpoint folders never do)."""
    return sorted({p.parent for p in Path(root).rglob("args.json")})


def _mask_index(root, run_dirs, args_by_dir, results_by_dir):
    """sha256 -> record, from every provenance sidecar under ``root`` and every IMP run's mask
    list, so a mask copied without its sidecar is still recognised by its bytes."""
    index = {}
    for side in Path(root).rglob("*_provenance.json"):
        rec = read_json(side)
        if isinstance(rec, dict) and rec.get("sha256"):
            index[rec["sha256"]] = rec
    for d in run_dirs:
        res = results_by_dir.get(d) or {}
        for m in res.get("masks", []) or []:
            if m.get("sha256") and m["sha256"] not in index:
                index[m["sha256"]] = {"kind": "imp", "task": res.get("task"), "sparsity": m.get("sparsity"),
                                      "prunable_set": res.get("prunable_set", "paper"),
                                      "structure": res.get("structure", "unstructured"),
                                      "pruning_event": m.get("pruning_event"), "step": m.get("step")}
    return index


# The fine-tuning settings a score depends on. Scores that one task's tables put side by side
# (the full model's seeds, the cells, the ticket against the full model) should share them.
SETTINGS = ("model", "learning_rate", "num_train_epochs", "max_steps", "max_train_samples", "train_subset_seed",
            "max_eval_samples",
            "max_seq_length", "global_batch", "amp_dtype", "weight_decay", "warmup_steps")


def settings_of(args):
    """The run's values of ``SETTINGS``; ``model`` is the checkpoint's weights hash (its path
    when the run recorded no hash; None for a random re-init, which is compared on the rest),
    ``global_batch`` per-process batch x processes x accumulation."""
    ckpt = (args.get("provenance") or {}).get("checkpoint") or {}
    out = {k: args.get(k) for k in SETTINGS}
    out["model"] = (ckpt.get("weights_sha256") or "")[:12] or args.get("model_name_or_path")
    if args.get("dir") == "rand" or ckpt.get("init") == "rand":
        out["model"] = None  # random re-init: no pre-trained weights to compare
    try:
        out["global_batch"] = (int(args["per_gpu_train_batch_size"]) * int(args.get("world_size") or 1)
                               * int(args.get("gradient_accumulation_steps") or 1))
    except (KeyError, TypeError, ValueError):
        out["global_batch"] = None
    return out


def pooling_notes(summary):
    """Lines naming what one task's tables pool although it differs: a setting with several
    values among the task's fine-tunes, and a seed repeated within the full model or a cell
    (its ± is then not a spread over seeds). ``summary``: :func:`summarise`'s."""
    notes = []
    for task, runs in sorted(summary["scored"].items()):
        for key in SETTINGS:
            values = {}  # JSON text of the value -> (value, run paths)
            for r in runs:
                value = (r.get("settings") or {}).get(key)
                if key == "model" and value is None:
                    continue
                values.setdefault(json.dumps(value), (value, []))[1].append(r["path"])
            if len(values) > 1:
                parts = []
                for value, paths in sorted(values.values(), key=lambda vp: -len(vp[1])):
                    shown = ", ".join(sorted(paths)[:3]) + (", …" if len(paths) > 3 else "")
                    parts.append(f"{value} ({len(paths)}: {shown})")
                notes.append(f"{task_label(task)}: {key} differs: " + "; ".join(parts))
    for (task, method, pset, lv), runs in sorted(summary["groups"].items(), key=lambda kv: str(kv[0])):
        seeds = defaultdict(list)
        for r in runs:
            seeds[r.get("seed")].append(r["path"])
        for seed, paths in sorted(seeds.items(), key=lambda kv: str(kv[0])):
            if len(paths) > 1:
                where = "full model" if method == "full" else f"{LABELS.get(method, method)}, set {pset}, {lv}%"
                notes.append(f"{task_label(task)} {where}: seed {seed} × {len(paths)} ({', '.join(sorted(paths))}); "
                             "its ± is not a spread over seeds")
    return notes


def classify(args, results, complete, mask_index=None):
    """What one run is: a dict with ``kind`` (``imp`` search or ``finetune``), ``task``,
    ``method`` (full | imp | random | omp | reinit | shuffled | other), ``source`` (the task
    that made the mask, or ``omp``/``random``), ``set`` (prunable set), ``sparsity``, ``seed``,
    ``score`` (None when unfinished) and ``baseline``."""
    results = results or {}
    complete = complete or {}
    task = str(results.get("task") or complete.get("task") or args.get("task_name") or "?").lower()
    kind = results.get("kind") or complete.get("kind")
    if kind is None:
        kind = "imp" if str(args.get("script", "")).startswith("LT_") or "(IMP)" in str(args.get("script", "")) else "finetune"
    run = {"task": task, "kind": kind, "script": args.get("script"), "seed": args.get("seed"),
           "finished": bool(complete), "score": None, "metric": None,
           "baseline": complete.get("baseline") or results.get("baseline"), "settings": settings_of(args),
           "wall_time_s": complete.get("wall_time_s")}
    head = complete.get("headline")
    if head:
        run["score"], run["metric"] = head.get("value"), head.get("metric")
        if run["score"] is not None and math.isnan(run["score"]):
            # a constant prediction: Pearson/Matthews undefined, counted 0 like the trivial baseline
            run["score"], run["undefined"] = 0.0, True
    if kind == "imp":
        run.update(method="imp_search", source=task, set=mask_set({**args, **results}),
                   sparsity=None, evaluations=results.get("evaluations", []))
        return run
    prov = args.get("provenance") or {}
    mask, pert = prov.get("mask"), prov.get("weight_pertub")
    init = args.get("dir") or "pre"
    record = None
    if mask:
        record = mask.get("record") or (mask_index or {}).get(mask.get("sha256"))
    if not mask:
        method = "full" if init == "pre" and not pert else "other"
        run.update(method=method, source=None, set=None, sparsity=0.0)
        return run
    if record is None:
        run.update(method="other", source="unknown mask", set=None,
                   sparsity=results.get("initial_sparsity"), note=f"no record for mask {mask.get('path')}")
        return run
    mkind = record.get("kind")
    source = record.get("task") if mkind == "imp" else mkind
    if mkind == "imp":
        method = "shuffled" if pert else "reinit" if init == "rand" else "imp"
    elif mkind in ("omp", "random") and init == "pre" and not pert:
        method = mkind
    else:
        method = "other"
    run.update(method=method, source=str(source).lower() if source else None,
               set=mask_set(record), sparsity=record.get("sparsity"),
               structure=record.get("structure", "unstructured"))
    return run


def collect(root):
    """(finished runs, unfinished runs) under ``root``; raises UserError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder of runs")
    dirs = find_run_dirs(root)
    if not dirs:
        raise UserError(f"{root}: no runs found (no args.json in it or below)")
    args_by, res_by, done_by = {}, {}, {}
    for d in dirs:
        args_by[d], res_by[d], done_by[d] = read_json(d / "args.json"), read_json(d / "results.json"), read_json(d / "complete.json")
    index = _mask_index(root, dirs, args_by, res_by)
    finished, unfinished = [], []
    for d in dirs:
        if not isinstance(args_by[d], dict):
            unfinished.append({"path": str(d.relative_to(root)), "why": "args.json unreadable"})
            continue
        run = classify(args_by[d], res_by[d], done_by[d], index)
        run["path"] = str(d.relative_to(root)) if d != root else "."
        if run["finished"]:
            finished.append(run)
        else:
            steps = (res_by[d] or {}).get("global_step")
            unfinished.append({"path": run["path"], "why": f"{run['script']} on {task_label(run['task'])}, "
                               f"no complete.json (last step {steps if steps is not None else '?'})"})
    return finished, unfinished


# --- statistics -------------------------------------------------------------------------------

def mean_std(values):
    """(mean, sample std or None when n < 2, n)."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return None, None, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return mean, std, n


def level(sparsity):
    """Sparsity level in whole percent (masks at 49.9999 % and 50.0001 % are one level)."""
    return None if sparsity is None else int(round(float(sparsity)))


def fmt(mean, std=None, n=None, show_n=False):
    if mean is None:
        return "—"
    s = f"{mean:.1f}"
    if std is not None:
        s += f" ± {std:.1f}"
    if show_n and n is not None and n > 1:
        s += f" (n={n})"
    return s


def summarise(finished):
    """Group scores: ``full[task]`` -> list; ``cells[(task, set, method, level)]`` -> list;
    ``transfer[(source, set, level, target)]`` -> list; ``baseline[task]``; ``metric[task]``;
    ``groups[(task, method, set, level)]`` -> the runs behind ``full`` (set and level None)
    and ``cells``; ``scored[task]`` -> every fine-tune the task's tables use (transfer too)."""
    full, cells, transfer, baseline, metric = defaultdict(list), defaultdict(list), defaultdict(list), {}, {}
    groups, scored = defaultdict(list), defaultdict(list)
    for r in finished:
        t = r["task"]
        if r.get("baseline") and t not in baseline:
            baseline[t] = r["baseline"]
        if r.get("metric"):
            metric.setdefault(t, r["metric"])
        if r["kind"] != "finetune" or r["score"] is None:
            continue
        if r["method"] == "full":
            full[t].append(r["score"])
            groups[(t, "full", None, None)].append(r)
            scored[t].append(r)
        elif r["method"] in ("imp", "random", "omp", "reinit", "shuffled"):
            lv = level(r["sparsity"])
            scored[t].append(r)
            own = r["method"] in ("random", "omp") or r["source"] == t  # masks from this task
            if own:
                cells[(t, r["set"], r["method"], lv)].append(r["score"])
                groups[(t, r["method"], r["set"], lv)].append(r)
            if r["method"] in ("imp", "omp"):  # every ticket (and OMP) on every target
                src = "omp" if r["method"] == "omp" else r["source"]
                transfer[(src, r["set"], lv, t)].append(r["score"])
    return {"full": full, "cells": cells, "transfer": transfer, "baseline": baseline, "metric": metric,
            "groups": groups, "scored": scored}


def matches(score, mean, std, strict):
    if score is None or mean is None:
        return False
    return score >= mean if strict or std is None else score >= mean - std


def table2(summary):
    """One row per (task, prunable set) with IMP tickets: the highest matching sparsity under
    both rules and the baselines there."""
    rows = []
    keys = sorted({(t, s) for (t, s, m, _) in summary["cells"] if m == "imp"})
    for task, pset in keys:
        mean, std, n = mean_std(summary["full"].get(task, []))
        levels = sorted({lv for (t, s, m, lv) in summary["cells"] if t == task and s == pset and m == "imp"})
        ticket = {lv: mean_std(summary["cells"][(task, pset, "imp", lv)])[0] for lv in levels}
        row = {"task": task, "set": pset, "metric": summary["metric"].get(task),
               "baseline": (summary["baseline"].get(task) or {}).get("value"),
               "full_mean": mean, "full_std": std, "full_n": n, "levels": levels}
        for rule, strict in (("paper", False), ("strict", True)):
            ok = [lv for lv in levels if matches(ticket[lv], mean, std, strict)]
            best = max(ok) if ok else None
            row[f"{rule}_sparsity"] = best
            row[f"{rule}_all_lower"] = None if best is None else all(lv in ok for lv in levels if lv <= best)
            row[f"{rule}_ticket"] = ticket.get(best) if best is not None else None
        # the baselines at the matching sparsity; with none matching, at the lowest one tried
        at = row["paper_sparsity"] if row["paper_sparsity"] is not None else (levels[0] if levels else None)
        row["shown_at"] = at
        row["ticket_shown"] = ticket.get(at)
        for m in ("random", "reinit", "omp", "shuffled"):
            vals = summary["cells"].get((task, pset, m, at), []) if at is not None else []
            row[m] = mean_std(vals)
        rows.append(row)
    return rows


def curves(summary):
    """``{(task, set): {"levels": [...], "series": {method: {level: (mean, std, n)}}}}``."""
    out = {}
    for (t, s, m, lv), vals in summary["cells"].items():
        entry = out.setdefault((t, s), {"levels": set(), "series": defaultdict(dict)})
        entry["levels"].add(lv)
        entry["series"][m][lv] = mean_std(vals)
    for entry in out.values():
        entry["levels"] = sorted(entry["levels"])
    return out


def transfer_matrix(summary, sparsity=70, prunable_set=None):
    """``(sources, targets, cells)`` at one sparsity: cells[(source, target)] = (mean, std, n,
    matching). Sources and targets are those any run used; a pair with no run is missing."""
    cells = {}
    for (src, pset, lv, tgt), vals in summary["transfer"].items():
        if lv != sparsity or (prunable_set and pset != prunable_set):
            continue
        mean, std, n = mean_std(vals)
        fm, fs, _ = mean_std(summary["full"].get(tgt, []))
        cells[(src, tgt)] = (mean, std, n, matches(mean, fm, fs, False))
    sources = sorted({s for s, _ in cells}, key=lambda s: (s in ("mlm", "omp", "random"), s))
    targets = sorted({t for _, t in cells})
    return sources, targets, cells


# --- rendering ----------------------------------------------------------------------------------

def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _yes_no(v):
    return "—" if v is None else "yes" if v else "no"


def _metric_label(task, metric):
    return f"{task_label(task)} ({METRIC_NAMES.get(metric, metric or '?')})"


def render(finished, unfinished, transfer_sparsity=70):
    """The whole report as Markdown, and the CSV tables as {name: rows}."""
    summary = summarise(finished)
    t2 = table2(summary)
    out = [f"# Lottery-ticket report ({len(finished)} finished runs, {len(unfinished)} unfinished)", "",
           FINAL_NOTE, "Matching (paper): ticket ≥ full mean − 1 sample std; strict: ticket ≥ full mean. "
           "Sparsity over the prunable set named in `set` (`heads_ffn`: structured masks of whole "
           "attention heads and FFN neurons, sparsity over the encoder, the pooler dense).", ""]
    header = ["task (metric)", "set", "trivial baseline", "full model (n)", "matching sparsity",
              "all lower match", "IMP ticket", "random pruning", "random re-init", "OMP", "shuffled",
              "strict sparsity", "ticket (strict)"]
    rows, csv_t2 = [], []
    for r in t2:
        n_note = f" (n={r['full_n']})" if r["full_n"] else ""
        sp = f"{r['paper_sparsity']}%" if r["paper_sparsity"] is not None else "none"
        st = f"{r['strict_sparsity']}%" if r["strict_sparsity"] is not None else "none"
        at = "" if r["paper_sparsity"] is not None or r["shown_at"] is None else f"at {r['shown_at']}%: "
        rows.append([_metric_label(r["task"], r["metric"]), r["set"], fmt(r["baseline"]),
                     fmt(r["full_mean"], r["full_std"]) + n_note, sp, _yes_no(r["paper_all_lower"]),
                     at + fmt(r["ticket_shown"]),
                     *((at if r[m][0] is not None else "") + fmt(*r[m]) for m in ("random", "reinit", "omp", "shuffled")),
                     st, fmt(r["strict_ticket"])])
        csv_t2.append({"task": r["task"], "metric": r["metric"], "set": r["set"], "baseline": r["baseline"],
                       "full_mean": r["full_mean"], "full_std": r["full_std"], "full_n": r["full_n"],
                       "matching_sparsity": r["paper_sparsity"], "all_lower_match": r["paper_all_lower"],
                       "scores_at": r["shown_at"], "ticket": r["ticket_shown"],
                       **{m: r[m][0] for m in ("random", "reinit", "omp", "shuffled")},
                       "strict_sparsity": r["strict_sparsity"], "strict_ticket": r["strict_ticket"]})
    out += ["## Table 2: highest sparsity with a matching IMP ticket", "",
            "The scores are at the matching sparsity; where no sparsity matches, at the lowest one tried (\"at N%\").", ""]
    out.append(_md_table(header, rows) if rows else "(no IMP-ticket fine-tunes yet)")
    if any(r["full_n"] == 1 for r in t2):
        out += ["", "n=1: one dense seed, no standard deviation; the paper's rule falls back to ≥ mean."]
    if any(r["full_n"] == 0 for r in t2):
        out += ["", "A task without a finished dense run has no matching sparsity (missing: full model)."]
    constant = sorted(r["path"] for r in finished if r.get("undefined"))
    if constant:
        out += ["", f"{len(constant)} run(s) predicted a constant on every dev row (the metric is undefined "
                "there; counted 0, as the trivial baseline): " + ", ".join(constant) + "."]

    pooled = pooling_notes(summary)
    if pooled:
        out += ["", "Pooled although they differ (their scores are not comparable as they stand):", ""]
        out += [f"- {n}" for n in pooled]

    # IMP curves
    cv = curves(summary)
    csv_curves, missing = [], []
    out += ["", "## Score against sparsity (fixed-mask fine-tunes; mean ± std over seeds)", ""]
    for (task, pset), entry in sorted(cv.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        methods = [m for m in METHODS if m in entry["series"]]
        fm, fs, fn = mean_std(summary["full"].get(task, []))
        base = (summary["baseline"].get(task) or {}).get("value")
        out += [f"### {_metric_label(task, summary['metric'].get(task))}, set {pset}: full model "
                f"{fmt(fm, fs)} (n={fn}), trivial baseline {fmt(base)}", ""]
        crow = []
        for lv in entry["levels"]:
            cells = []
            for m in methods:
                val = entry["series"][m].get(lv)
                cells.append(fmt(*val, show_n=True) if val else "missing")
                if val is None:
                    missing.append(f"{task_label(task)} {pset} {lv}%: {LABELS[m]}")
                csv_curves.append({"task": task, "set": pset, "sparsity": lv, "method": m,
                                   "mean": val[0] if val else None, "std": val[1] if val else None,
                                   "n": val[2] if val else 0})
            crow.append([f"{lv}%", *cells])
        out.append(_md_table(["sparsity", *(LABELS[m] for m in methods)], crow))
        out.append("")
    if not cv:
        out += ["(no fixed-mask fine-tunes yet)", ""]

    # transfer matrix
    sources, targets, tcells = transfer_matrix(summary, transfer_sparsity)
    csv_transfer = []
    out += [f"## Transfer: source mask at {transfer_sparsity}% × target task (* matching the target's full model)", ""]
    if sources and any(s != t for s in sources for t in targets if (s, t) in tcells):
        trows = []
        for s in sources:
            row = [task_label(s) if s not in ("omp",) else "OMP"]
            for t in targets:
                c = tcells.get((s, t))
                if c is None:
                    row.append("missing")
                    missing.append(f"transfer {task_label(s)} → {task_label(t)}")
                else:
                    row.append(fmt(c[0], c[1]) + (" *" if c[3] else ""))
                    csv_transfer.append({"source": s, "target": t, "mean": c[0], "std": c[1], "n": c[2],
                                         "matching": c[3]})
            trows.append(row)
        out.append(_md_table(["source \\ target", *(task_label(t) for t in targets)], trows))
    else:
        out.append("(no transfer runs: no mask fine-tuned on a task other than its own)")
    out += ["", "## Wall time (each finished run's own `wall_time_s`)", ""]
    out.append(_md_table(["task", "IMP runs", "fine-tunes", "total"], wall_rows(finished)) if finished else "(none)")
    out += ["", "## Missing cells", ""]
    out += [f"- {m}" for m in missing] or ["(none)"]
    out += ["", "## Unfinished runs", ""]
    out += [f"- {u['path']}: {u['why']}" for u in unfinished] or ["(none)"]
    return "\n".join(out) + "\n", {"table2": csv_t2, "curves": csv_curves, "transfer": csv_transfer}, summary


def wall_rows(finished):
    """Per task: IMP runs and fine-tunes, each as "n runs, hours", and the total hours (runs
    that ran side by side count each their own time)."""
    def hours(runs):
        return sum(float(r.get("wall_time_s") or 0) for r in runs) / 3600

    rows, every = [], []
    for task in sorted({r["task"] for r in finished}):
        imp = [r for r in finished if r["task"] == task and r["kind"] == "imp"]
        ft = [r for r in finished if r["task"] == task and r["kind"] != "imp"]
        every += imp + ft
        rows.append([task_label(task), f"{len(imp)}, {hours(imp):.2f} h", f"{len(ft)}, {hours(ft):.2f} h",
                     f"{hours(imp + ft):.2f} h"])
    if len(rows) > 1:
        rows.append(["all", "", "", f"{hours(every):.2f} h ({len(every)} runs)"])
    return rows


def csv_text(rows):
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_report(root, out_dir=None, figures=True, transfer_sparsity=70, bench=None):
    """Collect, render, write ``report.md`` and the CSVs (and figures) to ``out_dir``; returns
    (markdown, csv rows, list of figure files). ``bench``: a ``scripts/bench.py`` output file,
    whose structured speed-ups are appended (:func:`structured_speed`)."""
    finished, unfinished = collect(root)
    text, tables, summary = render(finished, unfinished, transfer_sparsity)
    if bench is not None:
        section, tables["structured_speed"] = structured_speed(read_bench(bench))
        text += "\n" + section
    written = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_text(out_dir / "report.md", text)
        for name, rows in tables.items():
            write_text(out_dir / f"{name}.csv", csv_text(rows))
        if figures:
            from utils.figures import write_figures

            written = write_figures(summary, out_dir, transfer_sparsity)
    return text, tables, written


# --- benchmark: structured speed-ups (scripts/bench.py --only structured --json_out FILE) ----

STRUCTURED_FIELDS = (
    "shape", "layers", "hidden", "sparsity_target", "sparsity", "heads_kept", "heads_total", "neurons_kept",
    "neurons_total", "params_dense", "params_shrunk", "encoder_params_dense", "encoder_params_shrunk",
    "flops_dense", "flops_shrunk", "flops_ratio", "batch", "seq", "infer_ratio", "infer1_ratio", "train_ratio",
    "masked_infer_ratio", "infer_dense_s", "infer_shrunk_s", "infer1_dense_s", "infer1_shrunk_s", "train_dense_s",
    "train_shrunk_s", "steps", "meets_target", "quick", "cpu", "device", "torch", "torch_threads", "loadavg_1m")


def read_bench(path):
    """The records of a ``scripts/bench.py`` output file: its ``--json_out`` (one JSON list) or
    its stdout (one JSON object per line). Unreadable or other content raises UserError."""
    import json

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--bench {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        records = json.loads(text)
    except ValueError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            records = None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) and "figure" in r for r in records):
        raise UserError(f"--bench {path}: not benchmark records (a JSON list from bench.py --json_out, "
                        "or bench.py's JSON lines)")
    return records


def _times(x):
    return "—" if x is None else f"{x:.2f}×"


def _size(n, unit=""):
    """1.2M / 3.4k (``unit`` after it: GFLOP, MFLOP...)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale or scale == 1e3:
            return f"{n / scale:.1f} {prefix}{unit}" if unit else f"{n / scale:.1f}{prefix}"


def _machine_line(recs):
    """One line per machine the records come from (the load as a range)."""
    lines = {}
    for r in recs:
        m = r.get("machine") or {}
        key = (f"{m.get('cpu', '?')}, {m.get('cpus_usable') or m.get('cpu_count', '?')} CPUs usable, "
               f"torch {m.get('torch', '?')} with {m.get('torch_threads', '?')} thread(s), {m.get('device', '?')}"
               + (f" ({m['gpu']})" if m.get("gpu") else "") + (", --quick (not meaningful)" if r.get("quick") else ""))
        if m.get("loadavg_1m") is not None:
            lines.setdefault(key, []).append(m["loadavg_1m"])
        else:
            lines.setdefault(key, [])
    return [f"Machine: {k}" + ("" if not v else f", load {v[0]}" if min(v) == max(v) else f", load {min(v)}–{max(v)}")
            + "." for k, v in lines.items()]


def structured_speed(records):
    """The "Structured speed-ups" Markdown section and its CSV rows (``structured_speed.csv``)
    from the benchmark records of figure ``structured`` (other figures are ignored)."""
    recs = [r for r in records if r.get("figure") == "structured"]
    out = ["## Structured speed-ups", ""]
    if not recs:
        return "\n".join(out + ["(no `structured` figure in the benchmark file)"]) + "\n", []
    sizes = {(r.get("batch"), r.get("seq")) for r in recs}
    one = len(sizes) == 1
    b, s = next(iter(sizes)) if one else ("B", "S")
    header = ["shape", "encoder sparsity", "heads kept", "FFN neurons kept", "params dense → shrunk (encoder)",
              "FLOPs dense / shrunk", f"inference {b}×{s}", f"inference 1×{s}", f"train step {b}×{s}",
              f"masked, inference {b}×{s}", "target"]
    rows, csv_rows = [], []
    for i, r in enumerate(recs):
        try:
            _structured_row(r, one, rows, csv_rows)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"--bench: structured record {i + 1} is incomplete ({type(err).__name__}: {err}); "
                            "rerun scripts/bench.py --only structured") from None
    out += ["Speed-ups: dense time / shrunk time (medians of each variant's timed steps, the variants taking "
            "turns in one process); inference in eval mode under `torch.inference_mode`, the train step a "
            "forward, backward and AdamW step; the masked full model beside them (dense speed expected). "
            "FLOPs per forward at the inference batch: "
            + str((recs[0].get("flops") or {}).get("counted", "encoder matmuls")) + ".",
            "", _md_table(header, rows), ""]
    return "\n".join(out + _machine_line(recs)) + "\n", csv_rows


def _structured_row(r, one, rows, csv_rows):
    """Append one structured record's table row and CSV row."""
    model, p, f, med = r["model"], r["params"], r["flops"], r["median_s"]
    at = "" if one else f" ({r['batch']}×{r['seq']})"
    target = ("—" if r.get("target") is None
              else f"≥ {r.get('target_speedup', 1.5)}×: {_yes_no(r.get('meets_target'))}")
    rows.append([f"{model['name']} ({model['layers']}×{model['hidden']})", f"{r['sparsity']:.1f}%",
                 f"{r['heads_kept']}/{r['heads_total']}", f"{r['neurons_kept']}/{r['neurons_total']}",
                 f"{_size(p['dense'])} → {_size(p['shrunk'])} ({_size(p['dense_encoder'])} → "
                 f"{_size(p['shrunk_encoder'])})",
                 f"{_times(r['flops_ratio'])} ({_size(f['dense'], 'FLOP')} → {_size(f['shrunk'], 'FLOP')})",
                 f"**{_times(r['infer_ratio'])}**{at}", _times(r["infer1_ratio"]), _times(r["train_ratio"]) + at,
                 _times(r.get("masked_infer_ratio")), target])
    m = r.get("machine") or {}
    csv_rows.append(dict(zip(STRUCTURED_FIELDS, (
        model["name"], model["layers"], model["hidden"], r["sparsity_target"], r["sparsity"], r["heads_kept"],
        r["heads_total"], r["neurons_kept"], r["neurons_total"], p["dense"], p["shrunk"], p["dense_encoder"],
        p["shrunk_encoder"], f["dense"], f["shrunk"], r["flops_ratio"], r["batch"], r["seq"], r["infer_ratio"],
        r["infer1_ratio"], r["train_ratio"], r.get("masked_infer_ratio"), med["infer"]["dense"],
        med["infer"]["shrunk"], med["infer1"]["dense"], med["infer1"]["shrunk"], med["train"]["dense"],
        med["train"]["shrunk"], r.get("steps"), r.get("meets_target"), r.get("quick"), m.get("cpu"),
        m.get("device"), m.get("torch"), m.get("torch_threads"), m.get("loadavg_1m")))))


SLIM_FILES = ("args.json", "results.json", "complete.json", "mask_provenance.json", "mask_sparsity.json",
              "shuffle_weight_provenance.json")


def slim_copy(src, dst, mask_levels=()):
    """Copy the slim record of every run under ``src`` to ``dst`` (same relative layout): the
    JSON files that say what each run is and what it scored, and the provenance and sparsity
    reports of masks; no weights or logs. ``mask_levels`` (sparsities in percent): also the IMP
    tickets at those sparsities, gzipped beside their records (``mask.pt.gz``, about 1/8 of the
    bool file), so fine-tunes still to run need no new IMP run on another machine
    (``scripts/reproduce_small.sh`` unpacks them). Returns the number of files copied."""
    import gzip
    import shutil

    from utils.io import atomic_write

    src, dst = Path(src), Path(dst)
    n = 0
    for path in sorted(src.rglob("*.json")):
        if path.name in SLIM_FILES or path.name.endswith("_provenance.json"):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += 1
    levels = {int(v) for v in mask_levels}
    for results in sorted(src.rglob("results.json")) if levels else []:
        for m in (read_json(results) or {}).get("masks", []) or []:
            mask = results.parent / str(m.get("path", ""))
            if level(m.get("sparsity")) in levels and mask.is_file():
                target = dst / mask.relative_to(src)
                gz = target.with_name(target.name + ".gz")

                def write(tmp, mask=mask):  # no name or time in the header: same mask, same bytes
                    with open(mask, "rb") as f_in, open(tmp, "wb") as raw, \
                            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f_out:
                        shutil.copyfileobj(f_in, f_out)
                atomic_write(gz, write)
                n += 1
    return n
