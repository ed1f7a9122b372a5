"""SQuAD v1.1: reading, legacy windowed features, loading with a cache, the scripts' flags and
the experiment; n-best post-processing and evaluation are :mod:`utils.squad_eval`.

Reproduces the transformers 2.x ``run_squad.py`` data path (docs/faithfulness.md §6.2)
on top of the fast tokenizer's character offsets:

* questions are cut to ``max_query_length`` tokens;
* context windows start every ``doc_stride`` tokens (the legacy meaning: the *advance* between
  window starts, not the overlap that the modern ``stride=`` argument means);
* a feature is ``[CLS] question [SEP] window [SEP]``; training features whose answer is not
  wholly inside the window are labelled at the ``[CLS]`` position (0);
* a token seen in several windows is "max context" only in the window where it has the most
  context on both sides; the span search starts answers only at such tokens.

Example (tiny CPU run)::

    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained("../shared/data/models/all-MiniLM-L6-v2")
    examples, feats = load_squad("../shared/data/squad/eval-split-of-dev-v1.1.json", tok,
                                 is_training=False)
    scores = evaluate_squad(model, examples, feats, SquadCollator(tok), 32, torch.device("cpu"))
"""
import json
import sys
from pathlib import Path

from datasets import Dataset

from utils.args import UNUSED, data_cache_dir, train_rows
from utils.data import PaddingCollator, cached_dataset
from utils.errors import UserError
from utils.experiment import Experiment
from utils.squad_eval import evaluate_squad

EVAL_ONLY_COLUMNS = ("example_index", "offset_mapping", "token_is_max_context")


# --- reading ------------------------------------------------------------------------------


def _load_json(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"SQuAD file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: line {err.lineno}: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text: {err.reason}") from None
    except OSError as err:  # no read permission, an I/O error
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None


def _need(obj, key, kind, where, path):
    """Return ``obj[key]`` if it exists with type ``kind``; else a UserError naming the spot."""
    spot = f"{where}: " if where else ""
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{path} is not SQuAD v1.1: {spot}'{key}' missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{path} is not SQuAD v1.1: {spot}'{key}' is not a {kind.__name__}")
    return value


def _answer_matches(context, answer):
    start = answer["answer_start"]
    return context[start : start + len(answer["text"])] == answer["text"]


def _read_answers(qa, qid, where, path):
    answers = []
    for n, ans in enumerate(_need(qa, "answers", list, where, path)):
        spot = f"{where}.answers[{n}]"
        answers.append({"text": _need(ans, "text", str, spot, path),
                        "answer_start": _need(ans, "answer_start", int, spot, path)})
    if not answers:  # the metric takes a max over gold answers, and training needs a label
        raise UserError(f"{path} is not SQuAD v1.1: question {qid} has no answers")
    return answers


def read_squad_examples(path, is_training):
    """Read a SQuAD v1.1 JSON file into flat examples.

    Returns ``(examples, skipped)``: each example is ``{"id", "title", "context", "question",
    "answers": [{"text", "answer_start"}, ...]}``. When ``is_training``, the first answer is the
    label (as in the legacy code); a question whose first answer's text is not found at its
    ``answer_start`` in the context gets one warning line (with the question id) and is skipped
    (counted in ``skipped``). When evaluating every question is kept: only gold texts count.
    Bad files (missing, not JSON, wrong shape, a question without answers) raise UserError.
    """
    raw = _load_json(path)
    data = _need(raw, "data", list, "", path)
    examples, skipped = [], 0
    for i, article in enumerate(data):
        title = _need(article, "title", str, f"data[{i}]", path)
        for j, para in enumerate(_need(article, "paragraphs", list, f"data[{i}]", path)):
            where = f"data[{i}].paragraphs[{j}]"
            context = _need(para, "context", str, where, path)
            for k, qa in enumerate(_need(para, "qas", list, where, path)):
                qwhere = f"{where}.qas[{k}]"
                qid = _need(qa, "id", str, qwhere, path)
                question = _need(qa, "question", str, qwhere, path)
                answers = _read_answers(qa, qid, qwhere, path)
                if is_training and not _answer_matches(context, answers[0]):
                    print(f"warning: {path}: question {qid}: answer {answers[0]['text']!r} is not "
                          f"at offset {answers[0]['answer_start']} of its context; skipped",
                          file=sys.stderr)
                    skipped += 1
                    continue
                examples.append({"id": qid, "title": title, "context": context,
                                 "question": question, "answers": answers})
    return examples, skipped


# --- features ------------------------------------------------------------------------------


def _check_lengths(max_seq_length, doc_stride, max_query_length):
    if doc_stride < 1:
        raise UserError(f"--doc_stride must be at least 1, got {doc_stride}")
    if max_query_length < 1:
        raise UserError(f"--max_query_length must be at least 1, got {max_query_length}")
    if max_seq_length - max_query_length - 3 < 1:
        raise UserError(f"--max_seq_length {max_seq_length} leaves no room for the context "
                        f"after a {max_query_length}-token question (--max_query_length)")


