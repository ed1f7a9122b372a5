"""What the recipes share: their settings from the environment (:class:`Settings`), shell
quoting, the one-shot masks, the per-method fine-tuning flags, the IMP ticket a run wrote, the
plan of one task's runs (:func:`tickets_plan`) and the disk estimate. The recipes themselves are
:mod:`utils.recipe_glue` and :mod:`utils.recipe_text`; :mod:`utils.recipes` runs them.
"""
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.profiles import MASK_METHODS
from utils.queue import ROOT, Run

SETS_KNOWN = ("paper", "no_pooler", "heads_ffn")
IMP_SPARSITIES = "10 20 30 40 50 60 70 80 90"
SEED_LIST = re.compile(r"^\s*([1-9][0-9]*\s*)+$")


class RecipeError(Exception):
    """A setting the recipe cannot honour: one line on stderr, exit code 2, nothing run."""


def q(text):
    """``text`` as one shell word, as bash's ``printf %q`` writes it (a backslash before every
    character that is not plainly safe), so a printed command runs as printed."""
    text = str(text)
    if text == "":
        return "''"
    return "".join(c if re.match(r"[A-Za-z0-9_./:,+@%=^-]", c) else "\\" + c for c in text)


def whole_number(name, value, least):
    if re.fullmatch(r"[0-9]+", value) and int(value) >= least:
        return int(value)
    if least >= 1:
        raise RecipeError(f"{name} must be a positive whole number, not '{value}'")
    raise RecipeError(f"{name} must be a whole number >= {least}, not '{value}'")


def abs_path(path, base):
    """An absolute path without . or .. parts (lexical: nothing on disk is read)."""
    parts = []
    for part in (path if path.startswith("/") else f"{base}/{path}").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            parts = parts[:-1]
        else:
            parts.append(part)
    return "/" + "/".join(parts)


@dataclass
class Plan:
    """What a recipe prints before its queue (``header``), its runs, and after (``footer``)."""
    header: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    footer: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # printed first, while planning

    def add(self, stage, marker, log, *cmd):
        """Queue one run; its command is one line with single spaces (a path's spaces are escaped)."""
        self.runs.append(Run(stage, str(marker), str(log), re.sub(" {2,}", " ", " ".join(cmd)).strip()))


def _start_folder(env):
    """The folder the recipe was started in, as the shell named it (its $PWD, symlinks kept)."""
    pwd = env.get("PWD")
    try:
        if pwd and os.path.samefile(pwd, "."):
            return pwd
    except OSError:
        pass
    return os.getcwd()


