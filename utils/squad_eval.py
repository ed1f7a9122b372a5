"""SQuAD v1.1 post-processing and evaluation: the legacy n-best span search over per-feature
logits (numpy only) and the official EM/F1, with ``predictions.json`` and
``nbest_predictions.json`` written beside the run. Reading and features are :mod:`utils.squad`.
"""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler

from utils.io import write_json
from utils.metrics import squad_scores


def _best_indexes(logits, n_best_size):
    """Indices of the n largest logits, ties in position order (as the legacy sorted())."""
    return np.argsort(-logits, kind="stable")[:n_best_size]


def _softmax(scores):
    scores = np.asarray(scores, dtype=np.float64)
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _spans(offsets, flags, start_logits, end_logits, n_best_size, max_answer_length):
    """One feature's candidate spans ``(start_logit, end_logit, char_start, char_end)``: start and
    end among its top ``n_best_size`` logits, both in the context, the start max-context here,
    ``end >= start`` and at most ``max_answer_length`` tokens."""
    start_logits = np.asarray(start_logits, dtype=np.float64)[: len(offsets)]
    end_logits = np.asarray(end_logits, dtype=np.float64)[: len(offsets)]
    end_indexes = _best_indexes(end_logits, n_best_size)
    out = []
    for s in _best_indexes(start_logits, n_best_size):
        if offsets[s] is None or not flags[s]:
            continue
        for t in end_indexes:
            if offsets[t] is None or t < s or t - s + 1 > max_answer_length:
                continue
            out.append((float(start_logits[s]), float(end_logits[t]), offsets[s][0], offsets[t][1]))
    return out


def postprocess_predictions(examples, features, all_start_logits, all_end_logits, n_best_size=20,
                            max_answer_length=30):
    """Turn per-feature start/end logits into answer texts (legacy v1.1 n-best search, numpy only).

    Args:
        examples: the examples list of :func:`read_squad_examples` (needs "id" and "context").
        features: evaluation features (a ``datasets.Dataset`` or the dict of
            :func:`build_eval_features`) with columns example_index, offset_mapping and
            token_is_max_context.
        all_start_logits, all_end_logits: one row of logits per feature, in feature order (a 2-D
            array padded beyond each feature's length, or a list of 1-D arrays). Positions past
            a feature's own length are ignored.
        n_best_size: candidates per feature for the start and for the end (top logits), and the
            length of each n-best list.
        max_answer_length: longest answer, in tokens.

    For every example, each of its features proposes the spans (start, end) with start and end
    among that feature's top ``n_best_size`` logits, both inside the context, the start token
    max-context in that feature, ``end >= start`` and at most ``max_answer_length`` tokens.
    Candidates are ranked by ``start_logit + end_logit`` (stable: earlier features and higher
    single logits first on ties); texts repeated lower in the ranking are dropped, as in the
    legacy code. The text is the exact substring ``context[char_start:char_end]`` of the original
    context, so it maps back with no normalisation. An example with no valid span predicts "".

    Returns ``(predictions, nbest)``: ``{id: text}`` and ``{id: [{"text", "probability",
    "start_logit", "end_logit"}, ...]}``, the probabilities a softmax of the n-best total scores.
    """
    columns = ["example_index", "offset_mapping", "token_is_max_context"]
    if hasattr(features, "select_columns"):  # a Dataset: one columnar read, not row by row
        features = features.select_columns(columns)[:]
    example_index, offset_mapping, max_context = (features[c] for c in columns)
    per_example = {}
    for f, ex in enumerate(example_index):
        per_example.setdefault(ex, []).append(f)
    predictions, nbest = {}, {}
    for e, example in enumerate(examples):
        context = example["context"]
        candidates = []
        for f in per_example.get(e, []):
            candidates += _spans(offset_mapping[f], max_context[f], all_start_logits[f], all_end_logits[f],
                                 n_best_size, max_answer_length)
        candidates.sort(key=lambda c: c[0] + c[1], reverse=True)
        entries, seen = [], set()
        for start_logit, end_logit, c0, c1 in candidates:
            text = context[c0:c1]
            if text in seen:
                continue
            seen.add(text)
            entries.append({"text": text, "start_logit": start_logit, "end_logit": end_logit})
            if len(entries) == n_best_size:
                break
        if not entries:
            entries = [{"text": "", "start_logit": 0.0, "end_logit": 0.0}]
        probs = _softmax([x["start_logit"] + x["end_logit"] for x in entries])
        nbest[example["id"]] = [{"text": x["text"], "probability": float(p),
                                 "start_logit": x["start_logit"], "end_logit": x["end_logit"]}
                                for x, p in zip(entries, probs)]
        predictions[example["id"]] = entries[0]["text"]
    return predictions, nbest


def _predict_logits(model, features, collator, batch_size, device, amp_dtype):
    """Start/end logits per feature (1-D float arrays cut to each feature's length)."""
    loader = DataLoader(features, sampler=SequentialSampler(features), batch_size=batch_size,
                        collate_fn=collator)
    starts, ends = [], []
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype,
                                         enabled=amp_dtype is not None):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()
                     if k not in ("start_positions", "end_positions")}
            out = model(**batch)
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            s = out.start_logits.float().cpu().numpy()
            e = out.end_logits.float().cpu().numpy()
            starts += [row[:n] for row, n in zip(s, lengths)]
            ends += [row[:n] for row, n in zip(e, lengths)]
    return starts, ends


def evaluate_squad(model, examples, features, collator, batch_size, device, amp_dtype=None,
                   n_best_size=20, max_answer_length=30, output_dir=None):
    """Run a QA model over the features and score it with the official v1.1 EM/F1.

    Writes ``predictions.json`` and ``nbest_predictions.json`` to ``output_dir`` when given
    (each evaluation overwrites them). Returns ``{"exact", "f1", "total"}`` (percentages).
    """
    was_training = model.training
    model.eval()
    try:
        starts, ends = _predict_logits(model, features, collator, batch_size, device, amp_dtype)
    finally:
        model.train(was_training)
    predictions, nbest = postprocess_predictions(examples, features, starts, ends, n_best_size,
                                                 max_answer_length)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(output_dir) / "predictions.json", predictions)
        write_json(Path(output_dir) / "nbest_predictions.json", nbest)
    gold = {ex["id"]: [a["text"] for a in ex["answers"]] for ex in examples}
    scores = squad_scores(predictions, gold)
    return {"exact": float(scores["exact"]), "f1": float(scores["f1"]),
            "total": int(scores["total"])}
