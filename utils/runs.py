"""Reading runs: what each run under a folder is, from what it wrote.

A run is a folder with ``args.json``. What it is comes from its files, never from folder names:
the script, the task, ``--dir``, and the provenance of the mask and weight file it loaded
(``args.json`` ``provenance``, else a record of the same sha256 found under the folder).
Scores are each finished run's final evaluation (``complete.json`` ``headline``, in percent); a
folder without ``complete.json`` is an unfinished run, one with ``failed.json`` a failed run (its
training diverged; never scored), one whose run did not train (``kind`` ``eval_only``) an
evaluation-only run: both are listed apart and never enter a table.
"""
import math
import re
from pathlib import Path

from utils.errors import UserError
from utils.io import read_json

LABELS = {"full": "full model", "imp": "IMP ticket", "random": "random pruning", "omp": "OMP",
          "reinit": "random re-init", "shuffled": "shuffled weights", "transfer": "transferred ticket"}
METRIC_NAMES = {"mcc": "Matthews", "acc": "accuracy", "pearson": "Pearson", "f1": "F1"}
TASK_NAMES = {"cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "squad": "SQuAD",
              "mlm": "MLM", "omp": "OMP"}
FINAL_NOTE = "Scores: each run's final evaluation on the dev rows it evaluated, headline metric in percent."


def task_label(task):
    return TASK_NAMES.get(str(task).lower(), str(task))


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
                                      "pruning_event": m.get("pruning_event"), "step": m.get("step"),
                                      "args": args_by_dir.get(d) if isinstance(args_by_dir.get(d), dict) else None}
    return index


def imp_series(imp_args):
    """How an IMP run made its tickets, from its flags: round length (updates), learning rate,
    schedule, training rows and, for structured IMP by another score than magnitude, the score.
    Tickets of differently made IMP runs are separate series of every table, never pooled. ""
    when the record does not say."""
    a = imp_args or {}
    if not a.get("save_steps") or a.get("learning_rate") is None:
        return ""
    rows, sub = a.get("max_train_samples"), a.get("train_subset_seed")
    score = a.get("structure_score") or "magnitude"
    scored = "" if a.get("structure") != "heads_ffn" or score == "magnitude" else (
        f", {score} score ({a.get('score_normalise') or 'size'}, {a.get('score_batches')} batches)")
    return (f"rounds of {a['save_steps']}, lr {float(a['learning_rate']):g}, {a.get('round_schedule') or 'whole_run'}, "
            f"{rows or 'all'} rows" + (f" (subset seed {sub})" if sub is not None else "") + scored)


def checkpoint_id(record):
    """The pre-trained weights a mask or run came from: their hash, else their path."""
    ckpt = (record or {}).get("checkpoint") or {}
    return (ckpt.get("weights_sha256") or "")[:12] or ckpt.get("name_or_path")


# The fine-tuning settings a score depends on. Scores that one task's tables put side by side
# (the full model's seeds, the cells, the ticket against the full model) should share them.
SETTINGS = ("model", "learning_rate", "num_train_epochs", "max_steps", "max_train_samples", "train_subset_seed",
            "max_eval_samples",
            "max_seq_length", "global_batch", "amp_dtype", "weight_decay", "warmup_steps")


def _dev_rows(baseline):
    """The number of dev rows a classification run's baseline was counted on ("... of 408)")."""
    m = re.search(r" of (\d+)\)$", str((baseline or {}).get("what") or ""))
    return int(m.group(1)) if m else None


