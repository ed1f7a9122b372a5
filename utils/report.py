"""The report of a folder of runs: Markdown, CSV tables and figures.

Reading runs is :mod:`utils.runs`, the tables :mod:`utils.tables` (statistics in
:mod:`utils.stats`), mask overlaps :mod:`utils.overlap`, figures :mod:`utils.figures`; this
module renders them. Every score is a fixed-mask fine-tune's final evaluation; each table keeps
apart what differs in how it was made (prunable set, the IMP run's budget) and says what it
pools although it differs. Failed runs (``failed.json``) and evaluation-only runs are listed in
their own sections and are in no table.

    python report.py runs/glue_small --out runs/glue_small/report
"""
import csv
import io
from pathlib import Path

from utils.bench_table import read_bench, structured_speed
from utils.figures import write_figures
from utils.io import write_json, write_text
from utils.overlap import STORE, OverlapStore, table_overlaps
from utils.profiles import MASK_METHODS
from utils.runs import FINAL_NOTE, LABELS, METRIC_NAMES, collect, task_label
from utils.stats import fmt_difference, mean_std
from utils.tables import (
    baseline_value,
    comparisons,
    curves,
    fmt,
    md_table,
    pooling_notes,
    summarise,
    table2,
    transfer_matrices,
    wall_rows,
    yes_no,
)

RULES = ("Matching (paper): ticket ≥ full mean − 1 sample std; strict: ticket ≥ full mean. The "
         "interval columns: difference of means with a 95 % interval (Welch; where one side has a "
         "single run, the interval of one more run of the other side), and what it supports. "
         "Sparsity over the prunable set named in `set` (`heads_ffn`: structured masks of whole "
         "attention heads and FFN neurons, sparsity over the encoder, the pooler dense). Each IMP "
         "series (round length, learning rate, schedule, training rows) is its own row.")


def _metric_label(task, metric):
    return f"{task_label(task)} ({METRIC_NAMES.get(metric, metric or '?')})"


def _range(levels):
    return f"{levels[0]}%" if len(levels) == 1 else f"{levels[0]}–{levels[-1]}%"


def _all_lower(r):
    """Whether every sparsity tried up to the matching one matches, naming the range tried."""
    if r["paper_all_lower"] is None:
        return "—"
    tried = [lv for lv in r["levels"] if lv <= r["paper_sparsity"]]
    return f"{yes_no(r['paper_all_lower'])} (tried {_range(tried)})"


def _share(x):
    return "—" if x is None else f"{100 * x:.2f}%"


def _table2(t2):
    header = ["task (metric)", "set", "IMP series", "trivial baseline", "full model (n)", "matching sparsity",
              "all lower match", "IMP ticket", "random pruning", "random re-init", "OMP", "shuffled",
              "strict sparsity", "ticket (strict)"]
    rows, csv_rows = [], []
    for r in t2:
        n_note = f" (n={r['full_n']})" if r["full_n"] else ""
        sp = f"{r['paper_sparsity']}%" if r["paper_sparsity"] is not None else "none"
        st = f"{r['strict_sparsity']}%" if r["strict_sparsity"] is not None else "none"
        at = "" if r["paper_sparsity"] is not None or r["shown_at"] is None else f"at {r['shown_at']}%: "
        rows.append([_metric_label(r["task"], r["metric"]), r["set"], r["series"] or "—", fmt(r["baseline"]),
                     fmt(r["full_mean"], r["full_std"]) + n_note, sp, _all_lower(r), at + fmt(r["ticket_shown"]),
                     *((at if r[m][0] is not None else "") + fmt(*r[m], show_n=True)
                       for m in ("random", "reinit", "omp", "shuffled")),
                     st, fmt(r["strict_ticket"])])
        csv_rows.append({"task": r["task"], "metric": r["metric"], "set": r["set"], "series": r["series"],
                         "baseline": r["baseline"], "full_mean": r["full_mean"], "full_std": r["full_std"],
                         "full_n": r["full_n"], "matching_sparsity": r["paper_sparsity"],
                         "all_lower_match": r["paper_all_lower"], "lowest_tried": r["lowest"],
                         "scores_at": r["shown_at"], "ticket": r["ticket_shown"],
                         **{m: r[m][0] for m in ("random", "reinit", "omp", "shuffled")},
                         "strict_sparsity": r["strict_sparsity"], "strict_ticket": r["strict_ticket"]})
    return rows, csv_rows, header