class Settings:
    """The environment a recipe reads: ``s.get("X", default)`` (an empty value means the default,
    as ``${X:-default}``), paths made absolute (:meth:`path`), and what every recipe shares."""

    def __init__(self, env, family):
        self.env, self.family = dict(env), family
        self.pwd = _start_folder(self.env)
        self.dry_run = False
        self.python = self.get("PYTHON", "python")
        self.jobs = whole_number("JOBS", self.get("JOBS", "1"), 1)
        self.ngpu = whole_number("NGPU", self.get("NGPU", "0"), 0)
        self.nnodes = whole_number("NNODES", self.get("NNODES", "1"), 1)
        self.profile = self.get("PROFILE", "small")
        self.model = self.path("MODEL", "../shared/data/models/all-MiniLM-L6-v2")
        self.out = self.path("OUT", f"runs/{family}_{self.profile}")
        self.imp_seed = int(self.get("IMP_SEED", "57"))
        self.extra = self.get("EXTRA", "")
        self.amp = self.get("AMP_GPU", "")  # fp32 as the paper; --fp16 or --bf16 for mixed precision

    def get(self, name, default=""):
        return self.env.get(name) or default

    def path(self, name, default):
        """A user's value from the folder the recipe was started in, the default from the repository root."""
        value = self.env.get(name, "")
        return abs_path(value, self.pwd) if value else abs_path(default, str(ROOT))

    @property
    def launch(self):
        """The launcher of a training script: python, or torchrun with one process per GPU."""
        if self.ngpu > 1 or self.nnodes > 1:
            return f"torchrun --nproc_per_node {max(self.ngpu, 1)} {self.get('TORCHRUN_ARGS', '')}"
        return self.python

    def per_process(self, batch):
        """Per-process batch that keeps the global batch over every process of every node."""
        procs = max(self.ngpu, 1) * self.nnodes
        if batch % procs:
            raise RecipeError(f"batch {batch} does not split over {procs} processes")
        return batch // procs

    def seeds(self, dense="1 2 3", imp="", omp="", random="", reinit=""):
        """Fine-tuning seeds per method; a method's list defaults to MASK_SEEDS [1]."""
        self.mask_seeds = self.get("MASK_SEEDS", "1")
        self.seed_lists = {"dense": self.get("SEEDS", dense or "1 2 3"), "imp": self.get("SEEDS_IMP", imp or self.mask_seeds),
                           "omp": self.get("SEEDS_OMP", omp or self.mask_seeds),
                           "random": self.get("SEEDS_RANDOM", random or self.mask_seeds),
                           "reinit": self.get("SEEDS_REINIT", reinit or self.mask_seeds),
                           "shuffled": self.get("SEEDS_SHUFFLED", self.mask_seeds)}
        for value in self.seed_lists.values():
            if not SEED_LIST.match(value):
                raise RecipeError(f"seeds must be positive whole numbers separated by spaces, not '{value}'")

    def seeds_of(self, method):
        return self.seed_lists.get(method, self.mask_seeds).split()

    def check(self, sparsities, sets, methods):
        """Refuse a sparsity IMP never writes (it prunes 10 % per event), an unknown set or method."""
        if not sparsities.split():
            raise RecipeError("SPARSITIES is empty (percent, of 10 20 30 40 50 60 70 80 90)")
        if not sets.split():
            raise RecipeError("SETS is empty (of paper no_pooler heads_ffn)")
        for sp in sparsities.split():
            if not re.fullmatch(r"[1-9]0", sp):
                raise RecipeError(f"SPARSITIES: '{sp}' is not a sparsity IMP writes (percent, of {IMP_SPARSITIES}: "
                                  "IMP prunes 10 % per event)")
        for name in sets.split():
            set_flags(name)
            if name != base_set(name) and re.search("taylor|fisher", name) and "omp" in methods.split():
                raise RecipeError(f"METHODS omp with SETS {name}: one-shot masks by a gradient score come from "
                                  "oneshot_structured.py (scripts/structured_nr.sh), not oneshot.py")
        for m in methods.split():
            if m not in MASK_METHODS:
                raise RecipeError(f"unknown method '{m}' in METHODS (imp random omp reinit shuffled)")
        self.sparsities, self.sets, self.methods = sparsities.split(), sets.split(), methods.split()

    def need_model(self, what):
        if not os.path.isdir(self.model) and not self.dry_run:
            raise RecipeError(f"MODEL={self.model} is not a folder; pass MODEL=<local BERT checkpoint> {what}")


STRUCTURED = re.compile(r"heads_ffn(?:_(magnitude|layer_norm_magnitude|taylor|fisher)(?:_(size|none|layer))?)?")


def set_flags(name, imp=True):
    """The pruning flags of a prunable set. ``heads_ffn_<score>[_<normalise>]`` is a structured set
    whose IMP ranks heads and neurons by another score (``--structure_score``, ``--score_normalise``);
    its random and one-shot masks are those of ``heads_ffn`` (``imp=False``: the flags of those)."""
    if name in ("paper", "no_pooler"):
        return f"--prunable_set {name}"
    m = STRUCTURED.fullmatch(name)
    if not m:
        raise RecipeError(f"unknown set '{name}' in SETS (paper no_pooler heads_ffn); heads_ffn_<score>[_<normalise>] "
                          "ranks structured IMP's units by another score")
    score, norm = m.groups()
    extra = (f" --structure_score {score}" if score else "") + (f" --score_normalise {norm}" if norm else "")
    return "--structure heads_ffn" + (extra if imp else "")


def base_set(name):
    """The set whose random and one-shot masks a set uses: ``heads_ffn`` for its score variants."""
    return "heads_ffn" if name.startswith("heads_ffn") else name


def ticket_mask(imp_dir, sparsity, expected):
    """The IMP ticket of an IMP run at a sparsity, from its results.json (whatever the round
    length); before the run has written it, the path the recipe expects."""
    try:
        masks = json.loads((Path(imp_dir) / "results.json").read_text()).get("masks", [])
        return next(str(Path(imp_dir) / m["path"]) for m in masks if round(m["sparsity"]) == round(float(sparsity)))
    except (OSError, ValueError, StopIteration, AttributeError, KeyError, TypeError):
        return str(expected)


