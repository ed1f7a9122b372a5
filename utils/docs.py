"""Generated blocks of the README and ``docs/``: tables that have a source (the profile
definitions, the committed records) are written between markers, never typed, and a test fails
when one is stale (``python scripts/build_docs.py --check``).

A block is ``<!-- generated: NAME -->`` ... ``<!-- end: NAME -->``; NAME is a key of
:data:`GENERATORS`.
"""
import ast
import functools
import json
import re
from pathlib import Path

from utils.budget import budget_table
from utils.profiles import markdown_table
from utils.report import CROSS_HEADING, transfer_heading, write_report
from utils.stats import fmt_difference
from utils.structured_record import (imp_cells, rewind_cells, seed_cells,  # noqa: F401 (re-exported)
                                     structured_figure)
from utils.tables import fmt

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def _profiles():
    return markdown_table()


@functools.lru_cache(maxsize=None)
def _report_text(record):
    """The report of a committed record, regenerated once per pass over the docs (several blocks
    show sections of one report; :func:`stale` clears this cache first)."""
    return write_report(ROOT / record, None, figures=False)[0]


def _report_section(record, heading):
    """A section of the report regenerated from a committed record, from its heading to the
    next one of the same level."""
    text = _report_text(record)
    level = heading.split(" ")[0] + " "
    start = text.index(heading)
    rest = text[start + len(heading):]
    nxt = [m.start() for m in re.finditer(rf"^{re.escape(level)}", rest, re.M)]
    return (heading + rest[: nxt[0]] if nxt else text[start:]).strip()


def _table2(record):
    section = _report_section(record, "## Table 2: highest sparsity with a matching IMP ticket")
    return section.split("\n", 1)[1].strip()


def _comparisons(record):
    section = _report_section(record, "## The ticket against the full model and against OMP")
    return section.split("\n", 1)[1].strip()


def _set_blocks(record, heading, pset):
    """The blocks of one prunable set in a report section laid out per set (the transfer matrix,
    the cross-task overlaps): each ``Set <pset>...:`` line with the table under it."""
    body = _report_section(record, heading).split("\n", 1)[1]
    blocks = re.split(r"\n(?=Set [a-z_]+[,:])", "\n" + body)
    keep = [b.strip() for b in blocks if b.strip().startswith((f"Set {pset},", f"Set {pset}:"))]
    return "\n\n".join(keep) or f"(no set {pset} in this section of the record's report)"


TRANSFER, CROSS = transfer_heading(70), CROSS_HEADING

BRIEF = ("sparsity", "IMP ticket", "OMP", "random pruning", "ticket vs full", "ticket − OMP [95%]", "ticket vs OMP",
         "ticket ∩ OMP (random: 1 − s)")


def _brief(record):
    """The unstructured ticket against OMP, per task, from the comparisons section: a few columns
    of its tables (set ``no_pooler``; structured tickets have their own table), each under a
    one-line heading (task, metric-free: the section's heading up to the first colon and the full
    model's score). Tasks whose tickets are not yet on several seeds are left to docs/results.md."""
    out = []
    for block in _comparisons(record).split("### ")[1:]:
        heading, _, table = block.partition("\n")
        if ", set no_pooler" not in heading.split(":")[0]:
            continue
        rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table.strip().splitlines()
                if r.startswith("|")]
        keep = [rows[0].index(c) for c in BRIEF]
        if any("(n=" not in r[keep[1]] for r in rows[2:]):
            continue  # a task still running (a ticket on one seed): docs/results.md has it
        task = heading.split(",")[0]
        full = heading.rsplit(": ", 1)[1]
        out += [f"**{task}**, {full}:", "", "| " + " | ".join(BRIEF) + " |", "|---" * len(BRIEF) + "|"]
        out += ["| " + " | ".join(r[i] for i in keep) + " |" for r in rows[2:]] + [""]
    return "\n".join(out).strip()


def _budget(path):
    return budget_table(json.loads((ROOT / path).read_text()))


def _speedups(folder):
    """Measured inference speed-up of each cell's mask (scripts/bench.py --only structured_masks),
    by the mask's folder name without its rescaling flag (the mask is the same with or without)."""
    path = ROOT / folder / "bench_masks.json"
    records = json.loads(path.read_text()) if path.is_file() else []
    return {re.sub(r"_r[01]_", "_", Path(r["mask_path"]).parent.name): r["infer_ratio"] for r in records}


