"""The structured speed-ups table of a report, from ``scripts/bench.py --only structured
--json_out FILE`` records (``report.py --bench FILE``)."""
import json
from pathlib import Path

from utils.errors import UserError
from utils.tables import md_table, yes_no

# --- benchmark: structured speed-ups (scripts/bench.py --only structured --json_out FILE) ----

STRUCTURED_FIELDS = (
    "shape", "layers", "hidden", "sparsity_target", "sparsity", "heads_kept", "heads_total", "neurons_kept",
    "neurons_total", "params_dense", "params_shrunk", "encoder_params_dense", "encoder_params_shrunk",
    "flops_dense", "flops_shrunk", "flops_ratio", "batch", "seq", "infer_ratio", "infer1_ratio", "train_ratio",
    "masked_infer_ratio", "infer_dense_s", "infer_shrunk_s", "infer1_dense_s", "infer1_shrunk_s", "train_dense_s",
    "train_shrunk_s", "steps", "meets_target", "quick", "cpu", "device", "torch", "torch_threads", "loadavg_1m")


def read_bench(path):
    """The records of a ``scripts/bench.py`` output file: its ``--json_out`` (one JSON list) or
    its stdout (one JSON object per line). Unreadable or other content raises UserError."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--bench {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        records = json.loads(text)
    except ValueError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            records = None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) and "figure" in r for r in records):
        raise UserError(f"--bench {path}: not benchmark records (a JSON list from bench.py --json_out, "
                        "or bench.py's JSON lines)")
    return records


def _times(x):
    return "—" if x is None else f"{x:.2f}×"


def _size(n, unit=""):
    """1.2M / 3.4k (``unit`` after it: GFLOP, MFLOP...)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale or scale == 1e3:
            return f"{n / scale:.1f} {prefix}{unit}" if unit else f"{n / scale:.1f}{prefix}"


def _machine_line(recs):
    """One line per machine the records come from (the load as a range)."""
    lines = {}
    for r in recs:
        m = r.get("machine") or {}
        key = (f"{m.get('cpu', '?')}, {m.get('cpus_usable') or m.get('cpu_count', '?')} CPUs usable, "
               f"torch {m.get('torch', '?')} with {m.get('torch_threads', '?')} thread(s), {m.get('device', '?')}"
               + (f" ({m['gpu']})" if m.get("gpu") else "") + (", --quick (not meaningful)" if r.get("quick") else ""))
        if m.get("loadavg_1m") is not None:
            lines.setdefault(key, []).append(m["loadavg_1m"])
        else:
            lines.setdefault(key, [])
    return [f"Machine: {k}" + ("" if not v else f", load {v[0]}" if min(v) == max(v) else f", load {min(v)}–{max(v)}")
            + "." for k, v in lines.items()]


def structured_speed(records):
    """The "Structured speed-ups" Markdown section and its CSV rows (``structured_speed.csv``)
    from the benchmark records of figure ``structured`` (other figures are ignored)."""
    recs = [r for r in records if r.get("figure") == "structured"]
    out = ["## Structured speed-ups", ""]
    if not recs:
        return "\n".join(out + ["(no `structured` figure in the benchmark file)"]) + "\n", []
    sizes = {(r.get("batch"), r.get("seq")) for r in recs}
    one = len(sizes) == 1
    b, s = next(iter(sizes)) if one else ("B", "S")
    header = ["shape", "encoder sparsity", "heads kept", "FFN neurons kept", "params dense → shrunk (encoder)",
              "FLOPs dense / shrunk", f"inference {b}×{s}", f"inference 1×{s}", f"train step {b}×{s}",
              f"masked, inference {b}×{s}", "target"]
    rows, csv_rows = [], []
    for i, r in enumerate(recs):
        try:
            _structured_row(r, one, rows, csv_rows)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"--bench: structured record {i + 1} is incomplete ({type(err).__name__}: {err}); "
                            "rerun scripts/bench.py --only structured") from None
    out += ["Speed-ups: dense time / shrunk time (medians of each variant's timed steps, the variants taking "
            "turns in one process); inference in eval mode under `torch.inference_mode`, the train step a "
            "forward, backward and AdamW step; the masked full model beside them (dense speed expected). "
            "FLOPs per forward at the inference batch: "
            + str((recs[0].get("flops") or {}).get("counted", "encoder matmuls")) + ".",
            "", md_table(header, rows), ""]
    return "\n".join(out + _machine_line(recs)) + "\n", csv_rows


def _structured_row(r, one, rows, csv_rows):
    """Append one structured record's table row and CSV row."""
    model, p, f, med = r["model"], r["params"], r["flops"], r["median_s"]
    at = "" if one else f" ({r['batch']}×{r['seq']})"
    target = ("—" if r.get("target") is None
              else f"≥ {r.get('target_speedup', 1.5)}×: {yes_no(r.get('meets_target'))}")
    rows.append([f"{model['name']} ({model['layers']}×{model['hidden']})", f"{r['sparsity']:.1f}%",
                 f"{r['heads_kept']}/{r['heads_total']}", f"{r['neurons_kept']}/{r['neurons_total']}",
                 f"{_size(p['dense'])} → {_size(p['shrunk'])} ({_size(p['dense_encoder'])} → "
                 f"{_size(p['shrunk_encoder'])})",
                 f"{_times(r['flops_ratio'])} ({_size(f['dense'], 'FLOP')} → {_size(f['shrunk'], 'FLOP')})",
                 f"**{_times(r['infer_ratio'])}**{at}", _times(r["infer1_ratio"]), _times(r["train_ratio"]) + at,
                 _times(r.get("masked_infer_ratio")), target])
    m = r.get("machine") or {}
    csv_rows.append(dict(zip(STRUCTURED_FIELDS, (
        model["name"], model["layers"], model["hidden"], r["sparsity_target"], r["sparsity"], r["heads_kept"],
        r["heads_total"], r["neurons_kept"], r["neurons_total"], p["dense"], p["shrunk"], p["dense_encoder"],
        p["shrunk_encoder"], f["dense"], f["shrunk"], r["flops_ratio"], r["batch"], r["seq"], r["infer_ratio"],
        r["infer1_ratio"], r["train_ratio"], r.get("masked_infer_ratio"), med["infer"]["dense"],
        med["infer"]["shrunk"], med["infer1"]["dense"], med["infer1"]["shrunk"], med["train"]["dense"],
        med["train"]["shrunk"], r.get("steps"), r.get("meets_target"), r.get("quick"), m.get("cpu"),
        m.get("device"), m.get("torch"), m.get("torch_threads"), m.get("loadavg_1m")))))


