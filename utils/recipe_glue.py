"""The GLUE recipes: tickets end to end (``glue_tickets``), tickets moved between tasks
(``transfer``) and the IMP budget study (``imp_budget``), from a profile of
:mod:`utils.profiles` and the environment (``scripts/glue_tickets.sh`` documents the settings).
"""
import math
import os
import re

from utils.profiles import FIXED, GLUE, OVERRIDABLE, SEED_KEYS
from utils.recipe_lib import (
    SEED_LIST,
    Plan,
    RecipeError,
    abs_path,
    finish_lines,
    oneshot_masks,
    q,
    ticket_mask,
    tickets_plan,
    whole_number,
)

PAPER_ROUND = {"MNLI": 36813, "QQP": 34110, "QNLI": 9819, "SST-2": 6312, "CoLA": 801, "STS-B": 537, "MRPC": 342,
               "RTE": 231, "WNLI": 57}
PAPER_ROWS = {"MNLI": 392702, "QQP": 363846, "QNLI": 104743, "SST-2": 67349, "CoLA": 8551, "STS-B": 5749,
              "MRPC": 3668, "RTE": 2490, "WNLI": 635}


class Glue:
    """A GLUE profile with the user's settings over it, and the flags every GLUE run shares."""

    def __init__(self, s):
        self.s = s
        s.data = s.path("DATA", "../shared/data/glue")
        if s.profile not in GLUE:
            names = list(GLUE)
            raise RecipeError(f"PROFILE must be {', '.join(names[:-1])} or {names[-1]}, not '{s.profile}'")
        p = GLUE[s.profile]
        self.v = {k: s.get(k, p[k]) for k in OVERRIDABLE}
        self.v.update({k: p[k] for k in FIXED})
        s.seeds(*(p[k] for k in SEED_KEYS))
        s.check(self.v["SPARSITIES"], self.v["SETS"], self.v["METHODS"])
        self.round_epochs = whole_number("ROUND_EPOCHS", self.v["ROUND_EPOCHS"], 1)
        if self.v["SCHEDULE"] not in ("per_round", "whole_run"):
            raise RecipeError(f"SCHEDULE must be per_round or whole_run, not '{self.v['SCHEDULE']}'")
        self.subset_seed = s.get("SUBSET_SEED", "0")
        self.batch = int(self.v["BATCH"])
        self.batch_per_gpu = s.per_process(self.batch)
        s.need_model("and DATA=<GLUE root>")
        self.tasks = self.v["TASKS"].split()
        self.events = max(int(x) for x in s.sparsities) // 10  # IMP stops after the event reaching the top
        self.imp_tag = self._imp_tag(p)

    def _imp_tag(self, p):
        """The suffix of an IMP run's folder when its round budget is not the profile's:
        ``_r<ROUND_EPOCHS>``, ``_lr<IMP_LR>``, ``_<SCHEDULE>`` for each setting that differs
        (``imp_heads_ffn_lr1e-4``), so runs of two budgets of one set are kept apart; empty
        with the profile's budget, so existing records keep their names
        (``IMP_TAG=none`` keeps the set's name whatever the budget, for records made before.)"""
        v, mode = self.v, self.s.get("IMP_TAG", "auto")
        if mode not in ("auto", "none"):
            raise RecipeError(f"IMP_TAG must be auto or none, not '{mode}'")
        try:
            lr = float(v["IMP_LR"])
        except ValueError:
            raise RecipeError(f"IMP_LR: '{v['IMP_LR']}' is not a number") from None
        if mode == "none":
            return ""
        parts = [f"_r{self.round_epochs}" if self.round_epochs != int(p["ROUND_EPOCHS"]) else "",
                 f"_lr{v['IMP_LR']}" if lr != float(p["IMP_LR"]) else "",
                 f"_{v['SCHEDULE']}" if v["SCHEDULE"] != p["SCHEDULE"] else ""]
        return "".join(parts)

    def max_train(self, task):
        """The training-row cap (none for the tasks in TRAIN_ALL)."""
        return "" if task in self.v["TRAIN_ALL"].split() else self.v["MAX_TRAIN"]

    def subset(self, task):
        """The row flags: a cap, a seeded random subset for the tasks in SUBSET_TASKS, a dev cap."""
        cap, v = self.max_train(task), self.v
        seeded = f"--train_subset_seed {self.subset_seed}" if task in v["SUBSET_TASKS"].split() and cap else ""
        return " ".join(x for x in (f"--max_train_samples {cap}" if cap else "", seeded,
                                    f"--max_eval_samples {v['MAX_EVAL']}" if v["MAX_EVAL"] else "") if x)

    def common(self, task, model=None):
        """The flags every GLUE run of ``task`` shares (``model``: another checkpoint than MODEL)."""
        s = self.s
        return (f"--task_name {q(task)} --data_dir {q(s.data + '/' + task)} --model_type bert --model_name_or_path "
                f"{q(model or s.model)} --do_train --do_eval --do_lower_case --max_seq_length {self.v['SEQ']} "
                f"--per_gpu_train_batch_size {self.batch_per_gpu} --per_gpu_eval_batch_size 64 {self.subset(task)} "
                f"{s.amp} --overwrite_output_dir {s.extra}")

    def train_rows(self, task):
        """Rows the run trains on (header excluded; CoLA has none), capped."""
        f = f"{self.s.data}/{task}/train.tsv"
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                n = fh.read().count(b"\n")
            n = n if task == "CoLA" else n - 1
        else:
            n = PAPER_ROWS.get(task, 0)
        cap = self.max_train(task)
        return min(n, int(cap)) if cap else n

    def round_steps(self, task):
        """Updates per IMP round: the paper's (global batch 32 on any NGPU), else ROUND_EPOCHS epochs."""
        if self.s.profile == "paper":
            return PAPER_ROUND[task]
        return self.round_epochs * math.ceil(self.train_rows(task) / self.batch)

    def imp_stop(self, steps):
        """paper: all 10 events over 30 epochs (the schedule spans them); else stop at the top sparsity."""
        return "" if self.s.profile == "paper" else f"--max_steps {steps * self.events}"

    def fine_tune_flags(self):
        return f"--learning_rate {self.v['LR']} --num_train_epochs {self.v['FT_EPOCHS']} --logging_steps 0 --save_steps 0"