def model_sizes(model):
    """(prunable weights, bytes of the weights file) from the checkpoint (BERT-base's without one)."""
    try:
        c = json.loads((Path(model) / "config.json").read_text())
        h, i, n = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
        prunable = n * (4 * h * h + 2 * h * i) + h * h
    except (OSError, KeyError, ValueError, TypeError):
        prunable = 85_524_480
    w = Path(model) / "model.safetensors"
    return prunable, w.stat().st_size if w.is_file() else 4 * 110_000_000


def oneshot_masks(s, plan, head, sets=None, sparsities=None, methods=None):
    """Random and OMP masks at every sparsity and prunable set (they do not depend on the task)
    and the layer-shuffled weights, as stage-1 runs. Random pruning draws a fresh mask for every
    fine-tuning seed k (mask seed IMP_SEED + k - 1: seed 1's is the mask of earlier records).
    Returns how many masks it plans."""
    n = 0
    methods = methods or s.methods
    for SET in dict.fromkeys(base_set(x) for x in sets or s.sets):  # one mask per base set
        for sp in sparsities or s.sparsities:
            rate = "1.0" if sp == "100" else f"0.{int(sp):02d}"
            common = f"{s.python} oneshot.py --weight %s --model {head} --rate {rate} --model_name_or_path {q(s.model)}"
            if "random" in methods:
                for seed in s.seeds_of("random"):
                    d = random_mask_dir(s, SET, sp, seed)
                    _mask_must_rerun(s, plan, f"{d}/mask_provenance.json", f"{d}/mask.pt")
                    plan.add(1, f"{d}/mask_provenance.json", f"{d}.log", common % "rand",
                             f"--output_dir {q(d)} {set_flags(SET, imp=False)} --seed {s.imp_seed + int(seed) - 1} "
                             "--overwrite_output_dir")
                    n += 1
            if "omp" in methods:
                d = f"{s.out}/masks/omp_{SET}_{sp}"
                _mask_must_rerun(s, plan, f"{d}/mask_provenance.json", f"{d}/mask.pt")
                plan.add(1, f"{d}/mask_provenance.json", f"{d}.log", common % "pre",
                         f"--output_dir {q(d)} {set_flags(SET, imp=False)} --seed {s.imp_seed} --overwrite_output_dir")
                n += 1
    if "shuffled" in methods:
        _mask_must_rerun(s, plan, f"{s.out}/masks/shuffle_weight_provenance.json", f"{s.out}/masks/shuffle_weight.pt")
        plan.add(1, f"{s.out}/masks/shuffle_weight_provenance.json", f"{s.out}/masks/shuffle.log",
                 f"{s.python} pertub_weight.py --model_name_or_path {q(s.model)} --output "
                 f"{q(s.out + '/masks/shuffle_weight.pt')} --seed {s.imp_seed}")
    return n


def _mask_must_rerun(s, plan, marker, mask):
    """A one-shot mask whose record came from a slim copy (its provenance, the run's marker,
    without the mask file) is made again: the marker is removed (except under --dry-run), so the
    fine-tunes still to run find their mask. The mask depends only on the checkpoint and the
    seed, so it comes back with the same values."""
    if os.path.exists(marker) and not os.path.exists(mask):
        plan.notes.append(f"note: {mask} is missing (a slim record keeps only its provenance): it is made again")
        if not s.dry_run:
            os.remove(marker)


def random_mask_dir(s, SET, sp, seed):
    return f"{s.out}/masks/random_{base_set(SET)}_{sp}_s{seed}"


IMP_MASKED = ("imp", "reinit", "shuffled")  # the methods that fine-tune an IMP run's mask


def method_flags(s, method, SET, sp, ticket, seed):
    """The *_trans.py flags of one method: the ticket (IMP mask on theta0), re-init (on random
    weights), random (a random mask on theta0), OMP (theta0's own magnitude mask), shuffled (the
    IMP mask on layer-shuffled theta0)."""
    return {"imp": f"--dir pre --mask_dir {q(ticket)}", "reinit": f"--dir rand --mask_dir {q(ticket)}",
            "random": f"--dir pre --mask_dir {q(random_mask_dir(s, SET, sp, seed) + '/mask.pt')}",
            "omp": f"--dir pre --mask_dir {q(f'{s.out}/masks/omp_{base_set(SET)}_{sp}/mask.pt')}",
            "shuffled": f"--dir pre --weight_pertub {q(s.out + '/masks/shuffle_weight.pt')} --mask_dir {q(ticket)}",
            }[method]


