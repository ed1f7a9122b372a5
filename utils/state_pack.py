"""An unfinished run's resumable state, packed small enough to commit, and unpacked bit for bit.

A run's ``resume/state.pt`` (:mod:`utils.resume`) holds the weights, the masks and AdamW's
moments: about four times the model, too big for a record. Right after an IMP pruning event
(where IMP writes its states by default) almost all of it can be rebuilt from the pre-trained
checkpoint the run started from: the backbone has just been rewound to it, the masks are 0/1
and AdamW has just been reset. So each tensor of the state is stored as the first of

* ``ref``: equal to the checkpoint's tensor of the same name (kept: nothing but the name);
* ``ref_masked``: equal to that tensor times the tensor's own mask (``…weight_mask``);
* ``zeros``: all zeros (kept: shape and dtype);
* ``bits``: 0/1 values, kept as packed bits;
* ``raw``: anything else (the trained head, a mid-round state's weights), kept as it is.

The packed file (``resume/state.packed``) is gzip over a safetensors file whose header carries
the state's non-tensor part, the encoding of every tensor and a sha256 over every tensor's bytes
of the original state; unpacking rebuilds ``resume/state.pt`` from the checkpoint named in the
run's ``args.json`` and refuses (one line, naming the checkpoint) when the digest differs, so a
resumed run continues from exactly the state that was packed. CoLA's MiniLM-L6 IMP state after
its first pruning event packed from 101.7 MB to 0.76 MB (the masks' bits and the head).

    python -m utils.state_pack pack RUN_DIR RECORD_DIR   # an unfinished run into a record
    python -m utils.state_pack unpack RECORD_OR_RUN_DIR  # resume/state.packed -> resume/state.pt
    python -m utils.state_pack unpack_all RUNS_DIR       # every unfinished run's packed state

``pack`` copies what the run needs to go on and what a record keeps of it: ``args.json``,
every ``checkpoint-*/mask.pt`` as ``mask.pt.gz`` (with its ``mask_sparsity.json`` and
``mask_provenance.json``) and the packed state. The recipes unpack a record's states when they
copy it into their runs folder (``unpack_masks`` in scripts/recipe_lib.sh, :func:`unpack_all`),
and the queue then resumes the run with ``--resume``.
"""
import base64
import gzip
import hashlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load, save

from utils.archive import write_gz
from utils.errors import UserError
from utils.glue import get_task
from utils.io import atomic_write, read_json
from utils.models import load_model
from utils.resume import STATE, read_state, save_state, state_dir

PACKED = "state.packed"
KINDS = {"LT_glue.py": "glue", "glue_trans.py": "glue", "LT_squad.py": "squad", "squad_trans.py": "squad",
         "LT_pretrain.py": "pretrain", "pretrain_trans.py": "pretrain"}
MASK_FILES = ("mask.pt", "mask_sparsity.json", "mask_provenance.json")


def _tensors_in_order(obj, out):
    """Every tensor of a state, in a fixed order (dict keys sorted), for the digest."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            _tensors_in_order(obj[key], out)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _tensors_in_order(value, out)
    return out


def state_digest(state):
    """sha256 over every tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    for t in _tensors_in_order(state, []):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def reference_weights(args):
    """The checkpoint's weights, named as in the run's model: the state's rebuild target."""
    kind = KINDS.get(args.get("script"))
    path = args.get("model_name_or_path")
    if kind is None or not path:
        raise UserError(f"cannot tell which model the run of {args.get('output_dir')} started from "
                        f"(script {args.get('script')!r}, --model_name_or_path {path!r})")
    overrides = {}
    if kind == "glue" and args.get("task_name"):
        task = get_task(args["task_name"])
        overrides = {"num_labels": task.num_labels, "finetuning_task": task.name}
    if not (Path(path) / "config.json").is_file():
        raise UserError(f"--model_name_or_path {path} (from the run's args.json) is not a checkpoint folder: "
                        "the packed state is rebuilt from the checkpoint the run started from")
    model = load_model(kind, path, **overrides)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _mask_name(name):
    return _ref_name(name) + "_mask"


def _mask_of(name, model_state):
    return model_state.get(_mask_name(name)) if _ref_name(name).endswith(".weight") else None


def _ref_name(name):
    return name[:-len("_orig")] if name.endswith("_orig") else name


def _same(a, b):
    """Equal bytes (so -0.0 and 0.0 differ), shape and dtype."""
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
        a.contiguous().view(torch.uint8) if a.numel() else a, b.contiguous().view(torch.uint8) if b.numel() else b)


