"""The codebase keeps the shape someone taking it over can read: small modules, short functions,
a slim Trainer, imports at the top, a configuration nobody writes into."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_TRAINER_LINES = 400, 60, 200
# declarative flag lists: one add_argument after another, longer than a function should be
FLAG_LISTS = {("utils/args.py", "training_parser")}
# imports that stay inside functions, for a stated reason: only under torchrun, or only for figures
LAZY = re.compile(r"torch\.distributed|torch\.nn\.parallel|torch\.utils\.data\.distributed|matplotlib|torch\.utils\.tensorboard")


def sources():
    files = [*ROOT.glob("*.py"), *(ROOT / "utils").glob("*.py"), *(ROOT / "scripts").rglob("*.py")]
    return sorted(f for f in files if f.name != "__init__.py")


def rel(path):
    return str(path.relative_to(ROOT))


def test_no_module_over_400_lines():
    long = {rel(f): n for f in sources() if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_60_lines_and_trainer_under_200():
    long, trainer = {}, None
    for f in sources():
        for node in ast.walk(ast.parse(f.read_text())):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > MAX_FUNCTION_LINES \
                    and (rel(f), node.name) not in FLAG_LISTS:
                long[f"{rel(f)}:{node.name}"] = size
            if isinstance(node, ast.ClassDef) and node.name == "Trainer" and rel(f) == "utils/train.py":
                trainer = size
    assert long == {}
    assert trainer is not None and trainer < MAX_TRAINER_LINES


def test_imports_at_the_top_unless_lazy_for_a_reason():
    inside = []
    for f in sources():
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if not LAZY.search(names or ""):
                        inside.append(f"{rel(f)}:{node.lineno} {names}")
    assert inside == []


def test_the_configuration_is_frozen_and_compared_by_its_fields(tmp_path):
    from utils.config import Config, FrozenConfig
    from utils.resume import check_resumable

    import glue_trans

    argv = ["--task_name", "MRPC", "--data_dir", "d", "--model_name_or_path", "m", "--output_dir", str(tmp_path),
            "--do_train", "--learning_rate", "3e-5"]
    config = glue_trans.parse_args(argv)
    assert isinstance(config, Config) and config.learning_rate == 3e-5 and config.argv == argv
    with pytest.raises(FrozenConfig, match="--learning_rate cannot be set"):
        config.learning_rate = 1.0
    with pytest.raises(FrozenConfig):
        config.device = "cpu"  # a runtime attribute has no place in it
    assert "device" not in config and getattr(config, "prunable_set", None) is None  # the mask decides it
    changed = config.replace(learning_rate=1e-4)
    assert changed.learning_rate == 1e-4 and config.learning_rate == 3e-5 and changed.argv == argv
    with pytest.raises(FrozenConfig, match="no flag --nope"):
        config.replace(nope=1)
    # --resume compares the flags: keys args.json holds beside them (runtime, provenance, anything
    # a later version records) never make a run "another command"; a changed flag does
    saved = {**config.fields(), "device": "cuda:3", "world_size": 8, "something_new": [1, 2], "resume": False}
    (tmp_path / "args.json").write_text(json.dumps(saved))
    resumed = config.replace(resume=True) if "resume" in config else Config({**config.fields(), "resume": True})
    assert check_resumable(resumed) == "resume"
    saved["learning_rate"] = 2e-5
    (tmp_path / "args.json").write_text(json.dumps(saved))
    from utils.errors import UserError

    with pytest.raises(UserError, match=r"--learning_rate was 2e-05 in the run in .*, now 3e-05"):
        check_resumable(resumed)


def test_structure_resolves_the_prunable_set_when_parsing():
    import LT_glue

    base = ["--task_name", "MRPC", "--data_dir", "d", "--model_name_or_path", "m", "--output_dir", "o"]
    assert LT_glue.parse_args(base).prunable_set == "paper"
    assert LT_glue.parse_args([*base, "--structure", "heads_ffn"]).prunable_set == "no_pooler"
    with pytest.raises(SystemExit):
        LT_glue.parse_args([*base, "--structure", "heads_ffn", "--prunable_set", "paper"])


def test_the_runtime_is_found_once_and_recorded_beside_the_flags():
    import torch

    from utils.config import Runtime, setup_runtime

    import glue_trans

    config = glue_trans.parse_args(["--task_name", "MRPC", "--data_dir", "d", "--model_name_or_path", "m",
                                    "--output_dir", "o", "--no_cuda", "--bf16"])
    runtime = setup_runtime(config)
    assert runtime == Runtime(torch.device("cpu"), -1, 0, 1, 0, torch.bfloat16) and runtime.is_main
    assert runtime.record() == {"device": "cpu", "local_rank": -1, "rank": 0, "world_size": 1, "n_gpu": 0,
                                "amp_dtype": "torch.bfloat16"}
    with pytest.raises(Exception):
        runtime.rank = 1  # frozen too