def _doc_windows(n_tokens, max_tokens_for_doc, doc_stride):
    """Legacy windows as (start, length): advance by doc_stride, stop at the one reaching the end."""
    windows, start = [], 0
    while start < n_tokens:
        length = min(max_tokens_for_doc, n_tokens - start)
        windows.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, doc_stride)
    return windows


def _max_context_windows(windows, n_tokens):
    """For each context token, the window where it has most context (legacy score; first wins ties).

    Score in a window = min(tokens on its left, tokens on its right) + 0.01 * window length.
    """
    best_score, best = [None] * n_tokens, [None] * n_tokens
    for w, (start, length) in enumerate(windows):
        end = start + length - 1
        for p in range(start, end + 1):
            score = min(p - start, end - p) + 0.01 * length
            if best_score[p] is None or score > best_score[p]:
                best_score[p], best[p] = score, w
    return best


def _tokenize(examples, tokenizer, max_query_length):
    """Question ids (cut) and context ids/offsets (no specials); contexts tokenised once each."""
    questions = tokenizer(list(examples["question"]), add_special_tokens=False)["input_ids"]
    unique = list(dict.fromkeys(examples["context"]))
    enc = tokenizer(unique, add_special_tokens=False, return_offsets_mapping=True)
    by_context = {c: (ids, [list(o) for o in offs]) for c, ids, offs in
                  zip(unique, enc["input_ids"], enc["offset_mapping"])}
    return [q[:max_query_length] for q in questions], [by_context[c] for c in examples["context"]]


def _answer_tokens(offsets, answer):
    """First and last context token overlapping the answer's characters, or None."""
    a0 = answer["answer_start"]
    a1 = a0 + len(answer["text"])
    hits = [t for t, (s, e) in enumerate(offsets) if s < a1 and e > a0]
    return (hits[0], hits[-1]) if hits else None


def _features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
    _check_lengths(max_seq_length, doc_stride, max_query_length)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    queries, contexts = _tokenize(examples, tokenizer, max_query_length)
    keys = ["input_ids", "token_type_ids", "attention_mask"]
    keys += ["start_positions", "end_positions"] if is_training else list(EVAL_ONLY_COLUMNS)
    out = {k: [] for k in keys}
    for i, (query, (ctx_ids, ctx_offsets)) in enumerate(zip(queries, contexts)):
        max_tokens_for_doc = max_seq_length - len(query) - 3
        windows = _doc_windows(len(ctx_ids), max_tokens_for_doc, doc_stride)
        doc_offset = len(query) + 2  # position of the window's first token in the feature
        if is_training:
            answer = _answer_tokens(ctx_offsets, examples["answers"][i][0])
        else:
            best_window = _max_context_windows(windows, len(ctx_ids))
        for w, (start, length) in enumerate(windows):
            input_ids = [cls_id] + query + [sep_id] + ctx_ids[start : start + length] + [sep_id]
            out["input_ids"].append(input_ids)
            out["token_type_ids"].append([0] * doc_offset + [1] * (length + 1))
            out["attention_mask"].append([1] * len(input_ids))
            if is_training:
                inside = answer is not None and start <= answer[0] and answer[1] < start + length
                out["start_positions"].append(answer[0] - start + doc_offset if inside else 0)
                out["end_positions"].append(answer[1] - start + doc_offset if inside else 0)
            else:
                spans = ctx_offsets[start : start + length]
                out["offset_mapping"].append([None] * doc_offset + spans + [None])
                flags = [best_window[start + t] == w for t in range(length)]
                out["token_is_max_context"].append([False] * doc_offset + flags + [False])
                out["example_index"].append(i)
    return out


def build_train_features(examples, tokenizer, max_seq_length=384, doc_stride=128,
                         max_query_length=64):
    """Legacy training features of a batch of examples (a dict of columns or a list of dicts).

    Returns columns input_ids, token_type_ids, attention_mask, start_positions, end_positions
    (unpadded lists). The label is the first answer; it is 0/0 (the [CLS] token) in every
    window that does not contain the whole answer.
    """
    return _features(_columns(examples), tokenizer, max_seq_length, doc_stride, max_query_length,
                     is_training=True)


def build_eval_features(examples, tokenizer, max_seq_length=384, doc_stride=128,
                        max_query_length=64):
    """Legacy evaluation features of a batch of examples (a dict of columns or a list of dicts).

    Returns columns input_ids, token_type_ids, attention_mask, example_index (the example's
    position in ``examples``), offset_mapping (per token ``[start, end]`` characters in the
    context, None outside the window) and token_is_max_context.
    """
    return _features(_columns(examples), tokenizer, max_seq_length, doc_stride, max_query_length,
                     is_training=False)


def _columns(examples):
    if isinstance(examples, list):
        return {k: [ex[k] for ex in examples] for k in ("question", "context", "answers")}
    return examples


# --- loading with an on-disk cache --------------------------------------------------------------


