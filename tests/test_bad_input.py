"""Every bad input of the table in docs/errors.md: one line naming the file or flag, exit code 2, no
traceback, and nothing already in the output folder damaged: every file of the output folder and
of the inputs (the checkpoint, the data, the masks) has the same sha256 afterwards. One row here
per row of that table."""
import fcntl
import hashlib
import json
import os
import re
import shutil

from pathlib import Path

import pytest
import torch

import glue_trans
import LT_glue
import LT_pretrain
import LT_squad
import oneshot
import pertub_weight
import pretrain_trans
import report
import shrink
import squad_trans
from test_glue_scripts import write_mrpc
from utils import pruning as P
from utils.errors import run_cli
from utils.models import load_model


@pytest.fixture
def world(tmp_path, tiny_bert_dir):
    """A tiny checkpoint, MRPC data, a valid mask and a finished earlier run in the output folder."""
    data = write_mrpc(tmp_path / "MRPC")
    masks = P.current_masks(load_model("glue", str(tiny_bert_dir)))
    good_mask = tmp_path / "mask.pt"
    torch.save(masks, good_mask)
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"complete.json": '{"headline": 1}', "results.json": '{"evaluations": [1]}', "args.json": "{}"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    w = {"tmp": tmp_path, "model": tiny_bert_dir, "data": data, "mask": good_mask, "masks": masks,
         "out": out, "earlier": earlier, "held": []}
    yield w
    for fd in w["held"]:  # locks a row held as "another run"
        os.close(fd)


def glue_argv(w, *extra, out=None):
    return ["--task_name", "MRPC", "--data_dir", str(w["data"]), "--model_name_or_path", str(w["model"]),
            "--output_dir", str(out or w["out"]), "--cache_dir", str(w["tmp"] / "cache"), "--do_train",
            "--overwrite_output_dir", "--max_steps", "2", "--logging_steps", "0", "--save_steps", "1", *extra]


def mask_file(w, name, data):
    path = w["tmp"] / name
    torch.save(data, path)
    return path


def text_file(w, name, content, mode="w"):
    path = w["tmp"] / name
    if mode == "wb":
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def squad_argv(w, train, predict):
    return ["--dir", "pre", "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"]),
            "--train_file", str(train), "--predict_file", str(predict), "--do_train", "--overwrite_output_dir",
            "--max_steps", "1", "--save_steps", "0", "--cache_dir", str(w["tmp"] / "cache"), "--max_seq_length", "64",
            "--doc_stride", "16", "--max_query_length", "16"]


def mlm_argv(w, train, *extra):
    return ["--mlm", "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"]),
            "--train_data_file", str(train), "--do_train", "--overwrite_output_dir", "--max_steps", "1",
            "--save_steps", "0", "--cache_dir", str(w["tmp"] / "cache"), *extra]


def bad_masks(w):
    m = w["masks"]
    first = next(iter(m))
    half = {k: v.float() for k, v in m.items()}
    half[first] = torch.full(m[first].shape, 0.5)
    nan = {k: v.float() for k, v in m.items()}
    nan[first] = torch.full(m[first].shape, float("nan"))
    return {
        "missing": {k: v for k, v in m.items() if k != first},
        "extra": {**m, "bert.encoder.layer.9.output.dense.weight_mask": m[first]},
        "shape": {k: torch.ones(v.shape[0] + 1, v.shape[1], dtype=torch.bool) if k == first else v for k, v in m.items()},
        "half": half, "nan": nan,
    }


