"""How much two masks agree: the share of one mask's kept weights that the other keeps too.

Two masks at the same sparsity s keep the same number of weights, so the share is symmetric;
for two independent uniformly random masks its expectation is 1 - s (each kept weight of the
first is kept by the second with probability 1 - s). A ticket that shares 99 % of its kept
weights with one-shot magnitude pruning of the same checkpoint (OMP) is, for all purposes,
that OMP mask; one near 1 - s is as unrelated to it as a random mask.

Only the matrices of the prunable set are compared: under ``no_pooler`` the pooler is kept
whole by every mask and would add agreement that says nothing.
"""
from pathlib import Path

import torch

from utils.io import read_json
from utils.masks import in_prunable_set
from utils.runs import checkpoint_id, mask_set, task_label
from utils.sparsity import load_mask
from utils.tables import level


def kept_overlap(a, b, prunable_set="paper"):
    """``{"shared": kept by both, "kept_a", "kept_b", "total", "share": shared / kept_a,
    "sparsity_a", "sparsity_b"}`` over the matrices of ``prunable_set`` that both masks hold.

    ``a`` and ``b``: ``{mask key: 0/1 or bool tensor}``; their keys in the set must agree and
    their shapes too (a ``ValueError`` names the first that does not)."""
    keys = sorted(k for k in a if in_prunable_set(k, prunable_set))
    other = sorted(k for k in b if in_prunable_set(k, prunable_set))
    if keys != other:
        diff = sorted(set(keys) ^ set(other))
        raise ValueError(f"masks of different matrices: {diff[0]} is in one only")
    shared = kept_a = kept_b = total = 0
    for k in keys:
        x, y = a[k].to(torch.bool), b[k].to(torch.bool)
        if x.shape != y.shape:
            raise ValueError(f"{k}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        shared += int((x & y).sum())
        kept_a += int(x.sum())
        kept_b += int(y.sum())
        total += x.numel()
    return {"shared": shared, "kept_a": kept_a, "kept_b": kept_b, "total": total,
            "share": shared / kept_a if kept_a else float("nan"),
            "sparsity_a": 100.0 * (1 - kept_a / total) if total else float("nan"),
            "sparsity_b": 100.0 * (1 - kept_b / total) if total else float("nan")}


def random_expectation(sparsity_percent):
    """Expected share of kept weights two independent uniformly random masks at this sparsity
    (percent) have in common: 1 - s."""
    return 1.0 - sparsity_percent / 100.0


def file_overlap(path_a, path_b, prunable_set="paper"):
    """:func:`kept_overlap` of two mask files (``mask.pt``)."""
    return kept_overlap(load_mask(Path(path_a)), load_mask(Path(path_b)), prunable_set)


# --- the overlaps a report shows --------------------------------------------------------------

STORE = "mask_overlaps.json"  # in a runs folder or a slim record: the overlaps measured so far


def pair_key(sha_a, sha_b):
    return "|".join(sorted((sha_a, sha_b)))


def mask_files(root):
    """sha256 -> a mask file under ``root`` (``mask.pt``, or the ``mask.pt.gz`` a slim record
    carries) whose provenance sidecar names that sha256, or that an IMP run's results list."""
    out = {}
    for side in Path(root).rglob("mask_provenance.json"):
        rec = read_json(side)
        if isinstance(rec, dict) and rec.get("sha256"):
            for name in ("mask.pt", "mask.pt.gz"):
                if (side.parent / name).is_file():
                    out.setdefault(rec["sha256"], side.parent / name)
                    break
    for res in Path(root).rglob("results.json"):
        for m in (read_json(res) or {}).get("masks", []) or []:
            for f in (res.parent / str(m.get("path", "")), res.parent / (str(m.get("path", "")) + ".gz")):
                if m.get("sha256") and f.is_file():
                    out.setdefault(m["sha256"], f)
    return out


class OverlapStore:
    """Overlaps by pair of mask hashes: those kept in ``root``'s :data:`STORE` (a slim record's
    copy), and those measured now from the mask files found under ``root``."""

    def __init__(self, root):
        kept = read_json(Path(root) / STORE) or {}
        self.pairs = dict(kept.get("pairs") or {}) if isinstance(kept, dict) else {}
        self.files = mask_files(root)
        self._masks = {}

    def _mask(self, sha):
        if sha not in self._masks:
            self._masks = {sha: load_mask(self.files[sha])}  # keep one: masks are large
        return self._masks[sha]

    def share(self, sha_a, sha_b, prunable_set):
        """The kept-weight share of two masks (None when unknown and a file is missing)."""
        if not sha_a or not sha_b:
            return None
        if sha_a == sha_b:
            return 1.0
        key = pair_key(sha_a, sha_b)
        if key not in self.pairs and sha_a in self.files and sha_b in self.files:
            a = self._mask(sha_a)
            o = kept_overlap(a, load_mask(self.files[sha_b]), prunable_set)
            self.pairs[key] = {"share": o["share"], "set": prunable_set,
                               "sparsity": [round(o["sparsity_a"], 4), round(o["sparsity_b"], 4)]}
        return (self.pairs.get(key) or {}).get("share")

    def record(self):
        return {"pairs": dict(sorted(self.pairs.items()))}


def table_overlaps(summary, records, store):
    """The overlaps a report shows, from :func:`utils.tables.summarise`'s groups.

    ``records``: sha256 -> mask record (``utils.runs.collect(...).records``). Returns ``{"cells":
    {(task, set, series, level): {"omp": share, "ticket": sha, "omp_sha": sha}}, "cross":
    {(set, level): {"labels": [...], "shares": {(label_a, label_b): share}}}}``: each ticket
    against the OMP mask of the same checkpoint, set and sparsity (a fine-tuned OMP mask, else
    one found under the folder), and the tickets of different tasks against each other."""
    omp = {}  # (checkpoint, set, level) -> sha
    for sha, rec in records.items():
        if rec.get("kind") == "omp":
            omp.setdefault((checkpoint_id(rec), mask_set(rec), level(rec.get("sparsity"))), sha)
    cells, tickets = {}, {}
    for (task, method, pset, lv, series), runs in summary["groups"].items():
        if method != "imp" or not runs:
            continue
        r = runs[0]
        omp_runs = summary["groups"].get((task, "omp", pset, lv, ""), [])
        omp_sha = omp_runs[0].get("mask_sha") if omp_runs else omp.get((r.get("checkpoint"), pset, lv))
        cells[(task, pset, series, lv)] = {"ticket": r.get("mask_sha"), "omp_sha": omp_sha,
                                           "omp": store.share(r.get("mask_sha"), omp_sha, pset)}
        tickets.setdefault((pset, lv), []).append((task, series, r.get("mask_sha")))
    cross = {}
    for (pset, lv), items in tickets.items():
        items = sorted(items, key=lambda x: (x[0], x[1]))
        several = len({t for t, _, _ in items}) < len(items)
        labels = [task_label(t) + (f" [{se}]" if several and se else "") for t, se, _ in items]
        if len(items) < 2:
            continue
        shares = {}
        for i, (_, _, a) in enumerate(items):
            for j, (_, _, b) in enumerate(items):
                shares[(labels[i], labels[j])] = store.share(a, b, pset)
        if any(v is not None for (a, b), v in shares.items() if a != b):
            cross[(pset, lv)] = {"labels": labels, "shares": shares}
    return {"cells": cells, "cross": cross}