def _masked(r, mask, how):
    """The reference tensor ``r`` under a 0/1 ``mask``: multiplied (pruned negative weights become
    -0.0) or selected (they become 0.0)."""
    return r * mask.to(r.dtype) if how == "mul" else torch.where(mask.to(torch.bool), r, torch.zeros_like(r))


def _is_01(t):
    return t.dtype == torch.bool or (t.is_floating_point() and bool(((t == 0) | (t == 1)).all()))


def _encode(name, t, ref, model_state, tensors):
    """How tensor ``t`` (at ``name`` in the model's state dict, or None elsewhere) is kept."""
    key = str(len(tensors))
    t = t.detach().cpu().contiguous()
    r = ref.get(_ref_name(name)) if name is not None else None
    if r is not None and r.shape == t.shape and r.dtype == t.dtype:
        if _same(r, t):
            return {"__packed__": "ref", "name": _ref_name(name)}
        mask = _mask_of(name, model_state)
        if mask is not None and mask.shape == t.shape:
            for how in ("mul", "where"):
                if _same(_masked(r, mask, how), t):
                    return {"__packed__": "ref_masked", "name": _ref_name(name), "mask": _mask_name(name),
                            "how": how}
    meta = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    if t.numel() >= 64 and not bool(t.any()):
        return {"__packed__": "zeros", **meta}
    if t.numel() >= 64 and _is_01(t):
        tensors[key] = torch.from_numpy(np.packbits(t.reshape(-1).to(torch.bool).numpy()))
        return {"__packed__": "bits", "key": key, **meta}
    tensors[key] = t
    return {"__packed__": "raw", "key": key}


def _pack_tree(obj, ref, model_state, tensors, name=None):
    if isinstance(obj, torch.Tensor):
        return _encode(name, obj, ref, model_state, tensors)
    if isinstance(obj, dict):
        return {k: _pack_tree(v, ref, model_state, tensors, k if obj is model_state else None)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack_tree(v, ref, model_state, tensors) for v in obj)
    return obj


def pack_state(state, ref):
    """(header meta, tensors) of a packed ``state`` against the reference weights ``ref``."""
    tensors = {}
    meta = _pack_tree(state, ref, state.get("model", {}), tensors)
    return meta, tensors


def _ref(ref, name):
    if name not in ref:
        raise UserError(f"the checkpoint has no weight {name}: it is not the one the state was packed against")
    return ref[name]


def _unpack_tree(obj, ref, tensors):
    if isinstance(obj, dict) and "__packed__" in obj:
        how = obj["__packed__"]
        if how == "raw":
            return tensors[obj["key"]]
        if how == "ref":
            return _ref(ref, obj["name"]).clone()
        dtype, shape = getattr(torch, obj.get("dtype", "float32")), obj.get("shape")
        if how == "zeros":
            return torch.zeros(shape, dtype=dtype)
        if how == "bits":
            n = int(np.prod(shape)) if shape else 1
            bits = np.unpackbits(tensors[obj["key"]].numpy())[:n].astype(bool)
            return torch.from_numpy(bits).reshape(shape).to(dtype)
        raise UserError(f"unknown packed tensor kind {how!r}")
    if isinstance(obj, dict):
        return {k: _unpack_tree(v, ref, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack_tree(v, ref, tensors) for v in obj)
    return obj


def _resolve_masked(meta_model, ref, tensors):
    """The model's tensors: a ``ref_masked`` weight needs its mask, so the masks come first."""
    out = {}
    for name, enc in meta_model.items():
        if not (isinstance(enc, dict) and enc.get("__packed__") == "ref_masked"):
            out[name] = _unpack_tree(enc, ref, tensors)
    for name, enc in meta_model.items():
        if isinstance(enc, dict) and enc.get("__packed__") == "ref_masked":
            out[name] = _masked(_ref(ref, enc["name"]), out[enc["mask"]], enc["how"])
    return {k: out[k] for k in meta_model}


def write_packed(path, state, ref):
    """Pack ``state`` into ``path`` (gzip, atomic). Returns the packed size in bytes."""
    meta, tensors = pack_state(state, ref)
    header = {"bert_tickets_packed_state": base64.b64encode(pickle.dumps(
        {"meta": meta, "sha256": state_digest(state)})).decode("ascii")}
    body = gzip.compress(save(tensors, metadata=header), compresslevel=6, mtime=0)  # same state, same bytes
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(body))
    return len(body)