# (id, README wording, how to run it -> (main, argv), expected text in the one error line)
ROWS = [
    ("model_missing", "--model_name_or_path names no folder",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(w["tmp"] / "nope"))), "no such folder"),
    ("model_config_broken", "the model folder's config.json is not JSON",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(broken_model(w)))), "cannot load the model config"),
    ("model_type", "--model_type other than bert",
     lambda w: (glue_trans.main, glue_argv(w, "--model_type", "roberta")), "only bert is supported"),
    ("data_dir_missing", "--data_dir names no folder",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(w["tmp"] / "nodata"))), "--data_dir folder not found"),
    ("train_tsv_missing", "the task's train.tsv is missing",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(empty_dir(w)))), "train.tsv: file not found"),
    ("train_tsv_empty", "train.tsv has no rows",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(tsv_dir(w, "")))), "no examples in file"),
    ("train_tsv_encoding", "train.tsv is not UTF-8",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(tsv_dir(w, b"\xff\xfe\x00bad\tx\n" * 3)))),
     "not a readable UTF-8 TSV file"),
    ("task_data_disagree", "--task_name and the data disagree (MRPC flags on CoLA-shaped rows)",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(tsv_dir(w, "h\nsrc\t1\t\tthe cat sat\n")))), "line 2"),
    ("task_unknown", "--task_name unknown",
     lambda w: (glue_trans.main, glue_argv(w, "--task_name", "MRPX")), "unknown --task_name"),
    ("mask_missing", "--mask_dir names no file",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(w["tmp"] / "none.pt"))), "not found"),
    ("mask_not_torch", "the mask file is text, not a torch file",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(text_file(w, "m.pt", "hello")))), "is not readable"),
    ("mask_truncated", "the mask file is truncated",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(truncated(w)))), "is not readable"),
    ("mask_empty_file", "the mask file is empty (0 bytes)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(text_file(w, "e.pt", "")))), "is empty (0 bytes)"),
    ("mask_wrong_kind", "the file is a state dict of weights, not masks",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "w.pt", {"bert.x.weight": torch.ones(2)})))),
     "is not a *.weight_mask tensor"),
    ("mask_missing_keys", "a mask without some of the model's keys",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "a.pt", bad_masks(w)["missing"])))), "missing key"),
    ("mask_extra_keys", "a mask with keys the model lacks (a deeper model's)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "b.pt", bad_masks(w)["extra"])))), "extra key"),
    ("mask_shapes", "a mask of another architecture (wrong shapes)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "c.pt", bad_masks(w)["shape"])))), "has shape"),
    ("mask_non_binary", "mask values other than 0 and 1",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "d.pt", bad_masks(w)["half"])))),
     "values other than 0 and 1"),
    ("mask_nan", "NaN in a mask",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_file(w, "n.pt", bad_masks(w)["nan"])))),
     "values other than 0 and 1"),
    ("pertub_missing", "--weight_pertub names no file",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(w["tmp"] / "none.pt"))), "--weight_pertub file"),
    ("pertub_shape", "--weight_pertub matrices that do not fit the model",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(mask_file(
         w, "p.pt", {"bert.encoder.layer.0.output.dense.weight": torch.ones(3, 3)})))), "has shape"),
    ("pertub_key", "--weight_pertub keys the model lacks",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(mask_file(w, "q.pt", {"nope.weight": torch.ones(1)})))),
     "is not in the model"),
    ("output_is_file", "--output_dir is an existing file",
     lambda w: (glue_trans.main, glue_argv(w, out=text_file(w, "afile", "x"))), "is a file, not a folder"),
    ("output_not_empty", "--output_dir not empty, without --overwrite_output_dir",
     lambda w: (glue_trans.main, [a for a in glue_argv(w) if a != "--overwrite_output_dir"]), "exists and is not empty"),
    ("lr_negative", "--learning_rate -1",
     lambda w: (glue_trans.main, glue_argv(w, "--learning_rate", "-1")), "argument --learning_rate"),
    ("batch_zero", "--per_gpu_train_batch_size 0",
     lambda w: (glue_trans.main, glue_argv(w, "--per_gpu_train_batch_size", "0")), "argument --per_gpu_train_batch_size"),
    ("accumulation_zero", "--gradient_accumulation_steps 0",
     lambda w: (glue_trans.main, glue_argv(w, "--gradient_accumulation_steps", "0")), "argument --gradient_accumulation_steps"),
    ("epochs_zero", "--num_train_epochs 0",
     lambda w: (glue_trans.main, glue_argv(w, "--num_train_epochs", "0")), "argument --num_train_epochs"),
    ("seq_too_long", "--max_seq_length above the model's positions (2048 > 128)",
     lambda w: (glue_trans.main, glue_argv(w, "--max_seq_length", "2048")), "above the 128 positions"),
    ("fp16_cpu", "--fp16 without CUDA",
     lambda w: (glue_trans.main, glue_argv(w, "--fp16", "--no_cuda")), "--fp16 needs a CUDA device"),
    ("fp16_bf16", "--fp16 with --bf16",
     lambda w: (glue_trans.main, glue_argv(w, "--fp16", "--bf16")), "exclude each other"),
    ("imp_never_prunes", "LT_glue.py --save_steps longer than the run",
     lambda w: (LT_glue.main, glue_argv(w, "--save_steps", "100000")), "would never prune"),
    ("imp_save_zero", "LT_glue.py --save_steps 0",
     lambda w: (LT_glue.main, glue_argv(w, "--save_steps", "0")), "would never prune"),
    ("imp_rounds_zero", "LT_glue.py --imp_rounds 0",
     lambda w: (LT_glue.main, glue_argv(w, "--imp_rounds", "0")), "argument --imp_rounds"),
    ("squad_not_squad", "a JSON file that is not SQuAD",
     lambda w: (squad_trans.main, squad_argv(w, text_file(w, "s.json", '{"a": 1}'), text_file(w, "s2.json", '{"a": 1}'))),
     "s.json"),
    ("squad_bad_json", "a SQuAD file that is not JSON",
     lambda w: (squad_trans.main, squad_argv(w, text_file(w, "t.json", "{oops"), text_file(w, "t2.json", "{oops"))),
     "t.json"),
    ("mlm_empty_text", "an empty training text",
     lambda w: (LT_pretrain.main, mlm_argv(w, text_file(w, "e.txt", ""), "--save_steps", "1")), "e.txt"),
    ("mlm_binary_text", "a binary file as training text",
     lambda w: (LT_pretrain.main, mlm_argv(w, text_file(w, "b.txt", b"\x00\xff" * 100, "wb"), "--save_steps", "1")), "b.txt"),
    ("mlm_probability", "--mlm_probability 1.5",
     lambda w: (LT_pretrain.main, mlm_argv(w, text_file(w, "ok.txt", "the cat\n"), "--mlm_probability", "1.5")),
     "argument --mlm_probability"),
    ("oneshot_rate", "oneshot.py --rate 1.5",
     lambda w: (oneshot.main, ["--rate", "1.5", "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"])]),
     "--rate must lie in [0, 1]"),
    ("pertub_model_missing", "pertub_weight.py on a missing model folder",
     lambda w: (pertub_weight.main, ["--model_name_or_path", str(w["tmp"] / "nope"), "--output", str(w["out"] / "s.pt")]),
     "no such folder"),
    ("report_empty", "report.py on a folder with no runs",
     lambda w: (report.main, [str(empty_dir(w)), "--out", str(w["tmp"] / "rep")]), "no runs found"),
    ("shrink_unstructured", "shrink.py with an unstructured mask",
     lambda w: (shrink.main, shrink_argv(w, mask_file(w, "u.pt", unstructured(w)))), "is not pruned in whole heads"),
    ("shrink_mask_shapes", "shrink.py with a mask of another architecture (wrong shapes)",
     lambda w: (shrink.main, shrink_argv(w, mask_file(w, "c2.pt", bad_masks(w)["shape"]))), "has shape"),
    ("pertub_shrunk", "pertub_weight.py on a shrunk model whose layers differ in size",
     lambda w: (pertub_weight.main, ["--model_name_or_path", str(shrunk_folder(w)), "--output", str(w["out"] / "s.pt")]),
     "cannot be swapped"),
] + [
    # finished means trained and finite: inputs that would train NaN, plans without an update
    ("stsb_label_nan", "an STS-B score nan in train.tsv",
     lambda w: (glue_trans.main, glue_argv(w, *stsb(w, ["1", "nan", "3"], ["1", "2"]))), "line 3: label 'nan' is not a finite number"),
    ("stsb_label_overflow", "an STS-B score 1e400 (infinite) in dev.tsv",
     lambda w: (glue_trans.main, glue_argv(w, *stsb(w, ["1", "2"], ["1e400", "2"]))), "dev.tsv line 2: label '1e400' is not a finite number"),
    ("stsb_label_range", "an STS-B score outside 0-5",
     lambda w: (glue_trans.main, glue_argv(w, *stsb(w, ["1", "7.5"], ["1", "2"]))), "label '7.5' lies outside the STS-B scores 0-5"),
    ("stsb_dev_one_row", "an STS-B dev.tsv with one row (Pearson needs two)",
     lambda w: (glue_trans.main, glue_argv(w, *stsb(w, ["1", "2"], ["1"]))), "needs at least 2 dev rows; found 1"),
    ("pertub_nan", "--weight_pertub matrices holding NaN",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(mask_file(
         w, "nan.pt", {"bert.encoder.layer.0.output.dense.weight": torch.full((32, 64), float("nan"))})))),
     "holds NaN or infinite values"),
    ("accumulation_above_epoch", "--gradient_accumulation_steps above an epoch's batches (no update ever)",
     lambda w: (glue_trans.main, glue_argv(w, "--gradient_accumulation_steps", "10")),
     "--gradient_accumulation_steps 10 is more than the 6 batches of an epoch"),
    ("epochs_no_update", "--num_train_epochs 0.01 (a schedule of 0 updates)",
     lambda w: (glue_trans.main, glue_argv(w, "--max_steps", "-1", "--num_train_epochs", "0.01")),
     "--num_train_epochs 0.01 gives 0 optimizer updates"),
    ("eval_only_over_finished", "glue_trans.py without --do_train into a folder holding a finished run",
     lambda w: (glue_trans.main, no_train(glue_argv(w))), "an evaluation-only run (no --do_train) never replaces it"),
    ("lt_glue_no_train", "LT_glue.py without --do_train",
     lambda w: (LT_glue.main, no_train(glue_argv(w))), "LT_glue.py runs IMP, which trains: pass --do_train"),
    ("lt_squad_no_train", "LT_squad.py without --do_train",
     lambda w: (LT_squad.main, no_train(squad_argv(w, *good_squad(w))[2:])), "LT_squad.py runs IMP, which trains"),
    ("lt_pretrain_no_train", "LT_pretrain.py without --do_train",
     lambda w: (LT_pretrain.main, no_train(mlm_argv(w, text_file(w, "ok.txt", "the cat\n")))), "LT_pretrain.py runs IMP, which trains"),
    ("seed_negative", "--seed -1", lambda w: (glue_trans.main, glue_argv(w, "--seed", "-1")), "argument --seed: must lie in 0 .. 2**32 - 1"),
    ("seed_too_big", "--seed 2**32", lambda w: (LT_glue.main, glue_argv(w, "--seed", str(2**32))), "argument --seed: must lie in 0 .. 2**32 - 1"),
    ("oneshot_seed", "oneshot.py --seed 2**32",
     lambda w: (oneshot.main, ["--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"]), "--seed", str(2**32)]),
     "argument --seed"),
    ("pertub_seed", "pertub_weight.py --seed -2 (-1 is unseeded)",
     lambda w: (pertub_weight.main, ["--model_name_or_path", str(w["model"]), "--output", str(w["out"] / "s.pt"), "--seed", "-2"]),
     "argument --seed: must be -1 (unseeded) or lie in 0 .. 2**32 - 1"),
    # tracebacks that became one line
    ("mlm_nothing_to_mask", "an MLM --eval_data_file with no token to mask",
     lambda w: (pretrain_trans.main, mlm_argv(w, text_file(w, "ok.txt", "the cat sat on the mat .\n" * 20), "--line_by_line",
                                              "--eval_data_file", str(text_file(w, "special.txt", "\x01\n\x02\n"))) ),
     "special.txt: no token of its 2 row(s) is masked"),
    ("squad_predict_no_features", "a SQuAD --predict_file whose contexts are all empty (no features)",
     lambda w: (squad_trans.main, squad_argv(w, good_squad(w)[0], squad_file(w, "empty_pred.json", ""))),
     "empty_pred.json: its 1 question(s) give no features"),
    ("squad_train_contexts_empty", "a SQuAD --train_file whose contexts are all empty",
     lambda w: (squad_trans.main, squad_argv(w, squad_file(w, "empty_train.json", ""), good_squad(w)[1])),
     "nothing to train on"),
    ("output_unwritable", "--output_dir in a folder that cannot be written",
     lambda w: (glue_trans.main, glue_argv(w, out=unwritable())), "cannot be written"),
    ("output_under_file", "--output_dir below a file",
     lambda w: (glue_trans.main, glue_argv(w, out=text_file(w, "plain", "x") / "sub")), "plain is a file, not a folder"),
    ("oneshot_output_file", "oneshot.py --output_dir names a file",
     lambda w: (oneshot.main, ["--model_name_or_path", str(w["model"]), "--output_dir", str(text_file(w, "f1", "x"))]),
     "is a file, not a folder"),
    ("report_out_file", "report.py --out names a file",
     lambda w: (report.main, [str(w["out"]), "--out", str(text_file(w, "f2", "x"))]), "--out"),
    ("pertub_output_folder", "pertub_weight.py --output names a folder",
     lambda w: (pertub_weight.main, ["--model_name_or_path", str(w["model"]), "--output", str(empty_dir(w))]),
     "is a folder; give a file name"),
    ("report_results_list", "report.py on a results.json holding a JSON list",
     lambda w: (report.main, [str(run_folder(w, "results.json", "[1, 2]")), "--out", str(w["tmp"] / "rep")]),
     "results.json holds a JSON list, not an object"),
    ("report_complete_string", "report.py on a complete.json holding a JSON string",
     lambda w: (report.main, [str(run_folder(w, "complete.json", '"done"')), "--out", str(w["tmp"] / "rep")]),
     "complete.json holds a JSON str, not an object"),
    ("local_rank_no_torchrun", "--local_rank 0 outside torchrun",
     lambda w: (glue_trans.main, glue_argv(w, "--local_rank", "0")), "--local_rank 0: this process was not started by torchrun"),
    ("cache_arrow_missing", "a tokenised-data cache missing its .arrow file",
     lambda w: (glue_trans.main, glue_argv(w, *damaged_cache(w))), "rebuild it with --overwrite_cache"),
    ("config_name_missing", "--config_name names no folder",
     lambda w: (glue_trans.main, glue_argv(w, "--config_name", str(w["tmp"] / "nocfg"))), "--config_name"),
    # a run owns its output folder
    ("output_is_model", "--output_dir is the --model_name_or_path folder",
     lambda w: (glue_trans.main, glue_argv(w, out=w["model"])), "is the --model_name_or_path"),
    ("output_holds_data", "--output_dir holds the --data_dir folder",
     lambda w: (glue_trans.main, glue_argv(w, out=w["tmp"])), "holds the --data_dir"),
    ("shrink_output_is_model", "shrink.py --output_dir is the --model_name_or_path folder",
     lambda w: (shrink.main, ["--mask_dir", str(w["mask"]), "--model_name_or_path", str(w["model"]), "--output_dir",
                              str(w["model"]), "--overwrite_output_dir"]), "is the --model_name_or_path"),
    ("oneshot_replaces_mask", "oneshot.py into a folder already holding a mask, without --overwrite_output_dir",
     lambda w: (oneshot.main, ["--model_name_or_path", str(w["model"]), "--output_dir", str(mask_folder(w))]),
     "already holds mask.pt; use --overwrite_output_dir"),
    ("output_locked", "--output_dir in use by another run (its lock is held)",
     lambda w: (glue_trans.main, glue_argv(w, out=locked(w))), "is in use by another run"),
] + [
    # as a new user would try them: masks and weight files of another model, or the wrong file
    ("mask_other_model_size", "a mask made on a model of another size (hidden 48, not 32)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(other_model_mask(w, hidden=48, intermediate=96)))),
     "query.weight_mask has shape (48, 48), the model's weight is (32, 32) (a mask for a model of another size?)"),
    ("mask_deeper_model", "a mask made on a deeper model (3 layers, not 2)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(other_model_mask(w, num_layers=3)))),
     "6 extra key(s), first bert.encoder.layer.2.attention.self.query.weight_mask"),
    ("mask_dir_is_folder", "--mask_dir names a folder, not the mask file in it",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(mask_folder(w)))), "omp is a folder; give the file, e.g. "),
    ("mask_gz_damaged", "a gzipped mask (mask.pt.gz) that is damaged",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(text_file(w, "m.pt.gz", b"\x1f\x8b\x08\x00oops", "wb")))),
     "m.pt.gz is not readable"),
    ("mask_killed_write", "the mask.pt of a oneshot.py killed while writing it (it never reached its name)",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(killed_oneshot(w) / "mask.pt"))),
     "killed_omp/mask.pt not found"),
    ("mask_killed_write_tmp", "the half-written temporary file a killed oneshot.py left, given as --mask_dir",
     lambda w: (glue_trans.main, glue_argv(w, "--mask_dir", str(left_over(killed_oneshot(w), "mask.pt")))),
     "is not readable (not a torch.save or safetensors file, or truncated or damaged"),
    ("pertub_is_mask", "--weight_pertub given a mask file (the two flags swapped)",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(w["mask"]))),
     "key bert.encoder.layer.0.attention.self.query.weight_mask is not in the model"),
    ("pertub_other_model_size", "--weight_pertub written by pertub_weight.py on a model of another size",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(other_model_pertub(w)))),
     "query.weight has shape (48, 48), the model's is (32, 32)"),
    ("pertub_truncated", "the --weight_pertub file is truncated",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(truncated(w)))), "trunc.pt is not readable"),
    # checkpoints
    ("model_no_config", "a checkpoint folder without config.json",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(model_copy(w, "noconfig", drop="config.json")))),
     "noconfig: no config.json in it (not a checkpoint folder?)"),
    ("model_roberta", "a checkpoint whose config.json is a RoBERTa model's",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(roberta_model(w)))),
     "is a roberta model; only BERT is supported (--model_type bert)"),
    ("model_no_weights", "a checkpoint folder without its weights file",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(model_copy(w, "noweights", drop="model.safetensors")))),
     "noweights: cannot load weights"),
    ("oneshot_model_no_config", "oneshot.py on a checkpoint folder without config.json",
     lambda w: (oneshot.main, ["--rate", "0.1", "--model_name_or_path", str(model_copy(w, "noconfig", drop="config.json")),
                               "--output_dir", str(w["tmp"] / "o1")]), "noconfig: no config.json in it (not a checkpoint folder?)"),
    # GLUE folders and rows
    ("dev_tsv_missing", "a GLUE task folder with train.tsv but no dev.tsv",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(glue_dir(w, dev=None)))),
     "dev.tsv: file not found (task mrpc reads it from --data_dir)"),
    ("dev_tsv_columns", "a dev.tsv with fewer columns than the task reads",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(glue_dir(w, dev="Quality\t#1 ID\t#2 ID\n1\t2\t3\n")))),
     "dev.tsv line 2: expected at least 5 tab-separated columns, found 3"),
    ("dev_tsv_empty", "an empty dev.tsv",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(glue_dir(w, dev="")))), "dev.tsv: no examples in file"),
    ("train_tsv_header_only", "a train.tsv holding its header only",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(tsv_dir(w, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")))),
     "train.tsv: no examples in file"),
    ("mnli_no_dev_matched", "an MNLI folder without dev_matched.tsv",
     lambda w: (glue_trans.main, glue_argv(w, "--task_name", "MNLI", "--data_dir", str(mnli_without_matched(w)))),
     "dev_matched.tsv: file not found (task mnli reads it from --data_dir)"),
    ("mrpc_label_unknown", "an MRPC label 2 (its labels are 0 and 1)",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(tsv_dir(w, "h\n2\t1\t2\tthe cat\tthe dog\n")))),
     "train.tsv line 2: label '2' is not one of 0, 1"),
    ("stsb_label_word", "an STS-B score that is a word",
     lambda w: (glue_trans.main, glue_argv(w, *stsb(w, ["1", "high"], ["1", "2"]))), "line 3: label 'high' is not a number"),
    ("data_dir_is_file", "--data_dir names the train.tsv file, not its folder",
     lambda w: (glue_trans.main, glue_argv(w, "--data_dir", str(w["data"] / "train.tsv"))), "--data_dir folder not found"),
    # SQuAD files and lengths
    ("squad_data_empty", "a SQuAD file whose data list is empty",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "e1.json", {"data": []}), good_squad(w)[1])),
     "e1.json holds no usable SQuAD questions"),
    ("squad_data_not_list", "a SQuAD file whose data is an object, not a list",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "e2.json", {"data": {"a": 1}}), good_squad(w)[1])),
     "e2.json is not SQuAD v1.1: 'data' is not a list"),
    ("squad_answer_start_text", "a SQuAD answer_start that is a string",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "a1.json", squad_data(start="zero")), good_squad(w)[1])),
     "a1.json is not SQuAD v1.1: data[0].paragraphs[0].qas[0].answers[0]: 'answer_start' is not a int"),
    ("squad_answer_start_float", "a SQuAD answer_start of 1.5",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "a2.json", squad_data(start=1.5)), good_squad(w)[1])),
     "'answer_start' is not a int"),
    ("squad_answer_start_outside", "a SQuAD answer_start beyond its context (every question skipped)",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "a3.json", squad_data(start=500)), good_squad(w)[1])),
     "a3.json holds no usable SQuAD questions"),
    ("squad_question_missing", "a SQuAD question without its text",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "q1.json", squad_data(question=None)), good_squad(w)[1])),
     "data[0].paragraphs[0].qas[0]: 'question' missing"),
    ("squad_train_no_answers", "a SQuAD training question with no answers",
     lambda w: (squad_trans.main, squad_argv(w, squad_json(w, "q2.json", squad_data(answers=[])), good_squad(w)[1])),
     "q2.json is not SQuAD v1.1: question q1 has no answers"),
    ("squad_utf16", "a SQuAD file saved as UTF-16",
     lambda w: (squad_trans.main, squad_argv(w, text_file(w, "u16.json", json.dumps(squad_data()).encode("utf-16"), "wb"),
                                             good_squad(w)[1])), "u16.json is not UTF-8 text"),
    ("squad_predict_missing", "--predict_file names no file",
     lambda w: (squad_trans.main, squad_argv(w, good_squad(w)[0], w["tmp"] / "nope.json")), "nope.json does not exist"),
    ("squad_seq_below_query", "--max_seq_length 12 below a 16-token question (--max_query_length)",
     lambda w: (squad_trans.main, [*squad_argv(w, *good_squad(w)), "--max_seq_length", "12"]),
     "--max_seq_length 12 leaves no room for the context after a 16-token question (--max_query_length)"),
    ("squad_stride_zero", "--doc_stride 0",
     lambda w: (squad_trans.main, [*squad_argv(w, *good_squad(w)), "--doc_stride", "0"]), "--doc_stride must be at least 1, got 0"),
    ("squad_query_zero", "--max_query_length 0",
     lambda w: (squad_trans.main, [*squad_argv(w, *good_squad(w)), "--max_query_length", "0"]),
     "--max_query_length must be at least 1, got 0"),
    # MLM texts and blocks
    ("mlm_block_too_small", "--block_size 2 (no room for a token beside [CLS] and [SEP])",
     lambda w: (pretrain_trans.main, mlm_argv(w, text_file(w, "ok.txt", LONG_TEXT), "--block_size", "2")),
     "--block_size 2 is too small: [CLS] and [SEP] need 2 of at least 3 positions"),
    ("mlm_block_above_model", "--block_size 4096, above the model's positions",
     lambda w: (pretrain_trans.main, mlm_argv(w, text_file(w, "ok.txt", LONG_TEXT), "--block_size", "4096")),
     "--block_size 4096 is above the model's maximum of 128"),
    ("mlm_train_is_folder", "--train_data_file names a folder",
     lambda w: (pretrain_trans.main, mlm_argv(w, empty_dir(w))), "emptydir: text file not found"),
    ("mlm_eval_missing", "--eval_data_file names no file",
     lambda w: (pretrain_trans.main, mlm_argv(w, text_file(w, "ok.txt", LONG_TEXT), "--eval_data_file", str(w["tmp"] / "none.txt"))),
     "none.txt: text file not found"),
    ("mlm_without_mlm_flag", "pretrain_trans.py without --mlm",
     lambda w: (pretrain_trans.main, [a for a in mlm_argv(w, text_file(w, "ok.txt", LONG_TEXT)) if a != "--mlm"]),
     "BERT is a masked language model: pass --mlm"),
    # report.py, shrink.py, oneshot.py
    ("report_on_file", "report.py given a file instead of a folder of runs",
     lambda w: (report.main, [str(w["out"] / "args.json"), "--out", str(w["tmp"] / "rep")]), "args.json: not a folder of runs"),
    ("report_missing", "report.py on a folder that does not exist",
     lambda w: (report.main, [str(w["tmp"] / "nope"), "--out", str(w["tmp"] / "rep")]), "nope: not a folder of runs"),
    ("report_slim_masks_word", "report.py --slim_masks fifty (not a number)",
     lambda w: (report.main, [str(w["out"]), "--slim_copy", str(w["tmp"] / "slim"), "--slim_masks", "fifty"]),
     "argument --slim_masks: give sparsities in percent, e.g. 50,60,70, not 'fifty'"),
    ("report_slim_masks_alone", "report.py --slim_masks without --slim_copy",
     lambda w: (report.main, [str(w["out"]), "--slim_masks", "50"]), "argument --slim_masks: only with --slim_copy DIR"),
    ("report_bench_missing", "report.py --bench names no file",
     lambda w: (report.main, [str(run_folder(w, "results.json", "{}")), "--out", str(w["tmp"] / "rep"), "--bench",
                              str(w["tmp"] / "none.json")]),
     "none.json: cannot read it"),
    ("report_bench_not_json", "report.py --bench file that is not JSON",
     lambda w: (report.main, [str(run_folder(w, "results.json", "{}")), "--out", str(w["tmp"] / "rep"), "--bench",
                              str(text_file(w, "b.json", "{oops"))]),
     "b.json: not benchmark records"),
    ("shrink_mask_missing", "shrink.py --mask_dir names no file",
     lambda w: (shrink.main, shrink_argv(w, w["tmp"] / "none.pt")), "none.pt not found"),
    ("oneshot_rate_negative", "oneshot.py --rate -0.1",
     lambda w: (oneshot.main, ["--rate", "-0.1", "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"])]),
     "--rate must lie in [0, 1], got -0.1"),
    ("oneshot_rate_nan", "oneshot.py --rate nan",
     lambda w: (oneshot.main, ["--rate", "nan", "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"])]),
     "--rate must lie in [0, 1], got nan"),
    ("resume_no_run", "--resume into a folder that holds no run",
     lambda w: (glue_trans.main, glue_argv(w, "--resume", out=empty_dir(w))), "has no args.json: there is no run to resume there"),
    # flags out of range (parse time)
    ("num_workers_negative", "--num_workers -1",
     lambda w: (glue_trans.main, glue_argv(w, "--num_workers", "-1")), "argument --num_workers: must be >= 0, got -1"),
    ("logging_steps_negative", "--logging_steps -1",
     lambda w: (glue_trans.main, glue_argv(w, "--logging_steps", "-1")), "argument --logging_steps: must be >= 0 (0: never), got -1"),
    ("save_steps_negative", "--save_steps -3",
     lambda w: (glue_trans.main, glue_argv(w, "--save_steps", "-3")), "argument --save_steps: must be >= 0 (0: never), got -3"),
    ("warmup_negative", "--warmup_steps -1",
     lambda w: (glue_trans.main, glue_argv(w, "--warmup_steps", "-1")), "argument --warmup_steps: must be >= 0, got -1"),
    ("max_train_zero", "--max_train_samples 0",
     lambda w: (glue_trans.main, glue_argv(w, "--max_train_samples", "0")), "argument --max_train_samples: must be at least 1, got 0"),
    ("max_eval_zero", "--max_eval_samples 0",
     lambda w: (glue_trans.main, glue_argv(w, "--max_eval_samples", "0")), "argument --max_eval_samples: must be at least 1, got 0"),
    ("eval_batch_zero", "--per_gpu_eval_batch_size 0",
     lambda w: (glue_trans.main, glue_argv(w, "--per_gpu_eval_batch_size", "0")),
     "argument --per_gpu_eval_batch_size: must be at least 1, got 0"),
    ("lr_nan", "--learning_rate nan",
     lambda w: (glue_trans.main, glue_argv(w, "--learning_rate", "nan")), "argument --learning_rate: must be a finite number >= 0, got nan"),
    ("epochs_inf", "--num_train_epochs inf",
     lambda w: (glue_trans.main, glue_argv(w, "--num_train_epochs", "inf")), "argument --num_train_epochs: must be a finite number > 0, got inf"),
    ("seq_two", "--max_seq_length 2",
     lambda w: (glue_trans.main, glue_argv(w, "--max_seq_length", "2")), "argument --max_seq_length: must be at least 3"),
    ("subset_seed_alone", "--train_subset_seed without --max_train_samples",
     lambda w: (glue_trans.main, glue_argv(w, "--train_subset_seed", "3")),
     "argument --train_subset_seed: needs --max_train_samples (the size of the subset)"),
] + [
    # tracebacks, misleading messages and silent acceptances a colleague found
    ("model_weights_truncated", "a checkpoint whose model.safetensors is cut short (a copy that stopped)",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(cut_weights(w, "cut_weights", 0.5)))),
     "cut_weights/model.safetensors (truncated or damaged?)"),
    ("model_weights_empty", "oneshot.py on a checkpoint whose model.safetensors is empty (0 bytes)",
     lambda w: (oneshot.main, ["--model_name_or_path", str(cut_weights(w, "empty_weights", 0)), "--output_dir",
                               str(w["tmp"] / "o1")]), "empty_weights/model.safetensors (truncated or damaged?)"),
    ("model_is_config_file", "--model_name_or_path names the checkpoint's config.json, not its folder",
     lambda w: (glue_trans.main, glue_argv(w, "--model_name_or_path", str(Path(w["model"]) / "config.json"))),
     "config.json is a file; give the checkpoint folder, e.g. "),
    ("oneshot_model_is_config_file", "oneshot.py --model_name_or_path names the checkpoint's config.json",
     lambda w: (oneshot.main, ["--model_name_or_path", str(Path(w["model"]) / "config.json"), "--output_dir",
                               str(w["tmp"] / "o1")]), "config.json is a file; give the checkpoint folder"),
    ("report_slim_is_runs", "report.py --slim_copy the folder of runs itself",
     lambda w: (report.main, slim_argv(w, lambda runs: runs)), "runs_bad is the folder of runs"),
    ("report_slim_inside_runs", "report.py --slim_copy a folder inside the folder of runs",
     lambda w: (report.main, slim_argv(w, lambda runs: runs / "slim")),
     "slim lies inside the folder of runs"),
    ("report_slim_holds_runs", "report.py --slim_copy a folder holding the folder of runs",
     lambda w: (report.main, slim_argv(w, lambda runs: runs.parent)), "holds the folder of runs"),
    ("report_headline_not_object", "report.py on a complete.json whose \"headline\" is not an object (1)",
     lambda w: (report.main, [str(run_folder(w, "complete.json", '{"headline": 1}')), "--out", str(w["tmp"] / "rep")]),
     'run/complete.json: its "headline" is a JSON int, not an object'),
    ("report_transfer_sparsity_range", "report.py --transfer_sparsity -5",
     lambda w: (report.main, [str(run_folder(w, "results.json", "{}")), "--out", str(w["tmp"] / "rep"),
                              "--transfer_sparsity", "-5"]),
     "argument --transfer_sparsity: must lie in 0 .. 100 (a sparsity in percent), got -5"),
    ("config_name_other_size", "--config_name a config of another size than the checkpoint",
     lambda w: (glue_trans.main, glue_argv(w, "--config_name", str(other_size_model(w)))),
     "differs in size from --model_name_or_path"),
    ("tokenizer_missing", "--tokenizer_name names no folder",
     lambda w: (glue_trans.main, glue_argv(w, "--tokenizer_name", str(w["tmp"] / "notok"))),
     "--tokenizer_name"),
    ("tokenizer_empty_folder", "--tokenizer_name names an empty folder",
     lambda w: (glue_trans.main, glue_argv(w, "--tokenizer_name", str(empty_dir(w)))),
     "emptydir: no tokenizer.json, vocab.txt or tokenizer_config.json in it"),
    ("output_empty", "--output_dir \"\" (empty: not the current folder)",
     lambda w: (glue_trans.main, [*glue_argv(w), "--output_dir", ""]), "argument --output_dir: must not be empty"),
    ("oneshot_output_empty", "oneshot.py --output_dir \"\"",
     lambda w: (oneshot.main, ["--model_name_or_path", str(w["model"]), "--output_dir", ""]),
     "argument --output_dir: must not be empty"),
    ("pertub_is_folder", "--weight_pertub names a folder (one holding a mask)",
     lambda w: (glue_trans.main, glue_argv(w, "--weight_pertub", str(mask_folder(w)))), "omp/shuffle_weight.pt"),
    ("cache_dir_is_file", "--cache_dir names a file",
     lambda w: (glue_trans.main, glue_argv(w, "--cache_dir", str(text_file(w, "cfile", "x")))),
     "cfile is a file, not a folder"),
]

