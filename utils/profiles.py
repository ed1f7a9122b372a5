"""The GLUE recipes' budget profiles as data: what the GLUE recipes plan with
(:mod:`utils.recipe_glue`) and what the docs' profile table shows (:func:`markdown_table`),
so the two cannot disagree."""
# The methods of the paper's Table 2, as the recipes plan them and the report shows them: the full
# model, then the fine-tunes with a fixed mask (the ticket, random pruning, one-shot magnitude
# pruning, the ticket on random weights, the ticket on layer-shuffled weights).
METHODS = ("full", "imp", "random", "omp", "reinit", "shuffled")
MASK_METHODS = METHODS[1:]
FROM_TICKET = ("imp", "reinit", "shuffled")  # methods that use an IMP ticket (and so a series)

# Settings a user may override with an environment variable of the same name (the profile's
# value is the default), and settings fixed by the profile.
OVERRIDABLE = ("TASKS", "SPARSITIES", "METHODS", "SETS", "TRAIN_ALL", "SUBSET_TASKS", "MAX_EVAL", "ROUND_EPOCHS",
               "SCHEDULE", "IMP_LR")
FIXED = ("LR", "BATCH", "SEQ", "FT_EPOCHS", "MAX_TRAIN")
SEED_KEYS = ("SEEDS", "SEEDS_IMP", "SEEDS_OMP", "SEEDS_RANDOM", "SEEDS_REINIT")

GLUE = {
    "paper": {  # the paper's commands: full data, lr 2e-5, IMP rounds of 3 epochs, 3-epoch fine-tunes
        "about": "GPU box: the paper's commands",
        "TASKS": "MNLI QQP STS-B WNLI QNLI MRPC RTE SST-2 CoLA", "SPARSITIES": "10 20 30 40 50 60 70 80 90",
        "METHODS": "imp random omp reinit shuffled", "SETS": "paper", "TRAIN_ALL": "", "SUBSET_TASKS": "",
        "MAX_EVAL": "", "ROUND_EPOCHS": "3", "SCHEDULE": "whole_run", "IMP_LR": "2e-5",
        "LR": "2e-5", "BATCH": "32", "SEQ": "128", "FT_EPOCHS": "3", "MAX_TRAIN": "",
        "SEEDS": "1 2 3", "SEEDS_IMP": "", "SEEDS_OMP": "", "SEEDS_RANDOM": "", "SEEDS_REINIT": ""},
    "small": {  # the small-scale reproduction on CPU: 2,000 training rows (STS-B a seeded subset that
        # spans its genres, MRPC the first rows, CoLA all 8,551: on 2,000 the dense model reached
        # only 11.3 Matthews), full dev sets, fine-tuning at lr 1e-4; IMP in the paper's round
        # length (as long as a fine-tune, the learning rate near-constant within a round) at
        # 3e-4: of the budgets scripts/imp_budget.sh measured, the one that moved the ticket
        # furthest from OMP while IMP still learned (docs/results.md)
        "about": "this CPU: the small-scale reproduction",
        "TASKS": "STS-B MRPC CoLA", "SPARSITIES": "40 50 60 70", "METHODS": "imp omp random reinit",
        "SETS": "no_pooler", "TRAIN_ALL": "CoLA", "SUBSET_TASKS": "STS-B", "MAX_EVAL": "",
        "ROUND_EPOCHS": "3", "SCHEDULE": "whole_run", "IMP_LR": "3e-4",
        "LR": "1e-4", "BATCH": "32", "SEQ": "128", "FT_EPOCHS": "3", "MAX_TRAIN": "2000",
        "SEEDS": "1 2 3 4 5", "SEEDS_IMP": "1 2 3", "SEEDS_OMP": "1 2 3", "SEEDS_RANDOM": "1 2", "SEEDS_REINIT": "1"},
    "quick": {  # the README's quickstart: one task, minutes on 2 CPU cores (lr 2e-4 and 5-epoch
        # fine-tunes: at 1e-4 and 3 epochs the 50 % ticket reached only 31.7 Pearson)
        "about": "the quickstart, minutes on 2 CPU cores",
        "TASKS": "STS-B", "SPARSITIES": "50", "METHODS": "imp omp random", "SETS": "no_pooler", "TRAIN_ALL": "",
        "SUBSET_TASKS": "", "MAX_EVAL": "300", "ROUND_EPOCHS": "1", "SCHEDULE": "per_round", "IMP_LR": "2e-4",
        "LR": "2e-4", "BATCH": "32", "SEQ": "64", "FT_EPOCHS": "5", "MAX_TRAIN": "640",
        "SEEDS": "1 2", "SEEDS_IMP": "", "SEEDS_OMP": "", "SEEDS_RANDOM": "", "SEEDS_REINIT": ""},
}


def markdown_table():
    """The docs' profile table, from :data:`GLUE`."""
    names = list(GLUE)
    rows = [
        ("for", lambda p: p["about"]),
        ("tasks", lambda p: p["TASKS"].replace(" ", ", ")),
        ("training rows", lambda p: "all" if not p["MAX_TRAIN"] else
         f"{p['MAX_TRAIN']} (seeded subset: {p['SUBSET_TASKS'] or 'none'}; all rows: {p['TRAIN_ALL'] or 'none'})"),
        ("dev rows", lambda p: f"first {p['MAX_EVAL']}" if p["MAX_EVAL"] else "all"),
        ("learning rate, batch, sequence", lambda p: f"{p['LR']}, {p['BATCH']}, {p['SEQ']}"),
        ("IMP round", lambda p: f"{p['ROUND_EPOCHS']} epoch(s) at lr {p['IMP_LR']}, `--round_schedule {p['SCHEDULE']}`"),
        ("fine-tuning", lambda p: f"{p['FT_EPOCHS']} epochs"),
        ("sparsities (%)", lambda p: p["SPARSITIES"].replace(" ", ", ")),
        ("methods", lambda p: p["METHODS"].replace(" ", ", ")),
        ("prunable set", lambda p: f"`{p['SETS']}`"),
        ("seeds (how many): full model / ticket / OMP / random / re-init",
         lambda p: " / ".join(str(len(p[k].split()) if p[k] else 1) for k in SEED_KEYS)),
    ]
    out = ["| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    out += ["| " + label + " | " + " | ".join(fn(GLUE[n]) for n in names) + " |" for label, fn in rows]
    return "\n".join(out)
