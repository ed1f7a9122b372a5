"""The recipes' command line: plan a recipe from the environment, print the plan, run its queue.

``scripts/glue_tickets.sh``, ``transfer.sh``, ``imp_budget.sh``, ``squad_tickets.sh``,
``mlm_tickets.sh`` and ``structured_nr.sh`` are thin wrappers around it (their headers document the settings, which are
environment variables); ``--dry-run`` prints every command and marks the finished runs. Each
recipe is a function of :class:`utils.recipe_lib.Settings` returning a
:class:`utils.recipe_lib.Plan` (:mod:`utils.recipe_glue`, :mod:`utils.recipe_text`); the queue
is :func:`utils.queue.run_queue`. A setting a recipe cannot honour: one ``error:`` line on
stderr, exit code 2, before anything runs.

    python utils/recipes.py glue_tickets --dry-run
"""
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (the shell wrappers): the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.queue import run_queue  # noqa: E402
from utils.recipe_glue import glue_tickets, imp_budget, transfer  # noqa: E402
from utils.recipe_lib import RecipeError, Settings  # noqa: E402
from utils.recipe_structured import structured_nr  # noqa: E402
from utils.recipe_text import mlm_tickets, squad_tickets  # noqa: E402

RECIPES = {"glue_tickets": glue_tickets, "transfer": transfer, "imp_budget": imp_budget,
           "squad_tickets": squad_tickets, "mlm_tickets": mlm_tickets, "structured_nr": structured_nr}
FAMILY = {"squad_tickets": "squad", "mlm_tickets": "mlm"}  # the default OUT: runs/<family>_<profile>


def plan(name, env, dry_run=False):
    """The :class:`utils.recipe_lib.Plan` of recipe ``name`` under the settings ``env``."""
    s = Settings(env, FAMILY.get(name, "glue"))
    s.dry_run = dry_run
    return s, RECIPES[name](s)


def main(argv, env=None):
    """``NAME [--dry-run]``; returns the exit code."""
    if not argv or argv[0] not in RECIPES:
        print(f"usage: python utils/recipes.py {{{','.join(RECIPES)}}} [--dry-run]", file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    try:
        bad = [a for a in args if a != "--dry-run"]
        if bad:
            raise RecipeError(f"unknown argument {bad[0]} (only --dry-run; settings are environment variables)")
        s, p = plan(name, os.environ if env is None else env, dry_run="--dry-run" in args)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in p.notes + p.header:
        print(line, flush=True)
    if run_queue(p.runs, dry_run=s.dry_run, jobs=s.jobs):
        return 1
    for line in p.footer:
        print(line.replace("all runs finished;", "dry run, nothing ran;") if s.dry_run else line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