def settings_of(args, baseline=None):
    """The run's values of ``SETTINGS``; ``model`` is the checkpoint's weights hash (its path
    when the run recorded no hash; None for a random re-init, which is compared on the rest),
    ``global_batch`` per-process batch x processes x accumulation; a ``max_eval_samples`` cap
    above the dev rows the baseline was counted on (MRPC's 500 of 408) did not bind: no cap."""
    ckpt = (args.get("provenance") or {}).get("checkpoint") or {}
    out = {k: args.get(k) for k in SETTINGS}
    rows = _dev_rows(baseline)
    if out["max_eval_samples"] is not None and rows is not None and out["max_eval_samples"] > rows:
        out["max_eval_samples"] = None
    out["model"] = (ckpt.get("weights_sha256") or "")[:12] or args.get("model_name_or_path")
    if args.get("dir") == "rand" or ckpt.get("init") == "rand":
        out["model"] = None  # random re-init: no pre-trained weights to compare
    try:
        out["global_batch"] = (int(args["per_gpu_train_batch_size"]) * int(args.get("world_size") or 1)
                               * int(args.get("gradient_accumulation_steps") or 1))
    except (KeyError, TypeError, ValueError):
        out["global_batch"] = None
    return out


def classify(args, results, complete, mask_index=None, where="complete.json"):
    """What one run is: a dict with ``kind`` (``imp`` search or ``finetune``), ``task``,
    ``method`` (full | imp | random | omp | reinit | shuffled | other), ``source`` (the task
    that made the mask, or ``omp``/``random``), ``set`` (prunable set), ``sparsity``, ``seed``,
    ``score`` (None when unfinished), ``baseline``; for a masked run ``mask_sha``,
    ``checkpoint`` (:func:`checkpoint_id` of the mask) and ``series`` (:func:`imp_series` of
    the IMP run that made a ticket, "" for OMP and random masks). ``where`` names the run's
    ``complete.json`` in the error a ``headline`` this tool never writes (not an object, or a
    value that is no number) raises."""
    results = results or {}
    complete = complete or {}
    task = str(results.get("task") or complete.get("task") or args.get("task_name") or "?").lower()
    kind = results.get("kind") or complete.get("kind")
    if kind is None:
        kind = "imp" if str(args.get("script", "")).startswith("LT_") or "(IMP)" in str(args.get("script", "")) else "finetune"
    if kind == "finetune" and args.get("do_train") is False:
        kind = "eval_only"  # recorded before evaluation-only runs had their own kind
    run = {"task": task, "kind": kind, "script": args.get("script"), "seed": args.get("seed"),
           "finished": bool(complete), "score": None, "metric": None,
           "baseline": complete.get("baseline") or results.get("baseline"), "settings": settings_of(args, complete.get("baseline") or results.get("baseline")),
           "wall_time_s": complete.get("wall_time_s")}
    run.update(_headline(complete.get("headline"), where))
    if kind == "imp":
        run.update(method="imp_search", source=task, set=mask_set({**args, **results}),
                   sparsity=None, evaluations=results.get("evaluations", []), series=imp_series(args))
        return run
    run.update(_fine_tune_method(args, results, mask_index))
    return run


def _headline(head, where):
    """``score`` and ``metric`` of a run's ``complete.json`` headline (a NaN score, a constant
    prediction's undefined Pearson/Matthews, counts 0 like the trivial baseline, ``undefined``)."""
    value = head.get("value") if isinstance(head, dict) else None
    bad = (('"headline"', head, "an object") if head is not None and not isinstance(head, dict) else
           ('"headline" value', value, "a number") if value is not None and (
               isinstance(value, bool) or not isinstance(value, (int, float))) else None)
    if bad:
        raise UserError(f"{where}: its {bad[0]} is a JSON {type(bad[1]).__name__}, not {bad[2]}: it is not a file "
                        "this tool wrote; move it out of the folder of runs or restore it")
    if not head:
        return {}
    out = {"score": head.get("value"), "metric": head.get("metric")}
    if out["score"] is not None and math.isnan(out["score"]):
        out.update(score=0.0, undefined=True)
    return out


