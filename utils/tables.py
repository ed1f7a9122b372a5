"""The report's tables from classified runs (:mod:`utils.runs`): the full model and every
cell (task, prunable set, method, sparsity, IMP series), Table 2 under the paper's one-std rule
and the strict one, the comparisons with confidence intervals (:mod:`utils.stats`), the curves,
the transfer matrices per prunable set, what a table pools although it differs, wall time.

Matching (the paper's definition): a ticket is *matching* at a sparsity when its score is at
least the full model's mean minus one sample standard deviation over fine-tuning seeds, or at
least the mean (the stricter "match or exceed"). With one dense seed there is no standard
deviation and the first rule falls back to the second (said in the output).
"""
import json
from collections import defaultdict

from utils.profiles import FROM_TICKET, MASK_METHODS
from utils.runs import LABELS, SETTINGS, task_label
from utils.stats import difference, mean_std, verdict


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




def baseline_value(summary, task):
    """The task's trivial baseline (headline metric, percent) from :func:`summarise`'s summary, or None."""
    return (summary["baseline"].get(task) or {}).get("value")


def summarise(finished):
    """Group the finished fine-tunes.

    ``full[task]`` -> scores; ``cells[(task, set, method, level, series)]`` -> scores of a
    task's own masks (``series``: the IMP run's :func:`utils.runs.imp_series` for tickets,
    re-init and shuffled, "" for OMP and random); ``transfer[(source, kind, set, level, target,
    series)]`` -> scores of every ticket, re-init, shuffled or OMP mask on every target (its own
    task included); ``groups`` -> the runs behind ``full`` (key ``(task, "full", None, None,
    None)``) and behind each cell (``(task, method, set, level, series)``); ``scored[task]`` ->
    every fine-tune the task's tables use; ``baseline[task]``, ``metric[task]``."""
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
            groups[(t, "full", None, None, None)].append(r)
            scored[t].append(r)
        elif r["method"] in MASK_METHODS:
            lv, series = level(r["sparsity"]), r.get("series") or ""
            scored[t].append(r)
            if r["method"] in ("random", "omp") or r["source"] == t:  # masks from this task
                cells[(t, r["set"], r["method"], lv, series)].append(r["score"])
                groups[(t, r["method"], r["set"], lv, series)].append(r)
            if r["method"] != "random":  # every ticket-made mask (and OMP) on every target
                src = "omp" if r["method"] == "omp" else r["source"]
                transfer[(src, r["method"], r["set"], lv, t, series)].append(r["score"])
    return {"full": full, "cells": cells, "transfer": transfer, "baseline": baseline, "metric": metric,
            "groups": groups, "scored": scored}


def matches(score, mean, std, strict):
    if score is None or mean is None:
        return False
    return score >= mean if strict or std is None else score >= mean - std


def series_keys(summary):
    """(task, set, series) of every IMP ticket series with a fine-tune."""
    return sorted({(t, s, se) for (t, s, m, _, se) in summary["cells"] if m == "imp"})


def _cell(summary, task, pset, method, lv, series):
    """Scores of one cell; OMP and random masks do not depend on the IMP series."""
    return summary["cells"].get((task, pset, method, lv, series if method in FROM_TICKET else ""), [])


def table2(summary):
    """One row per (task, prunable set, IMP series) with tickets: the highest matching sparsity
    under both rules, whether every lower sparsity tried matches (and the lowest tried), and the
    baselines there."""
    rows = []
    for task, pset, series in series_keys(summary):
        mean, std, n = mean_std(summary["full"].get(task, []))
        levels = sorted({lv for (t, s, m, lv, se) in summary["cells"]
                         if (t, s, m, se) == (task, pset, "imp", series)})
        ticket = {lv: mean_std(_cell(summary, task, pset, "imp", lv, series))[0] for lv in levels}
        row = {"task": task, "set": pset, "series": series, "metric": summary["metric"].get(task),
               "baseline": baseline_value(summary, task),
               "full_mean": mean, "full_std": std, "full_n": n, "levels": levels,
               "lowest": levels[0] if levels else None}
        for rule, strict in (("paper", False), ("strict", True)):
            ok = [lv for lv in levels if matches(ticket[lv], mean, std, strict)]
            best = max(ok) if ok else None
            row[f"{rule}_sparsity"] = best
            row[f"{rule}_all_lower"] = None if best is None else all(lv in ok for lv in levels if lv <= best)
            row[f"{rule}_ticket"] = ticket.get(best) if best is not None else None
        # the baselines at the matching sparsity; with none matching, at the lowest one tried
        at = row["paper_sparsity"] if row["paper_sparsity"] is not None else row["lowest"]
        row["shown_at"] = at
        row["ticket_shown"] = ticket.get(at)
        for m in ("random", "reinit", "omp", "shuffled"):
            row[m] = mean_std(_cell(summary, task, pset, m, at, series) if at is not None else [])
        rows.append(row)
    return rows


