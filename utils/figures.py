"""Figures of a report (matplotlib, written as small PNGs): score against sparsity per task and
prunable set, one line per method, the full model's mean ± std as a band and the trivial
baseline as a dashed line; and the transfer heatmap.

Each function returns the data it plotted (``{series label: [(x, y), ...]}``), so tests check
what is drawn rather than pixels.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import re

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np

from utils.io import atomic_write, write_json  # noqa: E402
from utils.profiles import METHODS  # noqa: E402
from utils.runs import LABELS, task_label  # noqa: E402
from utils.stats import mean_std  # noqa: E402
from utils.tables import baseline_value, curves, transfer_matrices  # noqa: E402

STYLE = {"imp": ("C0", "o", "-"), "random": ("C3", "s", "--"), "omp": ("C2", "^", "-."),
         "reinit": ("C1", "v", ":"), "shuffled": ("C4", "D", "--")}


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)


def plot_curve(summary, task, pset, entry, path, series=""):
    """Score vs sparsity for one task, prunable set and IMP series; returns the plotted series."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    data = {}
    fm, fs, fn = mean_std(summary["full"].get(task, []))
    levels = entry["levels"]
    if fm is not None:
        lo, hi = (fm - fs, fm + fs) if fs is not None else (fm, fm)
        ax.axhspan(lo, hi, color="0.85", label=f"full model ± std (n={fn})")
        ax.axhline(fm, color="0.4", lw=1)
        data["full model"] = [(lv, fm) for lv in levels]
    base = baseline_value(summary, task)
    if base is not None:
        ax.axhline(base, color="k", ls="--", lw=1, label="trivial baseline")
        data["trivial baseline"] = [(lv, base) for lv in levels]
    for m in METHODS:
        pts = sorted((lv, v) for lv, v in entry["series"].get(m, {}).items() if v[0] is not None)
        if not pts:
            continue
        color, marker, ls = STYLE.get(m, ("C7", "x", "-"))
        xs, ys = [p[0] for p in pts], [p[1][0] for p in pts]
        errs = [p[1][1] or 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=errs, color=color, marker=marker, ls=ls, capsize=3, label=LABELS[m])
        data[LABELS[m]] = list(zip(xs, ys))
    ax.set_xticks(levels)
    metric = summary["metric"].get(task, "score")
    ax.set_xlabel(f"sparsity of the prunable set, % (set: {pset})")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{task_label(task)}: fixed-mask fine-tuning" + (f"\nIMP {series}" if series else ""),
                 fontsize=9 if series else None)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return data


def plot_transfer(sources, targets, cells, sparsity, path):
    """Heatmap of source mask × target task scores; returns ``{source: [(target, score)]}``."""
    grid = np.full((len(sources), len(targets)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            if (s, t) in cells:
                grid[i, j] = cells[(s, t)][0]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(targets), 1.0 + 0.6 * len(sources)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            c = cells.get((s, t))
            text = "missing" if c is None else f"{c[0]:.1f}{'*' if c[3] else ''}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="0.4" if c is None else "w")
    ax.set_xticks(range(len(targets)), [task_label(t) for t in targets])
    ax.set_yticks(range(len(sources)), sources)
    ax.set_xlabel("target task")
    ax.set_ylabel(f"source mask ({sparsity}%)")
    fig.colorbar(im, ax=ax, label="score (%)")
    _save(fig, path)
    return {s: [(t, cells[(s, t)][0]) for t in targets if (s, t) in cells] for s in sources}


def plot_overlap(cross, pset, path):
    """Heatmaps of the kept-weight share between tasks' tickets, one panel per sparsity, the
    random expectation (1 - s) in each title; returns ``{"level": {"a|b": share}}``."""
    levels = sorted(lv for (s, lv) in cross if s == pset)
    fig, axes = plt.subplots(1, len(levels), figsize=(0.6 + 2.9 * len(levels), 2.9), squeeze=False)
    data = {}
    for ax, lv in zip(axes[0], levels):
        entry = cross[(pset, lv)]
        labels = entry["labels"]
        grid = np.array([[np.nan if entry["shares"].get((a, b)) is None else 100 * entry["shares"][(a, b)]
                          for b in labels] for a in labels])
        ax.imshow(grid, cmap="magma", vmin=100 * (1 - lv / 100), vmax=100, aspect="auto")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, "?" if np.isnan(grid[i, j]) else f"{grid[i, j]:.1f}", ha="center", va="center",
                        fontsize=8, color="k" if not np.isnan(grid[i, j]) and grid[i, j] > 90 else "w")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"{lv}% (random masks: {100 - lv}%)", fontsize=9)
        data[str(lv)] = {f"{a}|{b}": v for (a, b), v in entry["shares"].items()}
    fig.suptitle(f"tickets' shared kept weights, % (set {pset})", fontsize=10)
    _save(fig, path)
    return data


def plot_speed_score(series, dense, path):
    """Score against measured inference speed-up, one line per criterion (``series``: {label:
    [(speed-up, score), ...]}), the full model at 1× with its mean; returns the plotted series."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    data = {"full model": [(1.0, dense)]}
    ax.scatter([1.0], [dense], color="k", marker="*", s=90, zorder=3, label="full model")
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=label)
        data[label] = pts
    ax.set_xlabel("inference speed-up of the shrunk model (CPU, batch 32 x 128)")
    ax.set_ylabel("Pearson (mean of the seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return data


def slug(text):
    """A file-name part from an IMP series label."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def write_figures(summary, out_dir, transfer_sparsity=70, overlaps=None):
    """One curve figure per (task, set, IMP series) (``curve_<task>_<set>.png``, the series'
    slug appended when a task and set have several), one transfer heatmap per prunable set with
    transfer runs (``transfer_<sparsity>_<set>.png``) and one heatmap of the tickets' cross-task
    overlap per set (``overlap_<set>.png``, from ``overlaps``); ``figures.json`` holds what each
    figure plots (file name -> its data), so a record's figures are checked by their data.
    Returns the files written."""
    out_dir = Path(out_dir)
    written, plotted = [], {}
    cv = curves(summary)
    for (task, pset, series), entry in sorted(cv.items(), key=lambda kv: tuple(map(str, kv[0]))):
        several = sum(1 for (t, s, _) in cv if (t, s) == (task, pset)) > 1
        path = out_dir / (f"curve_{task}_{pset}" + (f"_{slug(series)}" if several else "") + ".png")
        plotted[path.name] = plot_curve(summary, task, pset, entry, path, series)
        written.append(path)
    for pset, (sources, targets, cells) in sorted(transfer_matrices(summary, transfer_sparsity).items()):
        if any(not s.startswith(task_label(t)) for (s, t) in cells):
            path = out_dir / f"transfer_{transfer_sparsity}_{pset}.png"
            plotted[path.name] = plot_transfer(sources, targets, cells, transfer_sparsity, path)
            written.append(path)
    cross = (overlaps or {}).get("cross") or {}
    for pset in sorted({s for (s, _) in cross}):
        path = out_dir / f"overlap_{pset}.png"
        plotted[path.name] = plot_overlap(cross, pset, path)
        written.append(path)
    write_json(out_dir / "figures.json", json.loads(json.dumps(plotted)))  # tuples as lists
    return written
