"""Figures of a report (matplotlib, written as small PNGs): score against sparsity per task and
prunable set, one line per method, the full model's mean ± std as a band and the trivial
baseline as a dashed line; and the transfer heatmap.

Each function returns the data it plotted (``{series label: [(x, y), ...]}``), so tests check
what is drawn rather than pixels.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from utils.io import atomic_write  # noqa: E402
from utils.report import LABELS, METHODS, curves, mean_std, task_label, transfer_matrix  # noqa: E402

STYLE = {"imp": ("C0", "o", "-"), "random": ("C3", "s", "--"), "omp": ("C2", "^", "-."),
         "reinit": ("C1", "v", ":"), "shuffled": ("C4", "D", "--")}


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)


def plot_curve(summary, task, pset, entry, path):
    """Score vs sparsity for one task and prunable set; returns the plotted series."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    data = {}
    fm, fs, fn = mean_std(summary["full"].get(task, []))
    levels = entry["levels"]
    if fm is not None:
        lo, hi = (fm - fs, fm + fs) if fs is not None else (fm, fm)
        ax.axhspan(lo, hi, color="0.85", label=f"full model ± std (n={fn})")
        ax.axhline(fm, color="0.4", lw=1)
        data["full model"] = [(lv, fm) for lv in levels]
    base = (summary["baseline"].get(task) or {}).get("value")
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
    ax.set_title(f"{task_label(task)}: fixed-mask fine-tuning")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return data


def plot_transfer(sources, targets, cells, sparsity, path):
    """Heatmap of source mask × target task scores; returns ``{source: [(target, score)]}``."""
    import numpy as np

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
    ax.set_yticks(range(len(sources)), ["OMP" if s == "omp" else task_label(s) for s in sources])
    ax.set_xlabel("target task")
    ax.set_ylabel(f"source mask ({sparsity}%)")
    fig.colorbar(im, ax=ax, label="score (%)")
    _save(fig, path)
    return {s: [(t, cells[(s, t)][0]) for t in targets if (s, t) in cells] for s in sources}


def write_figures(summary, out_dir, transfer_sparsity=70):
    """One curve figure per (task, set) and the transfer heatmap when there are transfer runs.
    Returns the list of files written."""
    out_dir = Path(out_dir)
    written = []
    for (task, pset), entry in sorted(curves(summary).items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        path = out_dir / f"curve_{task}_{pset}.png"
        plot_curve(summary, task, pset, entry, path)
        written.append(path)
    sources, targets, cells = transfer_matrix(summary, transfer_sparsity)
    if any(s != t for (s, t) in cells):
        path = out_dir / f"transfer_{transfer_sparsity}.png"
        plot_transfer(sources, targets, cells, transfer_sparsity, path)
        written.append(path)
    return written