def comparisons(summary, overlaps=None):
    """Per (task, set, series) and sparsity with a ticket: every method's mean, std and n, the
    ticket and OMP against the full model and the ticket against OMP (difference of means with
    a 95 % interval and a verdict, :mod:`utils.stats`), the paper's one-std rule beside them, the
    ticket's overlap with OMP (``overlaps``: :func:`utils.overlap.table_overlaps`), and the task's
    metric and trivial baseline."""
    out = []
    for task, pset, series in series_keys(summary):
        full = summary["full"].get(task, [])
        fm, fs, _ = mean_std(full)
        levels = sorted({lv for (t, s, m, lv, se) in summary["cells"]
                         if (t, s, se) in ((task, pset, series), (task, pset, "")) and m != "full"})
        for lv in levels:
            vals = {m: _cell(summary, task, pset, m, lv, series) for m in MASK_METHODS}
            if not vals["imp"]:
                continue
            ticket_dense = difference(vals["imp"], full)
            omp_dense = difference(vals["omp"], full)
            ticket_omp = difference(vals["imp"], vals["omp"])
            ov = (overlaps or {}).get((task, pset, series, lv)) or {}
            out.append({"task": task, "set": pset, "series": series, "sparsity": lv,
                        "metric": summary["metric"].get(task),
                        "baseline": baseline_value(summary, task),
                        "full": mean_std(full), **{m: mean_std(v) for m, v in vals.items()},
                        "paper_rule": matches(mean_std(vals["imp"])[0], fm, fs, False),
                        "ticket_vs_full": ticket_dense, "ticket_verdict": verdict(ticket_dense, "dense"),
                        "omp_vs_full": omp_dense, "omp_verdict": verdict(omp_dense, "dense"),
                        "ticket_vs_omp": ticket_omp, "ticket_omp_verdict": verdict(ticket_omp, "OMP"),
                        "omp_overlap": ov.get("omp"), "random_overlap": 1 - lv / 100})
    return out


def curves(summary):
    """``{(task, set, series): {"levels": [...], "series": {method: {level: (mean, std, n)}}}}``:
    a series' tickets, re-init and shuffled runs beside the task's OMP and random masks."""
    out = {}
    for task, pset, series in series_keys(summary):
        entry = {"levels": set(), "series": defaultdict(dict)}
        for (t, s, m, lv, se), vals in summary["cells"].items():
            if (t, s) == (task, pset) and (se == series if m in FROM_TICKET else True):
                entry["levels"].add(lv)
                entry["series"][m][lv] = mean_std(vals)
        entry["levels"] = sorted(entry["levels"])
        out[(task, pset, series)] = entry
    return out


def source_label(source, kind, series="", several=False):
    """A transfer source's row label: the task (its ticket), "OMP", or the task's re-init or
    shuffled runs; with ``several`` series of that task, the series too."""
    name = "OMP" if kind == "omp" else task_label(source)
    name += {"reinit": " (re-init)", "shuffled": " (shuffled)"}.get(kind, "")
    return name + (f" [{series}]" if several and series else "")


def transfer_matrices(summary, sparsity=70):
    """``{set: (sources, targets, cells)}`` at one sparsity, one matrix per prunable set (masks
    of different sets are never pooled): ``cells[(source label, target)] = (mean, std, n,
    matching)``. Sources and targets are those any run used; a pair with no run is missing."""
    per_set = defaultdict(dict)
    n_series = defaultdict(set)
    for (src, kind, pset, lv, tgt, series) in summary["transfer"]:
        n_series[(src, kind, pset)].add(series)
    for (src, kind, pset, lv, tgt, series), vals in summary["transfer"].items():
        if lv != sparsity:
            continue
        mean, std, n = mean_std(vals)
        fm, fs, _ = mean_std(summary["full"].get(tgt, []))
        label = source_label(src, kind, series, len(n_series[(src, kind, pset)]) > 1)
        per_set[pset][(label, tgt)] = (mean, std, n, matches(mean, fm, fs, False))
    out = {}
    for pset, cells in per_set.items():
        order = lambda s: (s.startswith(("MLM", "OMP")), "(" in s, s)  # noqa: E731
        sources = sorted({s for s, _ in cells}, key=order)
        out[pset] = (sources, sorted({t for _, t in cells}), cells)
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
    for (task, method, pset, lv, _), runs in sorted(summary["groups"].items(), key=lambda kv: str(kv[0])):
        seeds = defaultdict(list)
        for r in runs:
            seeds[r.get("seed")].append(r["path"])
        for seed, paths in sorted(seeds.items(), key=lambda kv: str(kv[0])):
            if len(paths) > 1:
                where = "full model" if method == "full" else f"{LABELS.get(method, method)}, set {pset}, {lv}%"
                notes.append(f"{task_label(task)} {where}: seed {seed} × {len(paths)} ({', '.join(sorted(paths))}); "
                             "its ± is not a spread over seeds")
    return notes




def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def yes_no(v):
    return "—" if v is None else "yes" if v else "no"


def wall_rows(finished):
    """Per task: IMP runs and fine-tunes, each as "n runs, hours", and the total hours (runs
    that ran side by side count each their own time)."""
    def hours(runs):
        return sum(float(r.get("wall_time_s") or 0) for r in runs) / 3600

    rows, every = [], []
    for task in sorted({r["task"] for r in finished}):
        imp = [r for r in finished if r["task"] == task and r["kind"] == "imp"]
        ft = [r for r in finished if r["task"] == task and r["kind"] == "finetune"]  # never an evaluation alone
        every += imp + ft
        rows.append([task_label(task), f"{len(imp)}, {hours(imp):.2f} h", f"{len(ft)}, {hours(ft):.2f} h",
                     f"{hours(imp + ft):.2f} h"])
    if len(rows) > 1:
        rows.append(["all", "", "", f"{hours(every):.2f} h ({len(every)} runs)"])
    return rows