LONG_TEXT = "the cat sat on the mat . " * 200 + "\n"


def cut_weights(w, name, keep):
    """A copy of the tiny checkpoint whose model.safetensors keeps only its first ``keep`` (a fraction)."""
    d = model_copy(w, name)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    return d


def slim_argv(w, where):
    """report.py on a folder of runs with --slim_copy ``where(runs folder)``."""
    runs = run_folder(w, "results.json", "{}")
    return [str(runs), "--out", str(w["tmp"] / "rep"), "--no_figures", "--slim_copy", str(where(runs))]


def other_size_model(w):
    from conftest import save_pretrained_bert

    return save_pretrained_bert(w["tmp"] / "wide_config", hidden=48, intermediate=96)


def other_model_mask(w, **cfg):
    """The full mask of a tiny model of another shape (``cfg``: its config)."""
    from conftest import save_pretrained_bert

    other = save_pretrained_bert(w["tmp"] / "other_model", **cfg)
    return mask_file(w, "other_mask.pt", P.current_masks(load_model("glue", str(other))))


def other_model_pertub(w):
    """pertub_weight.py's layer-shuffled weights of a wider tiny model."""
    from conftest import save_pretrained_bert

    other = save_pretrained_bert(w["tmp"] / "wide_model", hidden=48, intermediate=96)
    out = w["tmp"] / "wide_shuffle.pt"
    pertub_weight.main(["--model_name_or_path", str(other), "--output", str(out)])
    return out