def _structured_nr(folder):
    """The no-retraining structured masks' table from their records (oneshot_structured.py), with
    the measured speed-up of the shrunk model."""
    rows, speed = [], _speedups(folder)
    for d in sorted((ROOT / folder).glob("*_50")):
        res = json.loads((d / "results.json").read_text())
        rec = json.loads((d / "mask_provenance.json").read_text())
        norm = f" ({'per weight' if rec['normalise'] == 'size' else rec['normalise']})" if rec["score"] in (
            "taylor", "fisher") else ""
        sec = res["seconds"]
        ratio = speed.get(re.sub(r"_r[01]_", "_", d.name))
        rows.append((-res["eval"]["pearson"], f"| {rec['score']}{norm} | {'yes' if rec['rescaled'] else 'no'} | "
                     f"{100 * res['eval']['pearson']:.1f} | {f'{ratio:.2f}×' if ratio else '–'} | "
                     f"{', '.join(map(str, res['heads_kept']))} | "
                     f"{', '.join(map(str, res['neurons_kept']))} | {sec['scoring']:.1f} s / "
                     + (f"{sec['rescaling']:.0f} s |" if rec["rescaled"] else "– |")))
    head = ("| score (normalisation) | least-squares rescaling | Pearson, no training | inference speed-up | "
            "heads kept per layer | FFN neurons kept per layer (of 1,536) | scoring / rescaling |\n"
            "|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(r for _, r in sorted(rows))


def _rows_of(tree, name):
    """(id, wording) of each row of the list ``name`` in a module's AST (lists joined with ``+``)."""
    def parts(node):
        return parts(node.left) + parts(node.right) if isinstance(node, ast.BinOp) else list(node.elts)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return [(ast.literal_eval(e.elts[0]), ast.literal_eval(e.elts[1])) for e in parts(node.value)]
    raise KeyError(f"no list {name} in the bad-input tests")


def _bad_input():
    """The bad-input table: every row of tests/test_bad_input.py (its id and wording) with the exact
    line it prints (tests/bad_input_messages.json, which the same test compares with the real line)."""
    tree = ast.parse((ROOT / "tests" / "test_bad_input.py").read_text())
    messages = json.loads((ROOT / "tests" / "bad_input_messages.json").read_text())
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    rows = [f"| `{i}` | {cell(w)} | {cell(messages[i])} |"
            for i, w in _rows_of(tree, "ROWS") + _rows_of(tree, "PERMISSION_ROWS")]
    return "| row | input | message (stderr, exit code 2) |\n|---|---|---|\n" + "\n".join(rows)


def _structured_seeds(folder):
    """The seeded no-retraining table: per score, rescaling and rate, Pearson without training from
    each dense seed's model, the gap to that seed's dense model, the mean speed-up of the seeds'
    masks, and the short fine-tune's score."""
    seeds, dense, cells = seed_cells(folder)
    fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    rows = [f"| full model (the dense fine-tune itself) | | | {' / '.join(fmt(dense[k]) for k in seeds)} | | | |"]
    for c in cells:
        speed = f"{c['speed']:.2f}×" if c["speed"] else "—"
        rows.append(f"| {c['label']} | {'yes' if c['rescaled'] else 'no'} | {c['rate']} % | "
                    f"{' / '.join(fmt(c['scores'][k]) for k in seeds)} | {fmt(c['gap'])} | {speed} | "
                    f"{' / '.join(fmt(v) for v in c['short']) if any(v is not None for v in c['short']) else '—'} |")
    head = (f"| score (normalisation) | rescaled | encoder pruned | Pearson, no training (dense seed "
            f"{' / '.join(map(str, seeds))}) | mean gap to its own dense model | inference speed-up | after a short "
            "fine-tune |\n|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def _structured_imp(record):
    """The structured IMP tickets by score (fine-tuned from θ0 with the mask, the reproduction's
    recipe) against the full model and random structured pruning, with the units each ticket keeps
    and the measured speed-up of its shrunk model."""
    full, cells = imp_cells(record)
    join = lambda v: ", ".join(map(str, v)) if v else "—"  # noqa: E731
    rows = [f"| full model | | {fmt(*full, show_n=True)} | | | | | | | |"]
    for c in sorted(cells, key=lambda c: (c["rate"], c["label"])):
        speed = f"{c['speed']:.2f}×" if c["speed"] else "—"
        rspeed = f" ({c['random_speed']:.2f}×)" if c["random_speed"] else ""
        rows.append(f"| {c['label']} | {c['rate']} % | {fmt(*c['ticket'], show_n=True)} | "
                    f"{fmt(*c['random'], show_n=True)}{rspeed} | {fmt_difference(c['vs_full'])} | {c['verdict'] or '—'} | "
                    f"{fmt_difference(c['vs_random'])} | {join(c['heads'])} | {join(c['neurons'])} | {speed} |")
    head = ("| IMP score | encoder pruned | structured IMP ticket | random structured pruning (speed-up) | "
            "ticket − full [95%] | ticket vs full | ticket − random [95%] | heads kept per layer | "
            "FFN neurons kept per layer (of 1,536) | inference speed-up |\n|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def _structured_rewind(folder, nr_folder):
    """The no-retraining masks rewound to θ0 and fine-tuned like a ticket, per seed, beside their
    score without training on the fine-tuned model they were chosen on."""
    fmt1 = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    rows = []
    for c in rewind_cells(folder, nr_folder):
        seeds = sorted(c["rewound"])
        rows.append(f"| {c['label']}{' + rescaling' if c['rescaled'] else ''} | {c['rate']} % | {' / '.join(map(str, seeds))} | "
                    f"{' / '.join(fmt1(c['no_training'][k]) for k in seeds)} | "
                    f"{' / '.join(fmt1(c['rewound'][k]) for k in seeds)} | "
                    f"{' / '.join(fmt1(c['rewound_10_epochs'][k]) for k in seeds)} |")
    head = ("| mask chosen by (on the fine-tuned dense model) | encoder pruned | dense seed | no training, "
            "fine-tuned weights kept | rewound to θ0, fine-tuned 3 epochs | rewound, 10 epochs |\n"
            "|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


RANDOM = "random structured pruning"


def _best_budget(cells):
    """``{score: series}``: of each score's structured IMP runs (one series per round budget),
    the one whose tickets score highest on average over the sparsities every run of that score
    has (over all of each run's sparsities where they share none)."""
    by_score = {}
    for c in cells:
        by_score.setdefault(c["score"], {}).setdefault(c["series"], {})[c["rate"]] = c["ticket"][0]
    best = {}
    for score, runs in by_score.items():
        common = set.intersection(*(set(r) for r in runs.values()))

        def mean(se, runs=runs, common=common):
            levels = common or runs[se]
            return sum(runs[se][lv] for lv in levels) / len(levels)
        best[score] = max(sorted(runs), key=mean)
    return best


def _structured_brief(imp_record, nr_folder, rewind_folder):
    """The README's structured table: each criterion and way of using its mask at 30, 50 and 70 %
    of the encoder, the mean score of its seeds and the measured speed-up of its shrunk model
    (structured IMP: each score's tickets from its best round budget, :func:`_best_budget`; every
    budget is in docs/structured.md)."""
    levels, rows = (30, 50, 70), {}

    def put(name, lv, vals, speed):
        vals = [v for v in vals if v is not None]
        if vals:
            rows.setdefault(name, {})[lv] = (sum(vals) / len(vals), len(vals), speed)
    nr_cells = seed_cells(nr_folder)[2]
    for c in nr_cells:
        put(f"{c['label']}{' + rescaling' if c['rescaled'] else ''}, no training",
            c["rate"], c["scores"].values(), c["speed"])
    speed = {(c["label"], c["rate"]): c["speed"] for c in nr_cells}
    for c in rewind_cells(rewind_folder, nr_folder):
        put(f"{c['label']}, the same mask rewound to θ0", c["rate"],
            c["rewound"].values(), speed.get((c["label"], c["rate"])))
    full, cells = imp_cells(imp_record)
    best = _best_budget(cells)
    for c in cells:
        if c["series"] == best[c["score"]]:
            put(f"IMP ticket, {c['label'].replace(', lr', ', rounds at lr')}", c["rate"],
                [c["ticket"][0]] * c["ticket"][2], c["speed"])
    for c in cells:  # random structured pruning last (one cell per level, whichever series found it)
        if c["random"][2] and c["rate"] not in rows.get(RANDOM, {}):
            put(RANDOM, c["rate"], [c["random"][0]] * c["random"][2], c["random_speed"])
    cell = lambda v: "—" if v is None else (  # noqa: E731
        f"{v[0]:.1f} (n={v[1]}{f', {v[2]:.2f}×' if v[2] else ''})")
    out = ["| structured mask (score, use) | 30 % | 50 % | 70 % |", "|---|---|---|---|",
           f"| full model (dense, 1.00×) | {fmt(*full, show_n=True)} | | |"]
    out += [f"| {name} | " + " | ".join(cell(r.get(lv)) for lv in levels) + " |" for name, r in rows.items()
            if len(r) > 1]  # criteria measured at one sparsity only are in docs/structured.md
    return "\n".join(out)


GENERATORS = {
    "bad_input": _bad_input,
    "structured_seeds": lambda: _structured_seeds("results/structured_nr"),
    "profiles": _profiles,
    "small_table2": lambda: _table2("results/small"),
    "small_comparisons": lambda: _comparisons("results/small"),
    "imp_budget": lambda: _budget("results/imp_budget/budget.json"),
    "small2_table2": lambda: _table2("results/small2"),
    "structured_nr": lambda: _structured_nr("results/structured_nr"),
    "small2_comparisons": lambda: _comparisons("results/small2"),
    "small2_brief": lambda: _brief("results/small2"),
    "small2_transfer": lambda: _set_blocks("results/small2", TRANSFER, "no_pooler"),
    "small2_cross": lambda: _set_blocks("results/small2", CROSS, "no_pooler"),
    "structured_imp": lambda: _structured_imp("results/small2"),
    "structured_brief": lambda: _structured_brief("results/small2", "results/structured_nr", "results/structured_rewind"),
    "structured_rewind": lambda: _structured_rewind("results/structured_rewind", "results/structured_nr"),
}


def render_file(text, only=None):
    """``text`` with every generated block rewritten (``only``: a set of names)."""
    def sub(m):
        name = m.group("name")
        if only is not None and name not in only:
            return m.group(0)
        if name not in GENERATORS:
            raise KeyError(f"unknown generated block '{name}'")
        return m.group(1) + GENERATORS[name]().rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(sub, text)


def doc_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def stale(files=None):
    """The files whose generated blocks differ from what the generators write now (the records
    are read afresh)."""
    _report_text.cache_clear()
    return [f for f in files or doc_files() if f.is_file() and render_file(f.read_text()) != f.read_text()]