def glue_tickets(s):
    """Per task: IMP per set and the dense seeds (stage A; first of all the one-shot masks), then
    every fixed-mask fine-tune (stage B); tasks one after the other, so a killed recipe has whole
    tasks done."""
    g, plan = Glue(s), Plan()
    n_imp = n_oneshot = 0
    for ti, task in enumerate(g.tasks):
        steps = g.round_steps(task)
        if ti == 0:
            n_oneshot += oneshot_masks(s, plan, "glue")
        imp_flags = (f"--learning_rate {g.v['IMP_LR']} --evaluate_during_training --logging_steps {steps} "
                     f"--save_steps {steps} --num_train_epochs {g.round_epochs * 10} {g.imp_stop(steps)} "
                     f"--round_schedule {g.v['SCHEDULE']}")
        n_imp += tickets_plan(s, plan, (2 * ti + 1, 2 * ti + 2), f"{s.out}/{task.lower()}", ("LT_glue.py", "glue_trans.py"),
                              g.common(task), imp_flags, g.fine_tune_flags(),
                              lambda d, sp, steps=steps: f"{d}/checkpoint-{steps * int(sp) // 10}/mask.pt", g.imp_tag)
    plan.header = finish_lines(s, "glue_tickets", n_imp, g.events, n_oneshot, len(plan.runs), " ".join(g.tasks))
    plan.footer = [f"glue_tickets: all runs finished; report: {s.python} report.py {s.out}"]
    return plan