def _imp_must_rerun(s, plan, out, SET, expect, tag=""):
    """An IMP record without its masks (copied from a slim record) runs again when a fine-tune
    still needs one of them (its complete.json is removed, except under --dry-run)."""
    imp_dir = f"{out}/imp_{SET}{tag}"
    if not os.path.exists(f"{imp_dir}/complete.json"):
        return
    for sp in s.sparsities:
        ticket = ticket_mask(imp_dir, sp, expect(imp_dir, sp))
        for method in (m for m in s.methods if m in IMP_MASKED):
            for seed in s.seeds_of(method):
                cell = f"{out}/{method}_{SET}{tag}_{sp}_s{seed}"
                if not os.path.exists(ticket) and not os.path.exists(f"{cell}/complete.json"):
                    plan.notes.append(f"note: {imp_dir} has no {ticket}, which {cell} needs: IMP runs again")
                    if not s.dry_run:
                        os.remove(f"{imp_dir}/complete.json")
                    return


def tickets_plan(s, plan, stages, out, scripts, common, imp_flags, ft_flags, expect, tag=""):
    """One task's runs: IMP per prunable set and the dense seeds (stage A), then every method at
    every sparsity with the mask fixed (stage B), seed-major: every cell's first seed, then every
    cell's second, so a queue stopped half-way leaves every cell covered at a lower n. Returns the
    number of IMP runs. ``tag`` names an IMP budget other than the profile's (see
    :func:`utils.recipe_glue.Glue.imp_tag`): it is added to the IMP run's folder and to the
    folders of the methods that use its masks (imp, reinit, shuffled), so two budgets of one set
    sit side by side and are never taken for one another."""
    (a, b), (imp_script, ft_script) = stages, scripts
    for SET in s.sets:
        d = f"{out}/imp_{SET}{tag}"
        _imp_must_rerun(s, plan, out, SET, expect, tag)
        plan.add(a, f"{d}/complete.json", f"{d}.log", f"{s.launch} {imp_script} {common} --output_dir {q(d)}",
                 f"{imp_flags} {set_flags(SET)} --save_round_weights 0 --seed {s.imp_seed}")
    for seed in s.seeds_of("dense"):
        d = f"{out}/dense_s{seed}"
        plan.add(a, f"{d}/complete.json", f"{d}.log",
                 f"{s.launch} {ft_script} {common} --output_dir {q(d)} --dir pre {ft_flags} --seed {seed}")
    tickets = {(SET, sp): ticket_mask(f"{out}/imp_{SET}{tag}", sp, expect(f"{out}/imp_{SET}{tag}", sp))
               for SET in s.sets for sp in s.sparsities}
    most = max(len(s.seeds_of(m)) for m in s.methods) if s.methods else 0
    for rank in range(most):
        for SET in s.sets:
            for sp in s.sparsities:
                for method in s.methods:
                    seeds = s.seeds_of(method)
                    if len(seeds) <= rank:
                        continue
                    cell = f"{SET}{tag}" if method in IMP_MASKED else SET
                    seed, d = seeds[rank], f"{out}/{method}_{cell}_{sp}_s{seeds[rank]}"
                    plan.add(b, f"{d}/complete.json", f"{d}.log",
                             f"{s.launch} {ft_script} {common} --output_dir {q(d)} "
                             f"{method_flags(s, method, SET, sp, tickets[SET, sp], seed)} {ft_flags} --seed {seed}")
    return len(s.sets)


def finish_lines(s, name, n_imp, masks_per_imp, n_oneshot, n_runs, tasks=None):
    """The plan's header: its settings and the disk it needs."""
    prunable, wbytes = model_sizes(s.model)
    mb = (n_imp * masks_per_imp * prunable + n_oneshot * (prunable + wbytes) + n_runs * 200000) // 1000000
    return [f"{name}: profile {s.profile}, {f'tasks [{tasks}], ' if tasks else ''}sets [{' '.join(s.sets)}], "
            f"sparsities [{' '.join(s.sparsities)}], methods [{' '.join(s.methods)}]",
            f"{name}: disk needed about {mb} MB under {s.out}"]