def _comparisons(cmp):
    """The ticket, OMP and the full model per sparsity: Markdown blocks and CSV rows."""
    out, csv_rows, key = [], [], None
    header = ["sparsity", "IMP ticket", "OMP", "random pruning", "random re-init", "ticket − full [95%]",
              "ticket vs full", "one-std rule", "OMP − full [95%]", "OMP vs full", "ticket − OMP [95%]",
              "ticket vs OMP", "ticket ∩ OMP (random: 1 − s)"]
    rows = []
    for c in cmp + [None]:
        k = None if c is None else (c["task"], c["set"], c["series"])
        if k != key and rows:
            out += [md_table(header, rows), ""]
            rows = []
        if c is None:
            break
        if k != key:
            key = k
            out += [f"### {_metric_label(c['task'], c['metric'])}, set {c['set']}"
                    + (f", IMP {c['series']}" if c["series"] else "")
                    + f": full model {fmt(*c['full'])} (n={c['full'][2]}), trivial baseline {fmt(c['baseline'])}", ""]
        rows.append([f"{c['sparsity']}%", *(fmt(*c[m], show_n=True) for m in ("imp", "omp", "random", "reinit")),
                     fmt_difference(c["ticket_vs_full"]), c["ticket_verdict"] or "—",
                     "matching" if c["paper_rule"] else "not matching",
                     fmt_difference(c["omp_vs_full"]), c["omp_verdict"] or "—",
                     fmt_difference(c["ticket_vs_omp"]), c["ticket_omp_verdict"] or "—",
                     f"{_share(c['omp_overlap'])} ({100 * c['random_overlap']:.0f}%)"])
        d = {name: c[name] or {} for name in ("ticket_vs_full", "omp_vs_full", "ticket_vs_omp")}
        csv_rows.append({"task": c["task"], "set": c["set"], "series": c["series"], "sparsity": c["sparsity"],
                         **{f"{m}_{q}": c[m][i] for m in ("full", *MASK_METHODS)
                            for i, q in enumerate(("mean", "std", "n"))},
                         **{f"{name}_{q}": d[name].get(q) for name in d for q in ("diff", "low", "high")},
                         "ticket_verdict": c["ticket_verdict"], "omp_verdict": c["omp_verdict"],
                         "ticket_omp_verdict": c["ticket_omp_verdict"], "paper_rule": c["paper_rule"],
                         "omp_overlap": c["omp_overlap"], "random_overlap": c["random_overlap"]})
    return out, csv_rows


def _cross(cross):
    out, csv_rows = [], []
    for (pset, lv), entry in sorted(cross.items()):
        labels = entry["labels"]
        out += [f"Set {pset}, {lv}% (two random masks share {100 - lv}%):", ""]
        out.append(md_table(["ticket", *labels], [[a, *(_share(entry["shares"].get((a, b))) for b in labels)]
                                                   for a in labels]))
        out.append("")
        csv_rows += [{"set": pset, "sparsity": lv, "a": a, "b": b, "share": entry["shares"].get((a, b))}
                     for a in labels for b in labels]
    return out, csv_rows