def _transfer_settings(s, g):
    sp = s.get("TRANSFER_SPARSITY", "70")
    the_set = s.get("SET", s.sets[0])
    with_omp, seeds = s.get("WITH_OMP", "1"), s.get("SEEDS_TRANSFER", s.mask_seeds)
    if not re.fullmatch(r"[1-9]0", sp):
        raise RecipeError(f"TRANSFER_SPARSITY: '{sp}' is not a sparsity IMP writes (percent, of 10 20 30 40 50 60 "
                          "70 80 90)")
    if the_set not in ("paper", "no_pooler", "heads_ffn"):
        raise RecipeError(f"SET: unknown set '{the_set}' (paper no_pooler heads_ffn)")
    if with_omp not in ("0", "1"):
        raise RecipeError(f"WITH_OMP must be 0 or 1, not '{with_omp}'")
    if not SEED_LIST.match(seeds):
        raise RecipeError(f"SEEDS_TRANSFER: seeds must be positive whole numbers separated by spaces, not '{seeds}'")
    return sp, the_set, with_omp == "1", seeds.split()


def transfer(s):
    """Every source's ticket at TRANSFER_SPARSITY (the tasks' IMP runs, EXTRA_SOURCES name=DIR,
    OMP) fine-tuned on every target task but its own (the diagonal is glue_tickets' cells; OMP's
    row is glue_tickets' OMP runs, the mask being one for all tasks)."""
    g, plan = Glue(s), Plan()
    sp, the_set, with_omp, seeds = _transfer_settings(s, g)
    masks = {}
    for src in s.get("SOURCES", " ".join(g.tasks)).split():
        d = f"{s.out}/{src.lower()}/imp_{the_set}{g.imp_tag}"
        masks[src.lower()] = ticket_mask(d, sp, f"{d}/checkpoint-{g.round_steps(src) * int(sp) // 10}/mask.pt")
    for pair in s.get("EXTRA_SOURCES", "").split():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*=.+", pair):
            raise RecipeError(f"EXTRA_SOURCES: '{pair}' is not a name=DIR pair (e.g. "
                              'EXTRA_SOURCES="mlm=runs/mlm_small/mlm/imp_no_pooler")')
        name, folder = pair.split("=", 1)
        if name in masks or (name == "omp" and with_omp):
            raise RecipeError(f"EXTRA_SOURCES: the name '{name}' is already a source (a task of SOURCES, or omp); "
                              "give another name")
        d = abs_path(folder, s.pwd)  # relative to the folder the recipe was started in
        masks[name] = ticket_mask(d, sp, f"{d}/<mask at {sp}% once the run has written it>")
    if with_omp:
        oneshot_masks(s, plan, "glue", sets=[the_set], sparsities=[sp], methods=["omp"])
        masks["omp"] = f"{s.out}/masks/omp_{the_set}_{sp}/mask.pt"
    targets = s.get("TARGETS", " ".join(g.tasks)).split()
    for name in sorted(masks):
        for task in targets:
            if name == task.lower():
                continue  # the diagonal: glue_tickets.sh's imp_<set>_<sp>_s* runs
            for seed in seeds:
                # the OMP mask is the same on every task: its cell on a target is glue_tickets.sh's
                # OMP run of that target and seed (run once, skipped when finished, counted once)
                d = (f"{s.out}/{task.lower()}/omp_{the_set}_{sp}_s{seed}" if name == "omp" else
                     f"{s.out}/transfer/{name}_to_{task.lower()}_{the_set}_{sp}_s{seed}")
                plan.add(2, f"{d}/complete.json", f"{d}.log",
                         f"{s.launch} glue_trans.py {g.common(task)} --output_dir {q(d)} --dir pre --mask_dir "
                         f"{q(masks[name])} {g.fine_tune_flags()} --seed {seed}")
    plan.header = [f"transfer: profile {s.profile}, sources [{' '.join(sorted(masks))}], targets "
                   f"[{' '.join(targets)}] at {sp}% ({the_set})",
                   f"transfer: disk needed about {len(plan.runs) // 5 + 1} MB under {s.out}/transfer (no weights "
                   "are kept)"]
    plan.footer = [f"transfer: all runs finished; report: {s.python} report.py {s.out}"]
    return plan


