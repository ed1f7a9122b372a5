"""LT_glue.py and glue_trans.py end to end on a tiny checkpoint and tiny TSV files."""
import json
import random
import shlex

import pytest
import torch
from safetensors.torch import load_file

import glue_trans
import LT_glue
import LT_pretrain
import LT_squad
import oneshot
import pertub_weight
import pretrain_trans
import squad_trans
from utils import pruning as P
from utils.errors import run_cli
from utils.glue import glue_experiment
from utils.lottery import run_imp, start_run
from utils.models import load_model

WORDS = "the cat sat on mat dog good bad movie film great not very it this that".split()


def write_mrpc(folder, n_train=48, n_dev=16, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = [header]
        for i in range(n):
            a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            rows.append(f"{i % 2}\t{i}\t{i + 1000}\t{a}\t{b}")
        (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def write_mnli(folder, n=24, seed=1):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["contradiction", "entailment", "neutral"]
    header = "\t".join(["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p",
                        "sentence1", "sentence2", "label1", "gold_label"])
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        rows = [header]
        for i in range(n):
            a = " ".join(rng.choice(WORDS) for _ in range(6))
            b = " ".join(rng.choice(WORDS) for _ in range(6))
            rows.append("\t".join([str(i), "0", "0", "g", "x", "x", "x", "x", a, b, "x", labels[i % 3]]))
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


def common(tiny_bert_dir, data, out, *extra):
    return ["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path", str(tiny_bert_dir),
            "--output_dir", str(out), "--cache_dir", str(out.parent / "cache"), "--do_train",
            "--per_gpu_train_batch_size", "8", "--seed", "57", "--overwrite_output_dir", *extra]


def masks_at(out, step):
    return P.load_mask(out / f"checkpoint-{step}" / "mask.pt")


def test_lt_glue_three_rounds_nested_and_rewound(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "imp"
    argv = common(tiny_bert_dir, data, out, "--evaluate_during_training", "--save_steps", "3",
                  "--logging_steps", "3", "--max_steps", "9", "--learning_rate", "1e-3")
    args = LT_glue.parse_args(argv)
    tokenizer, runtime = start_run(args, "LT_glue.py")
    experiment = glue_experiment(args, runtime, tokenizer)
    model = load_model("glue", args.model_name_or_path, num_labels=2)
    pretrained = P.snapshot_state(model)
    trainer = run_imp(args, runtime, model, experiment, "LT_glue.py")

    total = P.count_prunable(model)
    pruned, previous = 0, None
    for k, step in enumerate((3, 6, 9)):
        pruned += round(P.imp_amount(k) * (total - pruned))
        masks = masks_at(out, step)
        assert len(masks) == 13
        assert sum(int((~m).sum()) for m in masks.values()) == pruned
        assert abs(100.0 * pruned / total - 10 * (k + 1)) < 0.01
        report = json.loads((out / f"checkpoint-{step}" / "mask_sparsity.json").read_text())
        assert report["prunable"]["pruned"] == pruned
        if previous is not None:
            assert all(not bool((masks[key] & ~previous[key]).any()) for key in masks)
        previous = masks
        assert (out / f"checkpoint-{step}" / "model.safetensors").is_file()
    # after the last event the backbone is the pre-trained weights times the 30 % mask ...
    state = P.effective_state_dict(model)
    for key, value in pretrained.items():
        if key.startswith("bert."):
            mk = key[: -len("weight")] + "weight_mask"
            assert torch.equal(state[key], value * previous[mk] if mk in previous else value), key
    # ... while the head kept its trained values (the original's behaviour)
    assert not torch.equal(state["classifier.weight"], pretrained["classifier.weight"])
    results = json.loads((out / "results.json").read_text())
    assert [e["step"] for e in results["evaluations"]] == [3, 6, 9]
    assert [round(e["sparsity"]) for e in results["evaluations"]] == [0, 10, 20]
    assert [round(m["sparsity"]) for m in results["masks"]] == [10, 20, 30]
    assert all({"acc", "f1", "acc_and_f1", "eval_loss"} <= set(e) for e in results["evaluations"])
    assert trainer.global_step == 9
    record = torch.load(out / "result.pt", weights_only=True)
    assert len(record) == 3 and set(record[0]) == {"acc", "f1", "acc_and_f1", "eval_loss"}


def test_lt_glue_stops_after_tenth_pruning(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC", n_train=16)
    out = tmp_path / "imp10"
    results = LT_glue.main(common(tiny_bert_dir, data, out, "--save_steps", "1", "--logging_steps", "0",
                                  "--num_train_epochs", "100", "--save_round_weights", "0"))
    assert results["global_step"] == 10
    assert [round(m["sparsity"]) for m in results["masks"]] == [10 * k for k in range(1, 11)]
    assert not (out / "checkpoint-1" / "model.safetensors").exists()


def test_glue_trans_mask_fixed_and_impls_equal(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC")
    oneshot.main(["--rate", "0.6", "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(tmp_path / "omp")])
    mask_file = tmp_path / "omp" / "mask.pt"
    masks = P.load_mask(mask_file)
    weights = {}
    for impl in ("plain", "hooks"):
        out = tmp_path / impl
        results = glue_trans.main(common(tiny_bert_dir, data, out, "--dir", "pre", "--mask_dir", str(mask_file),
                                         "--mask_impl", impl, "--max_steps", "5", "--save_steps", "5",
                                         "--learning_rate", "1e-3", "--weight_decay", "0.01"))
        assert results["initial_sparsity"] == pytest.approx(60.0, abs=0.01)
        assert results["final"]["sparsity"] == pytest.approx(60.0, abs=0.01)
        record = torch.load(out / "result.pt", weights_only=True)
        assert record[0] == pytest.approx(60.0, abs=0.01) and "acc" in record[-1]
        weights[impl] = load_file(out / "checkpoint-5" / "model.safetensors")
        for key, m in masks.items():
            w = weights[impl][key[: -len("_mask")]]
            assert bool((w[~m] == 0).all()) and bool((w[m] != 0).all())
    assert weights["plain"].keys() == weights["hooks"].keys()
    for key in weights["plain"]:
        assert torch.equal(weights["plain"][key], weights["hooks"][key]), key
    pretrained = load_model("glue", str(tiny_bert_dir), num_labels=2).state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(weights["plain"][key], pretrained[key] * masks[key + "_mask"])  # it trained


def test_glue_trans_rand_and_weight_pertub(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC")
    pertub_weight.main(["--model_name_or_path", str(tiny_bert_dir), "--seed", "0",
                        "--output", str(tmp_path / "shuffle.pt")])
    perm = json.loads(json.dumps(pertub_weight.shuffled_layer_weights(
        load_model("glue", str(tiny_bert_dir)), seed=0)[1]))
    frozen = ["--max_steps", "1", "--save_steps", "1", "--learning_rate", "0"]
    glue_trans.main(common(tiny_bert_dir, data, tmp_path / "pert", "--weight_pertub", str(tmp_path / "shuffle.pt"), *frozen))
    got = load_file(tmp_path / "pert" / "checkpoint-1" / "model.safetensors")
    pre = load_model("glue", str(tiny_bert_dir), num_labels=2).state_dict()
    for i, j in enumerate(perm):
        assert torch.equal(got[f"bert.encoder.layer.{i}.output.dense.weight"], pre[f"bert.encoder.layer.{j}.output.dense.weight"])
        assert torch.equal(got[f"bert.encoder.layer.{i}.output.dense.bias"], pre[f"bert.encoder.layer.{i}.output.dense.bias"])
    glue_trans.main(common(tiny_bert_dir, data, tmp_path / "rand", "--dir", "rand", *frozen))
    rand = load_file(tmp_path / "rand" / "checkpoint-1" / "model.safetensors")
    key = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(rand[key], pre[key])
    assert abs(rand[key].std().item() - 0.02) < 0.003  # BERT's normal(0, 0.02) init


def test_mnli_reports_matched_and_mismatched(tiny_bert_dir, tmp_path):
    data = write_mnli(tmp_path / "MNLI")
    out = tmp_path / "mnli"
    argv = common(tiny_bert_dir, data, out, "--max_steps", "2", "--save_steps", "0")
    argv[argv.index("MRPC")] = "MNLI"
    results = glue_trans.main(argv)
    final = results["final"]
    assert {"acc", "acc_mm", "eval_loss"} <= set(final)
    assert 0 <= final["acc"] <= 1 and 0 <= final["acc_mm"] <= 1


@pytest.mark.parametrize("case,needle", [
    ("no_data_dir", "--data_dir"),
    ("missing_file", "train.tsv"),
    ("unknown_task", "unknown --task_name"),
    ("malformed", "train.tsv line 3"),
    ("other_size_mask", "does not fit this model"),
    ("not_empty", "--overwrite_output_dir"),
])
def test_glue_bad_input_exits_2(tiny_bert_dir, tmp_path, capsys, case, needle):
    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "out"
    argv = common(tiny_bert_dir, data, out, "--max_steps", "1", "--save_steps", "0")
    if case == "no_data_dir":
        argv[argv.index("--data_dir") + 1] = str(tmp_path / "absent")
    elif case == "missing_file":
        (data / "train.tsv").unlink()
    elif case == "unknown_task":
        argv[argv.index("MRPC")] = "MRPCC"
    elif case == "malformed":
        lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines()
        lines[2] = "1\tonly two columns"
        (data / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif case == "other_size_mask":
        from conftest import save_pretrained_bert
        big = save_pretrained_bert(tmp_path / "big", num_layers=3)
        oneshot.main(["--model_name_or_path", str(big), "--output_dir", str(tmp_path / "bigmask")])
        argv += ["--mask_dir", str(tmp_path / "bigmask" / "mask.pt")]
    elif case == "not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("precious")
        argv.remove("--overwrite_output_dir")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(glue_trans.main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    if case == "not_empty":
        assert (out / "keep.txt").read_text() == "precious"


def paper_commands():
    """The paper's command lines where the project publishes them: every ``shell`` block of the
    section "The paper's commands" of docs/commands.md, ``\\`` continuations joined, as
    {script name: [its arguments as one string, in the order published]}."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    section = text.split("\n## The paper's commands\n", 1)[1].split("\n## ", 1)[0]
    commands = {}
    for block in re.findall(r"^```shell\n(.*?)^```", section, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if not words:
                continue
            assert words[0] == "python", line
            words = words[2:] if words[1] == "-u" else words[1:]
            commands.setdefault(words[0], []).append(shlex.join(words[1:]))
    return commands


# the paper's command lines, exactly as docs/commands.md publishes them (paths as written);
# they must parse. The SQuAD IMP command runs through squad_trans.py, as the paper's README has it.
COMMANDS = paper_commands()
PAPER = {
    LT_pretrain: COMMANDS["LT_pretrain.py"][0],
    LT_glue: COMMANDS["LT_glue.py"][0],
    LT_squad: COMMANDS["squad_trans.py"][0],
    pretrain_trans: COMMANDS["pretrain_trans.py"][0],
    glue_trans: COMMANDS["glue_trans.py"][0],
    squad_trans: COMMANDS["squad_trans.py"][1],
}


@pytest.mark.parametrize("module", list(PAPER), ids=lambda m: m.__name__)
def test_paper_commands_parse(module):
    args = module.parse_args(shlex.split(PAPER[module]))
    assert args.seed in (5, 57) and args.output_dir.startswith(("tmp/", "LT_pretrain_model"))
    if module is LT_glue:
        assert (args.save_steps, args.num_train_epochs, args.rewind, args.round_schedule) == (36813, 30.0, "pretrained", "whole_run")
    if module is LT_pretrain:
        assert args.rewind == "none" and args.mlm and args.block_size == -1
    if module is squad_trans:
        assert args.dir == "pre" and args.doc_stride == 128


def test_squad_imp_command_goes_to_imp():
    assert {k: len(v) for k, v in COMMANDS.items()} == {
        "LT_pretrain.py": 1, "LT_glue.py": 1, "squad_trans.py": 2, "oneshot.py": 2, "pertub_weight.py": 1,
        "pretrain_trans.py": 1, "glue_trans.py": 1}
    argv = shlex.split(PAPER[LT_squad])
    assert not squad_trans.wants_transfer(argv)
    assert squad_trans.wants_transfer(shlex.split(PAPER[squad_trans]))


@pytest.mark.integration
def test_minilm_mrpc_both_scripts(shared_data, tmp_path):
    model = shared_data / "models" / "all-MiniLM-L6-v2"
    base = ["--task_name", "MRPC", "--data_dir", str(shared_data / "glue" / "MRPC"), "--model_name_or_path",
            str(model), "--cache_dir", str(tmp_path / "cache"), "--do_train", "--do_lower_case",
            "--per_gpu_train_batch_size", "4", "--max_seq_length", "64", "--max_train_samples", "16",
            "--max_eval_samples", "16", "--evaluate_during_training", "--seed", "57"]
    imp = LT_glue.main(base + ["--output_dir", str(tmp_path / "imp"), "--save_steps", "1", "--logging_steps", "1",
                               "--max_steps", "2", "--save_round_weights", "0"])
    assert [round(m["sparsity"]) for m in imp["masks"]] == [10, 20]
    assert [e["step"] for e in imp["evaluations"]] == [1, 2]
    mask = tmp_path / "imp" / "checkpoint-2" / "mask.pt"
    assert len(P.load_mask(mask)) == 37
    tuned = glue_trans.main(base + ["--output_dir", str(tmp_path / "ft"), "--dir", "pre", "--mask_dir", str(mask),
                                    "--max_steps", "1", "--logging_steps", "0", "--save_steps", "0"])
    assert tuned["initial_sparsity"] == pytest.approx(20.0, abs=0.01)
    assert 0.0 <= tuned["final"]["acc"] <= 1.0 and tuned["final"]["step"] == 1


def test_finetuned_folder_with_another_head_loads_with_a_fresh_head(tiny_bert_dir, tmp_path, capsys):
    """A --save_model folder of a 2-label task used for a 1-label task (STS-B): the backbone
    loads, the head starts fresh with a note (transformers alone raises a traceback)."""
    two = load_model("glue", str(tiny_bert_dir), num_labels=2)
    two.save_pretrained(tmp_path / "mrpc_model")
    one = load_model("glue", str(tmp_path / "mrpc_model"), num_labels=1)
    assert tuple(one.classifier.weight.shape) == (1, 32)
    assert torch.equal(one.bert.encoder.layer[1].output.dense.weight, two.bert.encoder.layer[1].output.dense.weight)
    assert "holds a task head of another shape" in capsys.readouterr().out
