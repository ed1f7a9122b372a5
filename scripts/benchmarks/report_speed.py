"""Figure ``report_speed``: ``utils.report.write_report`` over many finished run folders.

Generates ``n`` run folders in the layout the scripts write (args.json with a mask provenance
record and the run's full arguments, results.json, complete.json): dense seeds and ticket,
random and re-init runs at nine sparsities over ten tasks, plus one unfinished run per task.
Times collecting, rendering and writing the CSVs and the figures. Target: 1,000 runs in
under 10 s.
"""
import json
import random
import time
from pathlib import Path

from scripts.benchmarks.harness import base_record
from utils.report import write_report

TASKS = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli", "squad")
METRIC = {"cola": "mcc", "sts-b": "pearson", "squad": "f1"}
FILLER_ARGS = {f"flag_{i}": i * 0.5 for i in range(60)}  # args.json carries ~60 flags


def make_runs(root, n, seed=0):
    """Write ``n`` run folders under ``root``; returns how many are finished."""
    rng = random.Random(seed)
    root = Path(root)
    finished = 0
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        metric = METRIC.get(task, "acc")
        kind = i // len(TASKS) % 4
        sparsity = 10 * (1 + (i // (4 * len(TASKS))) % 9)
        mask = None
        if kind == 1:
            mask = {"kind": "imp", "task": task, "sparsity": float(sparsity), "prunable_set": "paper"}
        elif kind == 2:
            mask = {"kind": "random", "task": None, "sparsity": float(sparsity), "prunable_set": "paper"}
        init = "rand" if kind == 3 else "pre"
        if kind == 3:
            mask = {"kind": "imp", "task": task, "sparsity": float(sparsity), "prunable_set": "paper"}
        prov = {"checkpoint": {"name_or_path": "bert-base-uncased", "config_sha256": "0" * 64}}
        if mask:
            mask.update(sha256=f"{i:064d}", args=FILLER_ARGS, command="LT_glue.py " + "--x 1 " * 40)
            prov["mask"] = {"path": f"m/{i}.pt", "sha256": mask["sha256"], "record": mask}
        d = root / task / f"run{i:05d}"
        d.mkdir(parents=True)
        args = {"script": "glue_trans.py", "seed": rng.randint(1, 5), "dir": init, "provenance": prov, **FILLER_ARGS}
        score = rng.uniform(40, 90)
        value = score if task == "squad" else score / 100
        final = {"step": 1000, "sparsity": float(sparsity), metric: value, "tag": "final"}
        results = {"script": "glue_trans.py", "kind": "finetune", "task": task, "final": final,
                   "evaluations": [dict(final, step=s) for s in (250, 500, 750, 1000)],
                   "baseline": {"metric": metric, "value": 50.0}}
        (d / "args.json").write_text(json.dumps(args, indent=1))
        (d / "results.json").write_text(json.dumps(results, indent=1))
        if i % 97 != 5:  # a few unfinished runs
            (d / "complete.json").write_text(json.dumps({
                "task": task, "kind": "finetune", "headline": {"metric": metric, "value": score},
                "baseline": results["baseline"]}))
            finished += 1
    return finished


def figure_report_speed(opts):
    """Time the report over generated runs (1,000; --quick 50)."""
    n = 50 if opts.quick else 1000
    root = Path(opts.tmp) / "report_runs"
    finished = make_runs(root, n)
    times = {}
    for figures in (False, True):
        start = time.perf_counter()
        text, tables, written = write_report(root, Path(opts.tmp) / f"report_out_{figures}", figures=figures)
        times["with_figures" if figures else "tables_only"] = time.perf_counter() - start
    total = times["with_figures"]
    return [base_record("report_speed", opts, runs=n, finished=finished, figures=len(written),
                        seconds={k: round(v, 3) for k, v in times.items()},
                        runs_per_s=round(n / total, 1), target="1,000 runs in < 10 s (tables, CSVs and figures)",
                        meets_target=total < 10.0)]