def killed_oneshot(w):
    """The folder of a oneshot.py killed half-way through writing its mask.pt."""
    import subprocess
    import sys

    out = w["tmp"] / "killed_omp"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "BERT_TICKETS_KILL_IN_WRITE": "mask.pt", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(root / "oneshot.py"), "--rate", "0.3", "--model_name_or_path",
                           str(w["model"]), "--output_dir", str(out)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    return out


def left_over(folder, name):
    """The temporary file a writer of ``name`` killed mid-write left in ``folder``."""
    found = [p for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")]
    assert len(found) == 1, sorted(p.name for p in folder.iterdir())
    return found[0]


def model_copy(w, name, drop=None):
    """A copy of the tiny checkpoint, without the file ``drop``."""
    d = w["tmp"] / name
    if not d.exists():
        shutil.copytree(w["model"], d)
    if drop:
        (d / drop).unlink(missing_ok=True)
    return d


def roberta_model(w):
    d = model_copy(w, "roberta_model")
    config = json.loads((d / "config.json").read_text())
    config.update(model_type="roberta", architectures=["RobertaModel"])
    (d / "config.json").write_text(json.dumps(config))
    return d


def glue_dir(w, dev):
    """An MRPC folder with the good train.tsv and this dev.tsv text (None: no dev.tsv)."""
    d = w["tmp"] / "glue_dev"
    d.mkdir(exist_ok=True)
    shutil.copy(w["data"] / "train.tsv", d / "train.tsv")
    if dev is not None:
        (d / "dev.tsv").write_text(dev)
    return d


def mnli_without_matched(w):
    from test_glue_scripts import write_mnli

    d = write_mnli(w["tmp"] / "MNLI")
    (d / "dev_matched.tsv").unlink()
    return d


def squad_data(start=0, question="where is the cat ?", answers=None):
    qa = {"id": "q1", "answers": [{"text": "the cat", "answer_start": start}] if answers is None else answers}
    if question is not None:
        qa["question"] = question
    return {"data": [{"title": "t", "paragraphs": [{"context": "the cat sat on the mat", "qas": [qa]}]}]}


def squad_json(w, name, obj):
    return text_file(w, name, json.dumps(obj))


def no_train(argv):
    return [a for a in argv if a != "--do_train"]


def stsb(w, train_scores, dev_scores):
    """--task_name/--data_dir flags of an STS-B folder with these scores."""
    d = w["tmp"] / "STS-B"
    d.mkdir(exist_ok=True)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for name, scores in (("train.tsv", train_scores), ("dev.tsv", dev_scores)):
        rows = [f"{i}\tg\tf\t2012\t{i}\ts\ts\tthe cat sat\tthe dog sat\t{v}" for i, v in enumerate(scores)]
        (d / name).write_text("\n".join([head, *rows]) + "\n")
    return ["--task_name", "STS-B", "--data_dir", str(d)]


def squad_file(w, name, context, answer=""):
    qa = {"id": "q1", "question": "where is the cat ?", "answers": [{"text": answer, "answer_start": 0}]}
    data = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}
    return text_file(w, name, json.dumps(data))