def load_squad(path, tokenizer, is_training, max_seq_length=384, doc_stride=128,
               max_query_length=64, cache_dir=None, overwrite_cache=False):
    """Examples and tokenised features (a ``datasets.Dataset``) of a SQuAD v1.1 file.

    Features come from :func:`build_train_features` / :func:`build_eval_features` through
    ``Dataset.map(batched=True)`` and are cached on disk (``cache_dir`` or ``.cache/`` next to
    the file), keyed by the file, the tokenizer and every length parameter.
    """
    _check_lengths(max_seq_length, doc_stride, max_query_length)
    examples, skipped = read_squad_examples(path, is_training)
    if not examples:
        raise UserError(f"{path} holds no usable SQuAD questions")
    params = (max_seq_length, doc_stride, max_query_length)
    builder = build_train_features if is_training else build_eval_features

    def build(digest):
        source = Dataset.from_list(examples)

        def fn(batch, indices):
            out = builder(batch, tokenizer, *params)
            if not is_training:  # batch positions -> positions in the whole examples list
                out["example_index"] = [indices[i] for i in out["example_index"]]
            return out

        return source.map(fn, batched=True, with_indices=True, remove_columns=source.column_names,
                          new_fingerprint=digest)

    split = "train" if is_training else "eval"
    features = cached_dataset(path, tokenizer, f"squad_{split}_{Path(path).stem}",
                              {"lengths": params, "is_training": bool(is_training)}, build,
                              cache_dir, overwrite_cache)
    if len(features) == 0:
        raise UserError(f"{path}: its {len(examples)} question(s) give no features: every context is empty "
                        f"(after tokenisation), so there is nothing to {'train on' if is_training else 'predict'}")
    print(f"SQuAD {path}: {len(examples)} examples, {len(features)} features, "
          f"{skipped} skipped questions")
    return examples, features


# --- batching ------------------------------------------------------------------------------------


SquadCollator = PaddingCollator  # keeps start/end positions, drops the eval-only columns


def add_squad_args(parser):
    """The data and post-processing flags of the original run_squad.py."""
    a = parser.add_argument
    a("--data_dir", default=None, help="folder of the JSON files (joined with --train_file/--predict_file)")
    a("--train_file", default=None, help="SQuAD v1.1 training JSON (default with --data_dir: train-v1.1.json)")
    a("--predict_file", default=None, help="SQuAD v1.1 evaluation JSON (default with --data_dir: dev-v1.1.json)")
    a("--version_2_with_negative", action="store_true", help="SQuAD v2 is not supported (error)")
    a("--null_score_diff_threshold", type=float, default=0.0, help=UNUSED + " (v2 only)")
    a("--max_seq_length", type=int, default=384, help="tokens per window")
    a("--doc_stride", type=int, default=128, help="advance between window starts (legacy meaning)")
    a("--max_query_length", type=int, default=64, help="question tokens kept")
    a("--n_best_size", type=int, default=20, help="start/end candidates in the span search")
    a("--max_answer_length", type=int, default=30, help="longest answer in tokens")
    a("--verbose_logging", action="store_true", help=UNUSED)
    a("--lang_id", type=int, default=0, help=UNUSED)
    a("--threads", type=int, default=1, help=UNUSED + " (datasets does the tokenisation)")


def _squad_path(args, name, default):
    given = getattr(args, name)
    if args.data_dir:
        return Path(args.data_dir) / (given or default)
    if given:
        return Path(given)
    raise UserError(f"--{name} (or --data_dir) is required: the tensorflow_datasets fallback of "
                    "the original is not available offline")


def squad_experiment(args, runtime, tokenizer):
    """The :class:`utils.experiment.Experiment` of a SQuAD run, from the scripts' flags: training
    features (None without --do_train), the collator, ``evaluate(model)`` (it writes
    predictions.json and nbest_predictions.json into --output_dir) and the empty-answer baseline.
    """
    if args.version_2_with_negative:
        raise UserError("--version_2_with_negative: only SQuAD v1.1 is supported")
    cache = data_cache_dir(args)
    lengths = dict(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                   max_query_length=args.max_query_length, cache_dir=cache,
                   overwrite_cache=args.overwrite_cache)
    train = None
    if args.do_train:
        _, train = load_squad(_squad_path(args, "train_file", "train-v1.1.json"), tokenizer, True, **lengths)
        train = train_rows(train, args)
    examples, features = load_squad(_squad_path(args, "predict_file", "dev-v1.1.json"), tokenizer, False, **lengths)
    if args.max_eval_samples is not None and args.max_eval_samples < len(examples):
        n = args.max_eval_samples
        examples = examples[:n]
        features = features.filter(lambda idx: idx < n, input_columns="example_index")
    collator = SquadCollator(tokenizer, args.max_seq_length if args.pad_to_max_length else None)

    def evaluate_fn(model):
        return evaluate_squad(model, examples, features, collator, args.per_gpu_eval_batch_size,
                              runtime.device, runtime.amp_dtype, args.n_best_size, args.max_answer_length,
                              output_dir=args.output_dir)

    return Experiment("squad", train, collator, evaluate_fn, {"metric": "f1", "value": 0.0, "what": "empty answer"})