def _fine_tune_method(args, results, mask_index):
    """What a fine-tune was made with: ``method``, ``source``, ``set``, ``sparsity`` and, for a
    masked run, the mask's ``structure``, ``mask_sha``, ``checkpoint`` and ``series``."""
    prov = args.get("provenance") or {}
    mask, pert = prov.get("mask"), prov.get("weight_pertub")
    init = args.get("dir") or "pre"
    if not mask:
        return {"method": "full" if init == "pre" and not pert else "other", "source": None, "set": None,
                "sparsity": 0.0}
    record = mask.get("record") or (mask_index or {}).get(mask.get("sha256"))
    if record is None:
        return {"method": "other", "source": "unknown mask", "set": None,
                "sparsity": results.get("initial_sparsity"), "note": f"no record for mask {mask.get('path')}"}
    mkind = record.get("kind")
    source = record.get("task") if mkind == "imp" else mkind
    if mkind == "imp":
        method = "shuffled" if pert else "reinit" if init == "rand" else "imp"
    elif mkind in ("omp", "random") and init == "pre" and not pert:
        method = mkind
    else:
        method = "other"
    return {"method": method, "source": str(source).lower() if source else None, "set": mask_set(record),
            "sparsity": record.get("sparsity"), "structure": record.get("structure", "unstructured"),
            "mask_sha": mask.get("sha256"), "checkpoint": checkpoint_id(record),
            "series": imp_series(record.get("args")) if mkind == "imp" else ""}


class Collected(tuple):
    """``(finished, unfinished)``, as :func:`collect` always returned, plus ``failed`` (runs that
    stopped, each with the reason from its ``failed.json``) and ``eval_only`` (finished runs that
    did not train). Neither of the two is in ``finished``, so no table ever pools them.
    ``records``: sha256 -> record of every mask under the folder (:func:`_mask_index`)."""

    def __new__(cls, finished, unfinished, failed, eval_only, records=None):
        self = super().__new__(cls, (finished, unfinished))
        self.finished, self.unfinished, self.failed, self.eval_only = finished, unfinished, failed, eval_only
        self.records = records or {}
        return self


def _read_object(path):
    """A run file's JSON object; None when missing or not JSON; a JSON value of another type
    (a list, a string) is refused naming the file."""
    value = read_json(path)
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object: it is not a file this "
                        "tool wrote; move it out of the folder of runs or restore it")
    return value


def _failed_entry(path, run, failed):
    reason = failed.get("reason") or "no reason recorded"
    return {"path": path, "step": failed.get("step"), "reason": reason,
            "why": f"{run['script']} on {task_label(run['task'])}: {reason} (failed.json)"}


def collect(root):
    """The runs under ``root`` as a :class:`Collected`: (finished, unfinished) plus ``.failed`` and
    ``.eval_only``; raises UserError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder of runs")
    dirs = find_run_dirs(root)
    if not dirs:
        raise UserError(f"{root}: no runs found (no args.json in it or below)")
    args_by, res_by, done_by, failed_by = {}, {}, {}, {}
    for d in dirs:
        args_by[d], res_by[d] = read_json(d / "args.json"), _read_object(d / "results.json")
        done_by[d], failed_by[d] = _read_object(d / "complete.json"), _read_object(d / "failed.json")
    index = _mask_index(root, dirs, args_by, res_by)
    finished, unfinished, failed, eval_only = [], [], [], []
    for d in dirs:
        if not isinstance(args_by[d], dict):
            unfinished.append({"path": str(d.relative_to(root)), "why": "args.json unreadable"})
            continue
        run = classify(args_by[d], res_by[d], done_by[d], index, where=d / "complete.json")
        run["path"] = str(d.relative_to(root)) if d != root else "."
        if failed_by[d] is not None:
            failed.append(_failed_entry(run["path"], run, failed_by[d]))
        elif run["finished"]:
            (eval_only if run["kind"] == "eval_only" else finished).append(run)
        else:
            steps = (res_by[d] or {}).get("global_step")
            unfinished.append({"path": run["path"], "why": f"{run['script']} on {task_label(run['task'])}, "
                               f"no complete.json (last step {steps if steps is not None else '?'})"})
    return Collected(finished, unfinished, failed, eval_only, index)