def read_packed(path, ref):
    """The state packed in ``path``, rebuilt from ``ref`` and checked against its digest."""
    raw = gzip.decompress(Path(path).read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])["__metadata__"]
    packed = pickle.loads(base64.b64decode(header["bert_tickets_packed_state"]))
    tensors = load(raw)
    meta = packed["meta"]
    state = {k: _resolve_masked(v, ref, tensors) if k == "model" else _unpack_tree(v, ref, tensors)
             for k, v in meta.items()}  # the state's own key order
    if state_digest(state) != packed["sha256"]:
        raise UserError(f"{path}: the state rebuilt from the checkpoint differs from the state that was packed "
                        "(another checkpoint than the run started from?); start the run again without it")
    return state


def pack_run(run_dir, record_dir):
    """Copy an unfinished run into a record: args.json, its masks (gzip) and its packed state."""
    run_dir, record_dir = Path(run_dir), Path(record_dir)
    if run_dir.resolve() == record_dir.resolve():
        raise UserError(f"pack: the record folder {record_dir} is the run folder itself; give another folder")
    if (run_dir / "complete.json").is_file():
        raise UserError(f"pack: the run in {run_dir} is finished; a finished run goes into the record with "
                        "report.py --slim_copy")
    args = read_json(run_dir / "args.json")
    state_file = state_dir(run_dir) / STATE
    if args is None or not state_file.is_file():
        raise UserError(f"pack: {run_dir} has no args.json and resume/{STATE}: no resumable run there")
    state = read_state(state_file)
    ref = reference_weights(args)
    record_dir.mkdir(parents=True, exist_ok=True)
    for old in record_dir.glob("checkpoint-*"):  # the record keeps one snapshot of the run
        if old.is_dir() and not (run_dir / old.name).is_dir():
            shutil.rmtree(old)
    shutil.copy2(run_dir / "args.json", record_dir / "args.json")
    for ckpt in sorted(run_dir.glob("checkpoint-*")):
        for name in MASK_FILES:
            src = ckpt / name
            if not src.is_file():
                continue
            (record_dir / ckpt.name).mkdir(exist_ok=True)
            if name == "mask.pt":
                write_gz(src, record_dir / ckpt.name / "mask.pt.gz")
            else:
                shutil.copy2(src, record_dir / ckpt.name / name)
    target = state_dir(record_dir) / PACKED
    target.parent.mkdir(parents=True, exist_ok=True)
    size = write_packed(target, state, ref)
    print(f"packed {state_file} (update {state.get('global_step')}, {state_file.stat().st_size / 1e6:.1f} MB) "
          f"into {target} ({size / 1e6:.2f} MB)")
    return target


def unpack_run(run_dir):
    """``resume/state.packed`` -> ``resume/state.pt`` where the run is unfinished and has no state."""
    run_dir = Path(run_dir)
    packed = state_dir(run_dir) / PACKED
    if not packed.is_file() or (run_dir / "complete.json").is_file() or (state_dir(run_dir) / STATE).is_file():
        return None
    args = read_json(run_dir / "args.json")
    if args is None:
        raise UserError(f"unpack: {run_dir} has {packed.name} but no args.json")
    state = read_packed(packed, reference_weights(args))
    save_state(run_dir, state)
    print(f"unpacked {packed} into {state_dir(run_dir) / STATE} (update {state.get('global_step')})")
    return state_dir(run_dir) / STATE


def unpack_all(folder):
    """:func:`unpack_run` for every ``resume/state.packed`` under ``folder`` (what the recipes'
    ``unpack_masks`` does with a record they copied in); the states written."""
    return [p for p in (unpack_run(f.parent.parent) for f in sorted(Path(folder).rglob(f"resume/{PACKED}"))) if p]


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "pack":
            pack_run(argv[1], argv[2])
        elif len(argv) == 2 and argv[0] in ("unpack", "unpack_all"):
            done = unpack_run(argv[1]) if argv[0] == "unpack" else unpack_all(argv[1])
            if not done and argv[0] == "unpack":
                print(f"unpack: nothing to unpack in {argv[1]} (no resume/{PACKED}, a state already there, "
                      "or the run finished)")
        else:
            print("usage: python -m utils.state_pack pack RUN_DIR RECORD_DIR | unpack RUN_DIR | unpack_all DIR",
                  file=sys.stderr)
            return 2
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