def _curves(summary, missing):
    out, csv_rows = [], []
    for (task, pset, series), entry in sorted(curves(summary).items(), key=lambda kv: tuple(map(str, kv[0]))):
        fm, fs, fn = mean_std(summary["full"].get(task, []))
        base = baseline_value(summary, task)
        out += [f"### {_metric_label(task, summary['metric'].get(task))}, set {pset}"
                + (f", IMP {series}" if series else "") + f": full model {fmt(fm, fs)} (n={fn}), "
                f"trivial baseline {fmt(base)}", ""]
        rows = []
        for lv in entry["levels"]:
            cells = []
            for m in MASK_METHODS:
                val = entry["series"][m].get(lv)
                cells.append(fmt(*val, show_n=True) if val else "missing")
                if val is None:
                    missing.append(f"{task_label(task)} {pset} {lv}%: {LABELS[m]}")
                csv_rows.append({"task": task, "set": pset, "series": series, "sparsity": lv, "method": m,
                                 "mean": val[0] if val else None, "std": val[1] if val else None,
                                 "n": val[2] if val else 0})
            rows.append([f"{lv}%", *cells])
        out += [md_table(["sparsity", *(LABELS[m] for m in MASK_METHODS)], rows), ""]
    return out or ["(no fixed-mask fine-tunes yet)", ""], csv_rows


def _transfer(summary, sparsity, missing):
    out, csv_rows = [], []
    for pset, (sources, targets, cells) in sorted(transfer_matrices(summary, sparsity).items()):
        if not any(not s.startswith(task_label(t)) for (s, t) in cells):
            continue
        rows, unasked = [], False
        for s in sources:
            row = [s]
            for t in targets:
                c = cells.get((s, t))
                if c is None and "(" in s and not s.startswith(task_label(t)):
                    row.append("–")  # re-init and shuffled masks go to their own task only
                    unasked = True
                elif c is None:
                    row.append("missing")
                    missing.append(f"transfer {s} → {task_label(t)} (set {pset})")
                else:
                    row.append(fmt(c[0], c[1], c[2], show_n=True) + (" *" if c[3] else ""))
                    csv_rows.append({"set": pset, "source": s, "target": t, "mean": c[0], "std": c[1],
                                     "n": c[2], "matching": c[3]})
            rows.append(row)
        out += [f"Set {pset}:", "", md_table(["source \\ target", *(task_label(t) for t in targets)], rows), ""]
        if unasked:
            out += ["– : not asked for (a re-init or shuffled mask is fine-tuned on its own task only).", ""]
    return out or ["(no transfer runs: no mask fine-tuned on a task other than its own)", ""], csv_rows


def _apart(failed, eval_only):
    """The sections of the runs no table uses: failed runs (with why) and evaluation-only runs."""
    out = []
    if failed:
        out += ["", "## Failed runs (stopped before their end; in no table)", ""]
        out += [f"- {f['path']}: {f['why']}" for f in failed]
    if eval_only:
        out += ["", "## Evaluation-only runs (no training; in no table)", ""]
        out += [f"- {r['path']}: {r['script']} on {task_label(r['task'])}"
                + (f", {METRIC_NAMES.get(r['metric'], r['metric'])} {r['score']:.1f}" if r["score"] is not None else "")
                for r in eval_only]
    return out


CROSS_HEADING = "## Tickets of different tasks: shared kept weights"


def transfer_heading(sparsity):
    return f"## Transfer: source mask at {sparsity}% × target task, per prunable set (* matching the target's full model)"


def _title(finished, unfinished, failed, eval_only):
    extra = (f", {len(failed)} failed" if failed else "") + (f", {len(eval_only)} evaluation-only" if eval_only else "")
    return f"# Lottery-ticket report ({len(finished)} finished runs, {len(unfinished)} unfinished{extra})"