def good_squad(w):
    return squad_file(w, "sq_train.json", "the cat sat on the mat", "the cat"), \
        squad_file(w, "sq_pred.json", "the cat sat on the mat", "the cat")


def unwritable():
    base = Path("/sys")  # not writable, even by root
    if not base.is_dir():
        pytest.skip("no /sys here")
    return base / "bert_tickets_test_out"


def run_folder(w, name, text):
    """A folder of one run whose ``name`` holds ``text``."""
    d = w["tmp"] / "runs_bad" / "run"
    d.mkdir(parents=True, exist_ok=True)
    (d / "args.json").write_text(json.dumps({"script": "glue_trans.py", "task_name": "MRPC"}))
    (d / name).write_text(text)
    return d.parent


def damaged_cache(w):
    """The MRPC training cache the run would read, with its .arrow file gone."""
    from utils.glue import load_glue_dataset
    from utils.models import load_tokenizer

    load_glue_dataset(w["data"], "mrpc", "train", load_tokenizer(str(w["model"])), 128, w["tmp"] / "cache")
    arrows = list((w["tmp"] / "cache").glob("glue_train_*/*.arrow"))
    assert arrows
    for a in arrows:
        a.unlink()
    return []


def mask_folder(w):
    d = w["tmp"] / "omp"
    d.mkdir(exist_ok=True)
    shutil.copy(w["mask"], d / "mask.pt")
    return d


