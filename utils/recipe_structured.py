"""The structured no-retraining study (``scripts/structured_nr.sh``): from fine-tuned dense
models, one-shot structured masks by each score (``oneshot_structured.py``: scores on training
batches, the mask, optional least-squares rescaling, evaluation without training), then a short
fine-tune of the chosen cells.

Settings (environment variables, defaults in brackets): TASK [STS-B], SEEDS of the dense models
[1 2], CELLS: SCORE:NORMALISE:RESCALE:RATE entries [fisher:none:1 and magnitude:size:0 at 30, 50
and 70 %; fisher:size:1 and taylor:size:1 at 50 %], SHORT: the cells also fine-tuned briefly
[fisher:none:1:50 magnitude:size:0:50], SHORT_EPOCHS [1], SHORT_LR [2e-5], OUT
[runs/structured_nr], MODEL, DATA; the dense fine-tunes use the ``small`` GLUE profile's flags.
"""
import re

from utils.recipe_glue import Glue
from utils.recipe_lib import Plan, RecipeError, q

CELLS = ("fisher:none:1:30 fisher:none:1:50 fisher:none:1:70 magnitude:size:0:30 magnitude:size:0:50 "
         "magnitude:size:0:70 fisher:size:1:50 taylor:size:1:50")
SHORT = "fisher:none:1:50 magnitude:size:0:50"
CELL = re.compile(r"(magnitude|layer_norm_magnitude|taylor|fisher):(size|none|layer):([01]):([1-9][0-9]?)")


def _cells(text, name):
    cells = text.split()
    for c in cells:
        if not CELL.fullmatch(c):
            raise RecipeError(f"{name}: '{c}' is not SCORE:NORMALISE:RESCALE:RATE (e.g. fisher:none:1:50)")
    return [c.split(":") for c in cells]


def cell_dir(s, score, norm, rescale, rate, seed):
    return f"{s.out}/{score}_{norm}_r{rescale}_{rate}_s{seed}"


def structured_nr(s):
    s.env.setdefault("PROFILE", "small")
    s.env.setdefault("SPARSITIES", "50")
    s.out = s.path("OUT", "runs/structured_nr")
    g, plan = Glue(s), Plan()
    task = s.get("TASK", "STS-B")
    seeds = s.get("SEEDS", "1 2").split()
    cells, short = _cells(s.get("CELLS", CELLS), "CELLS"), _cells(s.get("SHORT", SHORT), "SHORT")
    epochs, lr = s.get("SHORT_EPOCHS", "1"), s.get("SHORT_LR", "2e-5")
    rows = g.subset(task)
    for seed in seeds:  # stage 1: the dense models, saved (--save_model)
        d = f"{s.out}/dense_s{seed}"
        plan.add(1, f"{d}/complete.json", f"{d}.log", f"{s.launch} glue_trans.py {g.common(task)} --output_dir {q(d)}",
                 f"--dir pre {g.fine_tune_flags()} --save_model --seed {seed}")
    for seed in seeds:  # stage 2: one-shot structured masks, evaluated without training
        for score, norm, rescale, rate in cells:
            d = cell_dir(s, score, norm, rescale, rate, seed)
            plan.add(2, f"{d}/results.json", f"{d}.log",
                     f"{s.python} oneshot_structured.py --task_name {q(task)} --data_dir {q(s.data + '/' + task)}",
                     f"--model_name_or_path {q(f'{s.out}/dense_s{seed}/model')} --structure_score {score} "
                     f"--normalise {norm} --score_batches 16 --rate 0.{int(rate):02d} "
                     f"{'--rescale ' if rescale == '1' else ''}--do_eval {rows} --seed {seed} --output_dir {q(d)} "
                     "--overwrite_output_dir")
    for seed in seeds:  # stage 3: a short fine-tune of the chosen cells (the exported model, or dense + mask)
        for score, norm, rescale, rate in short:
            src = cell_dir(s, score, norm, rescale, rate, seed)
            model, mask = (f"{src}/model", "") if rescale == "1" else \
                (f"{s.out}/dense_s{seed}/model", f"--mask_dir {q(src + '/mask.pt')}")
            d = f"{src}_ft"
            plan.add(3, f"{d}/complete.json", f"{d}.log", f"{s.launch} glue_trans.py {g.common(task, model)} --dir pre {mask}",
                     f"--output_dir {q(d)} --learning_rate {lr} --num_train_epochs {epochs} --logging_steps 0 "
                     f"--save_steps 0 --seed {seed}")
    plan.header = [f"structured_nr: {task}, dense seeds [{' '.join(seeds)}], {len(cells)} cells per seed, "
                   f"{len(short)} briefly fine-tuned ({epochs} epoch(s) at lr {lr})"]
    plan.footer = [f"structured_nr: all runs finished; table: {s.python} scripts/build_docs.py"]
    return plan