def render(finished, unfinished, transfer_sparsity=70, overlaps=None, failed=(), eval_only=(), summary=None):
    """The whole report as Markdown, the CSV tables as {name: rows}, and the summary
    (:func:`utils.tables.summarise` of ``finished``, computed here unless given). ``failed`` and
    ``eval_only`` runs (:class:`utils.runs.Collected`) are only listed, in their own sections."""
    summary = summarise(finished) if summary is None else summary
    overlaps = overlaps or {"cells": {}, "cross": {}}
    t2 = table2(summary)
    rows, csv_t2, header = _table2(t2)
    out = [_title(finished, unfinished, failed, eval_only), "",
           FINAL_NOTE, RULES, "", "## Table 2: highest sparsity with a matching IMP ticket", "",
           "The scores are at the matching sparsity; where no sparsity matches, at the lowest one tried (\"at N%\").", "",
           md_table(header, rows) if rows else "(no IMP-ticket fine-tunes yet)"]
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
    cmp_md, csv_cmp = _comparisons(comparisons(summary, overlaps["cells"]))
    out += ["", "## The ticket against the full model and against OMP", ""] + (cmp_md or ["(no tickets yet)", ""])
    cross_md, csv_cross = _cross(overlaps["cross"])
    out += [CROSS_HEADING, ""] + (cross_md or ["(fewer than two tasks' "
                                                                                     "tickets with mask files)", ""])
    missing = []
    curve_md, csv_curves = _curves(summary, missing)
    out += ["## Score against sparsity (fixed-mask fine-tunes; mean ± std over seeds)", ""] + curve_md
    tr_md, csv_transfer = _transfer(summary, transfer_sparsity, missing)
    out += [transfer_heading(transfer_sparsity), ""] + tr_md
    out += ["## Wall time (each finished run's own `wall_time_s`)", ""]
    out.append(md_table(["task", "IMP runs", "fine-tunes", "total"], wall_rows(finished)) if finished else "(none)")
    out += ["", "## Missing cells", ""]
    out += [f"- {m}" for m in missing] or ["(none)"]
    out += ["", "## Unfinished runs", ""]
    out += [f"- {u['path']}: {u['why']}" for u in unfinished] or ["(none)"]
    unscored = sorted(r["path"] for r in finished if r["kind"] == "finetune" and r["score"] is None)
    if unscored:  # trained but never evaluated (e.g. pretrain_trans.py without --eval_data_file)
        out += ["", "## Finished without a score (in no table)", ""] + [f"- {p}" for p in unscored]
    out += _apart(failed, eval_only)
    tables = {"table2": csv_t2, "comparisons": csv_cmp, "curves": csv_curves, "transfer": csv_transfer,
              "overlap": csv_cross}
    return "\n".join(out) + "\n", tables, summary


def csv_text(rows):
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def measure_overlaps(root, runs, summary):
    """(the overlaps the report shows, the store of every pair measured) for ``runs``
    (:func:`utils.runs.collect` of ``root``) and their ``summary`` (:func:`utils.overlap.table_overlaps`)."""
    store = OverlapStore(root)
    return table_overlaps(summary, runs.records, store), store


def write_report(root, out_dir=None, figures=True, transfer_sparsity=70, bench=None):
    """Collect, render, write ``report.md``, the CSVs, the overlaps measured
    (``mask_overlaps.json``) and the figures to ``out_dir``; returns (markdown, csv rows, list of
    figure files). ``bench``: a ``scripts/bench.py`` output file, whose structured speed-ups are
    appended (:func:`utils.bench_table.structured_speed`)."""
    runs = collect(root)
    finished, unfinished = runs
    summary = summarise(finished)
    overlaps, store = measure_overlaps(root, runs, summary)
    text, tables, _ = render(finished, unfinished, transfer_sparsity, overlaps, runs.failed, runs.eval_only, summary)
    if bench is not None:
        section, tables["structured_speed"] = structured_speed(read_bench(bench))
        text += "\n" + section
    written = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_text(out_dir / "report.md", text)
        for name, rows in tables.items():
            write_text(out_dir / f"{name}.csv", csv_text(rows))
        write_json(out_dir / STORE, store.record())
        if figures:
            written = write_figures(summary, out_dir, transfer_sparsity, overlaps)
    return text, tables, written