def locked(w):
    """A folder with a finished run whose lock another run holds."""
    d = w["tmp"] / "busy"
    d.mkdir(exist_ok=True)
    (d / "complete.json").write_text("{}")
    fd = os.open(d / ".bert_tickets.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    w["held"].append(fd)
    return d


def shrink_argv(w, mask):
    return ["--mask_dir", str(mask), "--model_name_or_path", str(w["model"]), "--output_dir", str(w["out"]),
            "--overwrite_output_dir"]


def unstructured(w):
    masks = {k: v.clone() for k, v in w["masks"].items()}
    masks[next(iter(masks))][0, 0] = False
    return masks


def shrunk_folder(w):
    """The tiny model shrunk to one head in layer 0 and half the FFN of layer 1, exported."""
    from utils.export import save_model_folder
    from utils.shrink import shrink_model
    from utils.structured import masks_from_layout

    model = load_model("glue", str(w["model"]))
    heads, ff = model.config.num_attention_heads, model.config.intermediate_size
    layout = [{"heads": torch.arange(heads) == 0, "neurons": torch.ones(ff, dtype=torch.bool)},
              {"heads": torch.ones(heads, dtype=torch.bool), "neurons": torch.arange(ff) % 2 == 0}]
    shrink_model(model, masks_from_layout(model, layout))
    return save_model_folder(model, w["tmp"] / "shrunk", w["model"])


def broken_model(w):
    d = w["tmp"] / "broken_model"
    shutil.copytree(w["model"], d)
    (d / "config.json").write_text("{not json")
    return d


def empty_dir(w):
    d = w["tmp"] / "emptydir"
    d.mkdir(exist_ok=True)
    return d


def tsv_dir(w, content):
    d = w["tmp"] / "tsv"
    d.mkdir(exist_ok=True)
    path = d / "train.tsv"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    shutil.copy(w["data"] / "dev.tsv", d / "dev.tsv")
    return d


def truncated(w):
    data = w["mask"].read_bytes()
    return text_file(w, "trunc.pt", data[: len(data) // 2], "wb")


def test_table_has_at_least_25_rows():
    ids = [r[0] for r in ROWS + PERMISSION_ROWS]
    assert len(ROWS) >= 25 and len(set(ids)) == len(ids)


def fingerprint(w):
    """sha256 of every file of the output folder and of the inputs (everything under the test's
    folder but the data cache, and the checkpoint)."""
    files = [p for p in w["tmp"].rglob("*") if p.is_file() and "cache" not in p.relative_to(w["tmp"]).parts]
    files += [p for p in Path(w["model"]).rglob("*") if p.is_file()]
    return {str(p): _digest(p) for p in files}


def _digest(path):
    """sha256 of a file's bytes; a file this process may not read (chmod 000, not root): its size and mtime."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:
        st = path.stat()
        return f"unreadable {st.st_size} {st.st_mtime_ns}"


# the exact line each row prints, paths shortened (:func:`shown`): the message column of the table
# in docs/errors.md, which scripts/build_docs.py generates from these rows and this file
MESSAGES = json.loads((Path(__file__).parent / "bad_input_messages.json").read_text())


def shown(line, w):
    """An error line as the table shows it: the test's folders as "…", the checkpoint as "…/tiny_bert",
    a process id as "<pid>", and the random parts of a cache folder's or a temporary file's name."""
    line = line.replace(str(w["model"]), "…/tiny_bert").replace(str(w["tmp"]), "…")
    line = re.sub(r"^\S+: error: ", "error: ", line)  # argparse's "<prog>: error: ", prog as it was started
    line = re.sub(r"(_len\d+)_[0-9a-f]{16}\b", r"\1_…", line)  # a cache folder's key (sizes, times)
    line = re.sub(r"(\.\w+\.pt)\.\w{8}\.tmp\b", r"\1.<random>.tmp", line)  # a temporary file's name
    return re.sub(r"\bpid \d+", "pid <pid>", line)


def check_message(row_id, line, w):
    """The row's line is the table's, exactly; ``BAD_INPUT_RECORD=1`` records it instead (a changed
    message is then a reviewed change of tests/bad_input_messages.json and of the table)."""
    if os.environ.get("BAD_INPUT_RECORD"):
        path = Path(__file__).parent / "bad_input_messages.json"
        messages = json.loads(path.read_text())
        messages[row_id] = shown(line, w)
        path.write_text(json.dumps(messages, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        return
    assert shown(line, w) == MESSAGES[row_id]


def test_every_row_has_its_message_and_no_other():
    assert sorted(MESSAGES) == sorted(r[0] for r in ROWS + PERMISSION_ROWS)
    assert all(m.startswith("error: ") or ": error: " in m for m in MESSAGES.values())


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_one_line_exit_2_nothing_damaged(row, world, capsys):
    row_id, _, make, expected = row
    main, argv = make(world)
    before = fingerprint(world)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert err and expected in err[-1], err
    check_message(row_id, err[-1], world)  # the line the table shows, exactly
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: ") or ": error: " in err[-1]  # ours, or argparse's usage + error
    # the earlier run's files are untouched: nothing was written before the input was refused
    for name, text in world["earlier"].items():
        assert (world["out"] / name).read_text() == text, name
    assert sorted(p.name for p in world["out"].iterdir()) == sorted(world["earlier"])
    assert fingerprint(world) == before  # the output folder and every input, byte for byte


def test_readme_lists_every_row():
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "errors.md").read_text()
    missing = [r[0] for r in ROWS + PERMISSION_ROWS if f"`{r[0]}`" not in text]
    assert not missing, missing


# --- inputs that only a user without root's override meets: chmod'ed files and folders ----------

def _no_override():
    """The command prefix under which chmod binds: none for a user, setpriv (root without
    CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH) for root; skip where root cannot drop them."""
    import subprocess

    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, where chmod blocks no read or write, and setpriv cannot drop root's "
                    "override here")
    return prefix


def read_only(path, mode=0o555):
    path.chmod(mode)
    return path


# (id, wording, how to run it -> (script, argv), expected text in the one error line); the files
# they chmod get their permissions back afterwards
PERMISSION_ROWS = [
    ("output_read_only", "--output_dir a read-only folder (chmod 555) holding an earlier run",
     lambda w: ("glue_trans.py", glue_argv(w, out=read_only(w["out"]))), "cannot be written (Permission denied in "),
    ("oneshot_output_read_only", "oneshot.py --output_dir a read-only folder (chmod 555)",
     lambda w: ("oneshot.py", ["--model_name_or_path", str(w["model"]), "--output_dir", str(read_only(w["out"])),
                               "--overwrite_output_dir"]), "cannot be written (Permission denied in "),
    ("report_out_read_only", "report.py --out a read-only folder (chmod 555)",
     lambda w: ("report.py", [str(w["out"]), "--out", str(read_only(empty_dir(w)))]), "--out "),
    ("mask_unreadable", "a mask file without read permission (chmod 000)",
     lambda w: ("glue_trans.py", glue_argv(w, "--mask_dir", str(read_only(w["mask"], 0o000)))),
     "mask.pt is not readable (not a torch.save or safetensors file, or truncated or damaged: [Errno 13] Permission denied"),
    ("config_unreadable", "a checkpoint whose config.json cannot be read (chmod 000)",
     lambda w: ("glue_trans.py", glue_argv(w, "--model_name_or_path", str(unreadable_config(w)))),
     "cannot load the model config: [Errno 13] Permission denied"),
    ("train_tsv_unreadable", "a train.tsv without read permission (chmod 000)",
     lambda w: ("glue_trans.py", glue_argv(w, "--data_dir", str(unreadable_tsv(w)))),
     "tsv/train.tsv: cannot read it (Permission denied)"),
    ("squad_unreadable", "a SQuAD --train_file without read permission (chmod 000)",
     lambda w: ("squad_trans.py", squad_argv(w, *unreadable_squad(w))),
     "sq_train.json: cannot read it (Permission denied)"),
    ("mlm_text_unreadable", "an MLM --train_data_file without read permission (chmod 000)",
     lambda w: ("pretrain_trans.py", mlm_argv(w, read_only(text_file(w, "ok.txt", LONG_TEXT), 0o000))),
     "ok.txt: cannot read it (Permission denied)"),
]


def unreadable_squad(w):
    train, predict = good_squad(w)
    return read_only(train, 0o000), predict


def unreadable_tsv(w):
    d = tsv_dir(w, (w["data"] / "train.tsv").read_text())
    read_only(d / "train.tsv", 0o000)
    return d


def unreadable_config(w):
    d = model_copy(w, "locked_model")
    read_only(d / "config.json", 0o000)
    return d


def _restore_permissions(w):
    for p in [w["tmp"], *w["tmp"].rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.slow  # each row runs in an unprivileged subprocess
@pytest.mark.parametrize("row", PERMISSION_ROWS, ids=[r[0] for r in PERMISSION_ROWS])
def test_permission_denied_one_line_exit_2_nothing_damaged(row, world):
    """As the table's rows, in a process for which the permissions bind."""
    import subprocess
    import sys

    prefix = _no_override()
    root = Path(__file__).resolve().parents[1]
    row_id, _, make, expected = row
    try:
        script, argv = make(world)
        before = fingerprint(world)
        proc = subprocess.run([*prefix, sys.executable, str(root / script), *argv], cwd=root,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert err and err[-1].startswith("error: ") and expected in err[-1], err
        check_message(row_id, err[-1], world)
        assert "Traceback" not in proc.stderr
        after = fingerprint(world)
    finally:
        _restore_permissions(world)
    assert sorted(p.name for p in world["out"].iterdir()) == sorted(world["earlier"])
    assert after == before


def test_unicode_and_space_paths_run(world, capsys):
    """Not a refusal: a model, data, mask and output folder whose names hold spaces and non-ASCII
    letters, and a --task_name with spaces around it, make a finished run."""
    base = world["tmp"] / "dossier ü ñ 数据"
    model = base / "mödel x"
    shutil.copytree(world["model"], model)
    data = base / "MRPC données"
    shutil.copytree(world["data"], data)
    mask = base / "mäsk 1.pt"
    shutil.copy(world["mask"], mask)
    out = base / "sortie ø"
    argv = ["--task_name", " MRPC  ", "--data_dir", str(data), "--model_name_or_path", str(model), "--output_dir",
            str(out), "--cache_dir", str(base / "cache é"), "--do_train", "--max_steps", "2", "--logging_steps", "0",
            "--save_steps", "0", "--mask_dir", str(mask)]
    run_cli(glue_trans.main, argv)
    done = json.loads((out / "complete.json").read_text())
    assert done["global_step"] == 2
    recorded = json.loads((out / "args.json").read_text())
    assert recorded["provenance"]["mask"]["path"] == str(mask) and str(data / "train.tsv") in recorded["provenance"]["data"]


def test_tiny_mlm_blocks_train(world, capsys):
    """Not a refusal: --block_size 3 leaves one maskable token a block, so most batches of 4 would
    draw no token to mask (a NaN loss: the run stopped as diverged, exit 3). Training batches
    always mask one token now; the evaluation's masking is as before."""
    from utils.text import MLMCollator

    from conftest import make_tokenizer

    tok = make_tokenizer()
    rows = [{"input_ids": [tok.cls_token_id, 10 + i, tok.sep_token_id]} for i in range(4)]
    trained = MLMCollator(tok, 1e-9, torch.Generator().manual_seed(0), at_least_one=True)(rows)
    assert int(trained["labels"].ne(-100).sum()) == 1  # one token, not a special one
    assert int(trained["labels"][:, [0, 2]].ne(-100).sum()) == 0
    evaluated = MLMCollator(tok, 1e-9, torch.Generator().manual_seed(0))(rows)
    assert int(evaluated["labels"].ne(-100).sum()) == 0

    out = world["tmp"] / "tiny_blocks"
    train = text_file(world, "ok.txt", LONG_TEXT)
    argv = mlm_argv(world, train, "--block_size", "3", "--max_steps", "10", "--logging_steps", "0")
    argv[argv.index("--output_dir") + 1] = str(out)
    run_cli(pretrain_trans.main, argv)
    assert (out / "complete.json").is_file() and not (out / "failed.json").exists()
    assert json.loads((out / "results.json").read_text())["global_step"] == 10