def imp_budget(s):
    """IMP runs only, one per budget EPOCHS:LR:SCHEDULE (BUDGETS), on one task, with the OMP masks
    of the same sparsities: how far IMP moves from OMP (scripts/imp_budget.py tabulates it)."""
    s.out = s.path("OUT", "runs/imp_budget")
    s.seeds()
    s.data = s.path("DATA", "../shared/data/glue")
    task = s.get("TASK", "STS-B")
    budgets = s.get("BUDGETS", "3:1e-4:whole_run 3:3e-4:whole_run 1:1e-4:per_round 1:3e-4:per_round").split()
    sparsities = s.get("SPARSITIES", "10 20 30 40 50 60 70").split()
    max_train, subset_seed, batch, seq = int(s.get("MAX_TRAIN", "2000")), s.get("SUBSET_SEED", "0"), 32, 128
    s.need_model("and DATA=<GLUE root>")
    for sp in sparsities:
        if not (re.fullmatch(r"[0-9]+", sp) and int(sp) % 10 == 0 and 10 <= int(sp) <= 90):
            raise RecipeError(f"SPARSITIES: {sp} is not one IMP writes (10, 20, ... 90)")
    s.sparsities, s.sets, s.methods = sparsities, ["no_pooler"], ["omp"]
    with open(f"{s.data}/{task}/train.tsv", "rb") as fh:
        rows = fh.read().count(b"\n") - (0 if task == "CoLA" else 1)
    rows, events, plan = min(rows, max_train), max(int(x) for x in sparsities) // 10, Plan()
    n_oneshot = oneshot_masks(s, plan, "glue")
    for b in budgets:
        ep, lr, sched = (b.split(":") + ["", "", ""])[:3]
        if sched not in ("per_round", "whole_run"):
            raise RecipeError(f"BUDGETS entry '{b}': EPOCHS:LR:SCHEDULE with SCHEDULE per_round or whole_run")
        if not re.fullmatch(r"[1-9][0-9]*", ep):
            raise RecipeError(f"BUDGETS entry '{b}': EPOCHS must be a whole number")
        steps, d = int(ep) * math.ceil(rows / batch), f"{s.out}/{task.lower()}/imp_no_pooler_r{ep}_lr{lr}_{sched}"
        plan.add(1, f"{d}/complete.json", f"{d}.log",
                 f"{s.launch} LT_glue.py --task_name {q(task)} --data_dir {q(s.data + '/' + task)} --model_type bert "
                 f"--model_name_or_path {q(s.model)} --do_train --do_eval --do_lower_case --max_seq_length {seq} "
                 f"--per_gpu_train_batch_size {s.per_process(batch)} --per_gpu_eval_batch_size 64 --learning_rate "
                 f"{lr} --max_train_samples {max_train} --train_subset_seed {subset_seed} --overwrite_output_dir "
                 f"--output_dir {q(d)} --evaluate_during_training --logging_steps {steps} --save_steps {steps} "
                 f"--num_train_epochs {int(ep) * 10} --max_steps {steps * events} --round_schedule {sched} "
                 f"--prunable_set no_pooler --save_round_weights 1 --seed {s.imp_seed} {s.extra}")
    plan.header = finish_lines(s, "imp_budget", len(budgets), events, n_oneshot, len(plan.runs), task)
    plan.footer = [f"imp_budget: all runs finished; report: {s.python} report.py {s.out}",
                   f"imp_budget: table: {s.python} scripts/imp_budget.py {s.out}"]
    return plan
