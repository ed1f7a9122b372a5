"""The one training loop of the project, shared by all six training scripts.

The original's legacy loop (docs/faithfulness.md §2): AdamW with two weight-decay groups
(no decay on biases and LayerNorm weights), a linear schedule with warm-up over ``t_total``,
gradient clipping to ``--max_grad_norm``, gradient accumulation, ``--max_steps``, evaluation
every ``--logging_steps`` when ``--evaluate_during_training``, TensorBoard scalars and a tqdm
bar. Hooks let the IMP runner act at every ``--save_steps`` (prune, rewind, reset optimizer).

Outputs in ``--output_dir``: ``args.json`` (full configuration), ``results.json`` (every
evaluation, rewritten atomically after each), ``result.pt`` (the original's list, plain types),
``runs/`` (TensorBoard), and last either ``complete.json`` (the run reached its end) or
``failed.json`` (it stopped: its loss or weights became NaN/inf; exit code 3).

Finished means trained and finite: a plan with no optimizer update is refused before anything
is written (:func:`check_plan`), and the loop stops a run whose loss (checked at every batch)
or weights (checked before every pruning event, saved state and at the end) are not finite.

Deliberate differences from the original, documented in docs/faithfulness.md §2.2-§2.3: the run stops after
exactly ``--max_steps`` updates (the original made one more), ``--max_steps`` always sets
``t_total``, step counting starts at 0 in every script (the SQuAD scripts started at 1), and
TensorBoard files go to ``<output_dir>/runs`` instead of ``./runs``.
"""
import atexit
import copy
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from utils.args import command_of
from utils.errors import RunFailed, UserError
from utils.io import atomic_write, settle, write_json
from utils.pruning import GradientMasker, effective_state_dict, model_sparsity, unwrap


# --- set-up ------------------------------------------------------------------------------

def set_seed(seed):
    """Seed python, numpy and torch (all devices), as the original's ``set_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup_device(args):
    """Fill ``args.device``, ``args.n_gpu``, ``args.amp_dtype``, ``args.world_size`` and
    ``args.rank``; start the process group under ``torchrun`` (one process per GPU)."""
    local_rank = int(os.environ.get("LOCAL_RANK", getattr(args, "local_rank", -1)))
    args.local_rank = local_rank
    if local_rank != -1 and not all(os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        raise UserError(f"--local_rank {local_rank}: this process was not started by torchrun (no RANK, "
                        "WORLD_SIZE, MASTER_ADDR in its environment); run it with torchrun --nproc_per_node N, "
                        "or drop --local_rank")
    if local_rank != -1:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() and not args.no_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
            atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            args.device = torch.device("cuda", local_rank)
        else:
            args.device = torch.device("cpu")
        args.world_size, args.rank = dist.get_world_size(), dist.get_rank()
        args.n_gpu = 1 if backend == "nccl" else 0
    else:
        use_cuda = torch.cuda.is_available() and not args.no_cuda
        args.device = torch.device("cuda" if use_cuda else "cpu")
        args.n_gpu = 1 if use_cuda else 0  # one device per process; use torchrun for several
        args.world_size, args.rank = 1, 0
    if args.fp16 and args.bf16:
        raise UserError("--fp16 and --bf16 exclude each other")
    if args.fp16 and args.device.type != "cuda":
        raise UserError("--fp16 needs a CUDA device; on CPU use --bf16")
    args.amp_dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else None
    return args


def is_main(args):
    return getattr(args, "rank", 0) == 0


COMPLETE = "complete.json"  # written last, only by a run that reached its end
FAILED = "failed.json"  # written instead, by a run that stopped (its loss or weights became NaN/inf)
STALE_FILES = {"results.json", "result.pt", "args.json", "predictions.json", "nbest_predictions.json"}
# what a training run may write at the top of its folder (checkpoint-<step>/ is claimed when made)
RUN_FILES = (*sorted(STALE_FILES), COMPLETE, FAILED)
RUN_DIRS = ("runs", "resume", "model")


def check_output_dir(args):
    """Refuse, before anything is written, an ``--output_dir`` that is a file or cannot be written,
    a non-empty folder without ``--overwrite_output_dir``, and, for an evaluation-only run (no
    ``--do_train``), a folder holding a finished or failed run (only an earlier evaluation-only
    run may be replaced, with ``--overwrite_output_dir``)."""
    from utils.io import check_dir_writable, is_empty_folder, read_json

    out = check_dir_writable(args.output_dir, "--output_dir")
    if out.is_dir() and not is_empty_folder(out) and args.do_train and not args.overwrite_output_dir:
        raise UserError(f"--output_dir {out} exists and is not empty; use --overwrite_output_dir")
    if args.do_train or not out.is_dir() or getattr(args, "resume", False):
        return
    for name in (COMPLETE, FAILED):
        if (out / name).is_file():
            earlier = read_json(out / name)
            kind = earlier.get("kind") if isinstance(earlier, dict) else None
            if kind != "eval_only":
                raise UserError(f"--output_dir {out} holds a {'finished' if name == COMPLETE else 'failed'} run "
                                f"({name}): an evaluation-only run (no --do_train) never replaces it; give "
                                "another --output_dir")
            if not args.overwrite_output_dir:
                raise UserError(f"--output_dir {out} holds an evaluation-only run ({name}); use "
                                "--overwrite_output_dir to replace it")


def batches_per_epoch(args, n_examples):
    """Batches of one process in one epoch of ``n_examples`` training rows."""
    per_rank = math.ceil(n_examples / max(getattr(args, "world_size", 1), 1))
    return math.ceil(per_rank / args.per_gpu_train_batch_size)


def planned_updates(args, n_examples):
    """Optimizer updates a run will make on ``n_examples`` training rows (what the Trainer runs)."""
    steps_per_epoch = max(1, batches_per_epoch(args, n_examples) // args.gradient_accumulation_steps)
    if args.max_steps > 0:
        return args.max_steps
    return int(steps_per_epoch * args.num_train_epochs)


def check_plan(args, n_examples, schedule_steps=None):
    """Refuse, before anything is written, a run that would make no optimizer update: no training
    rows, ``--gradient_accumulation_steps`` above the batches of an epoch (the accumulation never
    completes), or a schedule of 0 updates (``--num_train_epochs 0.01``). Returns the planned updates.

    A warm-up longer than the schedule (``schedule_steps``, default the whole run) is allowed, as
    in the original, but warned about here, at the start: the learning rate then rises for the
    whole schedule and never reaches ``--learning_rate``."""
    batches, accumulation = batches_per_epoch(args, n_examples), args.gradient_accumulation_steps
    if n_examples == 0:
        raise UserError("the training data has no rows: there is nothing to train on")
    if batches < accumulation:
        raise UserError(f"--gradient_accumulation_steps {accumulation} is more than the {batches} batches of an "
                        f"epoch ({n_examples} rows, --per_gpu_train_batch_size {args.per_gpu_train_batch_size}): "
                        "no optimizer update would ever be made")
    total = planned_updates(args, n_examples)
    if total < 1:
        raise UserError(f"--num_train_epochs {args.num_train_epochs:g} gives 0 optimizer updates "
                        f"({batches // accumulation} per epoch): train longer, or set --max_steps")
    length = schedule_steps or total
    if args.warmup_steps > length:
        print(f"warning: --warmup_steps {args.warmup_steps} is longer than the schedule's {length} updates: the "
              f"learning rate rises throughout and peaks at {100.0 * length / args.warmup_steps:.0f} % of "
              "--learning_rate", file=sys.stderr)
    return total


def prepare_output_dir(args):
    """Create ``--output_dir`` and take its lock for the rest of the run; refuse a non-empty one
    unless ``--overwrite_output_dir``, which removes what earlier runs of this tool recorded writing
    there (the manifest, :mod:`utils.io`) and nothing else, so ``--output_dir .`` never touches a
    folder that only shares a name (``runs/``); then record what this run will write.

    A completion marker left by an earlier run in the folder is removed first, so a run that
    is killed never looks finished."""
    from utils.io import LOCK, claim, clear_own, lock_folder, release_locks

    check_output_dir(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fresh_lock = not (out / LOCK).exists()
    lock_folder(out)
    foreign = foreign_entries(out)
    if foreign and not getattr(args, "keep_foreign_files", False):
        release_locks()
        if fresh_lock:
            (out / LOCK).unlink(missing_ok=True)
        shown = ", ".join(foreign[:3]) + (f", … ({len(foreign)} in all)" if len(foreign) > 3 else "")
        raise UserError(f"--output_dir {out} holds entries no run of this tool wrote ({shown}): a run never "
                        "mixes its files with others' (and --overwrite_output_dir removes only what its runs "
                        "wrote); move them, give another --output_dir, or pass --keep_foreign_files")
    claim(out, *legacy_entries(out), adopt=True)
    (out / COMPLETE).unlink(missing_ok=True)
    (out / FAILED).unlink(missing_ok=True)
    if args.overwrite_output_dir and not getattr(args, "resume", False):  # --resume keeps everything
        clear_own(out)
    claim(out, RUN_FILES, RUN_DIRS)
    return out


def foreign_entries(out):
    """Top-level entries of ``out`` that no run of this tool wrote: not its bookkeeping, not in
    its manifest, not an earlier run's files of a folder from before manifests."""
    from utils.io import BOOKKEEPING, own_entries

    known = set(BOOKKEEPING) | set(own_entries(out) or {})
    files, dirs = legacy_entries(out)
    known |= set(files) | set(dirs)
    return sorted(p.name for p in Path(out).iterdir() if p.name not in known)


def legacy_entries(out):
    """(files, folders) a run folder from before manifests holds of its run (its ``args.json`` names
    a script of this tool): :data:`RUN_FILES`, ``checkpoint-*/``, ``runs/``, ``resume/``. Nothing
    for a folder with a manifest, or without such a run."""
    from utils.io import own_entries, read_json

    earlier = read_json(out / "args.json")
    if own_entries(out) is not None or not (isinstance(earlier, dict) and "script" in earlier
                                            and "output_dir" in earlier):
        return [], []
    files = [p.name for p in out.iterdir() if p.is_file() and p.name in RUN_FILES]
    dirs = [p.name for p in out.iterdir() if p.is_dir() and (p.name.startswith("checkpoint-")
                                                             or p.name in ("runs", "resume"))]
    return files, dirs


def plain_args(args):
    """The run's flags as plain JSON types (devices and dtypes as strings)."""
    def conv(v):
        if isinstance(v, (int, float, str, bool, type(None))):
            return v
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return str(v)
    return {k: conv(v) for k, v in sorted(vars(args).items())}


def save_args(args, script):
    """``args.json``: the full configuration next to every run (plain types only), with the
    provenance of any mask or weight file the run loaded (``provenance``)."""
    from utils.provenance import environment

    conf = plain_args(args)
    if not hasattr(args, "environment"):
        args.environment = environment()  # once per run: versions, git commit, start time
    conf["environment"] = args.environment
    conf["script"] = script
    conf["command"] = command_of(script.split()[0], args)
    write_json(Path(args.output_dir) / "args.json", conf)


def autocast(args):
    """Mixed-precision context for forward passes (``--fp16`` / ``--bf16``), else a no-op."""
    if args.amp_dtype is None:
        return nullcontext()
    return torch.autocast(args.device.type, dtype=args.amp_dtype)


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def save_weights(model, folder):
    """Write the model's effective weights (plain keys) as ``model.safetensors`` plus its
    ``config.json``: the folder loads with ``from_pretrained``, unlike the original's pickles."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, seen = {}, set()
    for k, v in effective_state_dict(model).items():
        ptr = (v.data_ptr(), v.shape)
        state[k] = v.detach().cpu().clone() if ptr in seen else v.detach().cpu().contiguous()
        seen.add(ptr)  # tied tensors (MLM decoder = word embeddings) are stored twice
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(state, tmp))
    unwrap(model).config.save_pretrained(folder)


def plain(obj):
    """Recursively convert tensors/numpy scalars to python numbers (for result.pt / JSON)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.generic, np.ndarray)):
        return obj.item() if getattr(obj, "size", 1) in (1, ()) or obj.ndim == 0 else obj.tolist()
    return obj


class StateBuffers:
    """CPU copies of the state's tensors in memory kept from one state to the next.

    Copying into memory already touched avoids allocating (and page-faulting) ~3x the weights
    at every state; on this VM fresh pages made the copy, which training waits for, take from
    0.5 s to several seconds for BERT-base. A buffer is reused only once the state written from
    it is on disk (:meth:`Trainer.save_state` waits for the previous writer first).
    """

    def __init__(self):
        self.buffers = {}

    def copy(self, key, tensor, dtype=None):
        tensor = tensor.detach()
        dtype = dtype or tensor.dtype
        buf = self.buffers.get(key)
        if buf is None or buf.shape != tensor.shape or buf.dtype != dtype:
            buf = self.buffers[key] = torch.empty(tensor.shape, dtype=dtype)
        buf.copy_(tensor)
        return buf

    def deep(self, obj, key=""):
        """A deep copy of ``obj`` with every tensor copied to a CPU buffer (AdamW's moments change
        at the next step)."""
        if isinstance(obj, torch.Tensor):
            return self.copy(key, obj)
        if isinstance(obj, dict):
            return {k: self.deep(v, f"{key}/{k}") for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.deep(v, f"{key}/{i}") for i, v in enumerate(obj))
        return copy.deepcopy(obj)


class StateWriter:
    """Writes a resumable state in a background thread, so training waits only for the in-memory
    copy (scripts/bench.py --only state_write measures both)."""

    def __init__(self, args, state):
        import threading

        from utils.resume import save_state

        self.error = None

        def run():
            try:
                save_state(args, state)
            except BaseException as err:  # surfaced by join()
                self.error = err
        self.thread = threading.Thread(target=run, name="state-writer", daemon=False)
        self.thread.start()

    def join(self):
        self.thread.join()
        if self.error is not None:
            raise self.error


# --- the loop ----------------------------------------------------------------------------

class Trainer:
    """Fine-tunes ``model`` on ``train_dataset``; evaluates with ``evaluate_fn(model) -> dict``.

    ``on_save(trainer, step)`` runs at every ``--save_steps`` and may return ``"stop"``; the IMP
    runner prunes and rewinds there and calls :meth:`reset_optimizer`. ``record`` (the
    original's ``record_result``) and ``results`` (``results.json``) collect every evaluation.
    """

    def __init__(self, args, model, train_dataset, collate_fn, evaluate_fn=None, script="",
                 on_save=None, results_extra=None):
        self.args = args
        if args.world_size > 1:  # torchrun: one process per device, gradients all-reduced
            from torch.nn.parallel import DistributedDataParallel

            ids = [args.device.index] if args.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.model = model
        self.train_dataset = train_dataset
        self.collate_fn = collate_fn
        self.evaluate_fn = evaluate_fn
        self.on_save = on_save
        self.global_step = 0
        self.record = []  # result.pt, as the original's record_result
        self.results = {"script": script, "evaluations": [], **(results_extra or {})}
        baseline = getattr(evaluate_fn, "baseline", None)
        if baseline is not None:  # the trivial score on the evaluated rows, for every report
            self.results["baseline"] = baseline
        self.out = Path(args.output_dir)
        self.writer = None
        self.started = time.time()
        self.train_batch_size = args.per_gpu_train_batch_size  # per process
        self.gen = None  # the sampler's generator (one process)
        self.loader = self._loader() if train_dataset is not None else None  # None: evaluation only
        # position and resumption (utils/resume.py)
        self.epoch, self.batches_done, self.epoch_gen_state = 0, 0, None
        self.skip, self.pending_rng, self.resume_gen = 0, None, None
        self.total_loss = self.logged_loss = 0.0
        self.state_hooks = {}  # name -> (get() -> dict, set(dict)): e.g. the IMP runner's counter
        self.state_buffers, self.state_writer = StateBuffers(), None  # see save_state
        steps_per_epoch = max(1, len(self.loader or ()) // args.gradient_accumulation_steps)
        if args.max_steps > 0:
            self.t_total = args.max_steps
            self.num_epochs = math.ceil(args.max_steps / steps_per_epoch)
        else:
            self.t_total = int(steps_per_epoch * args.num_train_epochs)
            self.num_epochs = math.ceil(args.num_train_epochs)
        self.schedule_steps = self.t_total  # IMP's --round_schedule per_round shortens it
        self.optimizer = self.scheduler = self.scaler = None
        self.reset_optimizer()

    def _loader(self):
        args = self.args
        if args.world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(self.train_dataset, seed=args.seed)
        else:
            gen = self.gen = torch.Generator().manual_seed(args.seed)
            sampler = RandomSampler(self.train_dataset, generator=gen)
        return DataLoader(self.train_dataset, sampler=sampler, batch_size=self.train_batch_size,
                          collate_fn=self.collate_fn, num_workers=getattr(args, "num_workers", 0))

    def reset_optimizer(self):
        """Fresh AdamW (zero moments) and a fresh linear schedule over ``schedule_steps``."""
        from transformers import get_linear_schedule_with_warmup

        args = self.args
        no_decay = ("bias", "LayerNorm.weight")
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if not any(nd in n for nd in no_decay)],
             "weight_decay": args.weight_decay},
            {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
        ]
        fused = args.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, eps=args.adam_epsilon,
                                           betas=(0.9, 0.999), fused=fused or None)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=self.schedule_steps)
        self.scaler = torch.amp.GradScaler("cuda") if args.fp16 else None
        if getattr(self, "grad_masker", None) is not None:
            self.grad_masker.remove()
        # masks may have changed: rebuild (in-backward hooks in one process, a pass under DDP)
        self.grad_masker = GradientMasker(self.model, eager=args.world_size == 1)

    # -- evaluation and logging --
    def evaluate(self, tag=None):
        """Run ``evaluate_fn``, print and store the result with step and sparsity."""
        sparsity = model_sparsity(self.model, getattr(self.args, "prunable_set", "paper"))
        print(f"step {self.global_step}: sparsity of the prunable set {sparsity:.2f}%")
        metrics = plain(self.evaluate_fn(unwrap(self.model))) if self.evaluate_fn else {}
        entry = {"step": self.global_step, "sparsity": sparsity, **metrics}
        if tag:
            entry["tag"] = tag
        print(json.dumps(entry))
        self.record.append(metrics)
        self.results["evaluations"].append(entry)
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(f"eval_{k}", v, self.global_step)
        self.write_results()
        return entry

    def write_results(self):
        if not is_main(self.args):
            return
        from utils.provenance import peak_memory

        self.results["wall_time_s"] = round(time.time() - self.started, 1)
        self.results["peak_memory"] = peak_memory()
        self.results["global_step"] = self.global_step
        write_json(self.out / "results.json", plain(self.results))
        record = plain(self.record)
        atomic_write(self.out / "result.pt", lambda tmp: torch.save(record, tmp))

    # -- training --
    def forward_backward(self, batch):
        """Forward and backward of one batch (scaled for accumulation); returns the loss."""
        args = self.args
        batch = to_device(batch, args.device)
        with autocast(args):
            loss = self.model(**batch).loss
        loss = loss / args.gradient_accumulation_steps
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.item()

    def optimizer_step(self):
        """Mask gradients, clip, step AdamW and the schedule, clear gradients."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self.grad_masker()  # under DDP: pruned weights get zero gradient, before clipping
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.model.zero_grad(set_to_none=True)
        self.global_step += 1

    def train(self):
        """Train until epochs, ``--max_steps`` or an ``on_save`` "stop"; returns (steps, mean loss).
        After :meth:`resume_from` it continues from the saved position."""
        from utils.resume import kill_at_step, set_rng_states

        args = self.args
        main = is_main(args)
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out / "runs"))
        model = self.model
        model.zero_grad(set_to_none=True)
        stop = False
        bar = tqdm(total=self.t_total, initial=self.global_step, desc="train", disable=not main or None,
                   dynamic_ncols=True)
        for epoch in range(self.epoch, self.num_epochs):
            self.epoch = epoch
            if hasattr(self.loader.sampler, "set_epoch"):
                self.loader.sampler.set_epoch(epoch)
            if self.resume_gen is not None:  # the permutation of the epoch the state was saved in
                self.gen.set_state(self.resume_gen)
                self.resume_gen = None
            self.epoch_gen_state = self.gen.get_state() if self.gen is not None else None
            if self.skip == 0 and self.pending_rng is not None:
                set_rng_states(self.pending_rng)
                self.pending_rng = None
            model.train()
            for step, batch in enumerate(self.loader):
                if self.skip:  # resuming: batches the saved run had already trained on
                    self.skip -= 1
                    if self.skip == 0 and self.pending_rng is not None:
                        set_rng_states(self.pending_rng)  # before the next batch is drawn
                        self.pending_rng = None
                    continue
                self.batches_done = step + 1
                loss = self.forward_backward(batch)
                self.total_loss += loss
                self.stop_if_not_finite(loss, bar)
                if (step + 1) % args.gradient_accumulation_steps:
                    continue
                self.optimizer_step()
                bar.update(1)
                if args.logging_steps > 0 and self.global_step % args.logging_steps == 0:
                    self._log_and_evaluate(self.total_loss - self.logged_loss)
                    self.logged_loss = self.total_loss
                pruned = False
                if args.save_steps > 0 and self.global_step % args.save_steps == 0 and self.on_save:
                    self.stop_if_not_finite(bar=bar)  # never prune or save non-finite weights
                    stop = self.on_save(self, self.global_step) == "stop"
                    pruned = True
                    model.train()
                if stop or (args.max_steps > 0 and self.global_step >= args.max_steps):
                    stop = True
                    break
                if self.checkpoint_due(pruned):
                    self.stop_if_not_finite(bar=bar)
                    self.save_state()
                kill_at_step(self.global_step, before=self.wait_for_state)
            if stop:
                break
            self.batches_done = 0
        bar.close()
        self.wait_for_state()
        self.stop_if_not_finite()
        if self.writer is not None:
            self.writer.flush()
        self.write_results()
        return self.global_step, self.total_loss / max(self.global_step, 1)

    # -- a run that diverged --
    def stop_if_not_finite(self, loss=None, bar=None):
        """With ``loss``: stop the run when the loss of this batch is NaN/inf on any process; without:
        when a weight is (the same on every process). Stopping is :meth:`fail`."""
        if loss is not None:
            if self._on_any_rank(not math.isfinite(loss)):
                self.fail(f"the training loss became {loss if not math.isfinite(loss) else 'non-finite'} at "
                          f"update {self.global_step + 1}", bar)
        elif not self._weights_finite():
            self.fail(f"a weight became NaN or infinite at update {self.global_step}", bar)

    def _on_any_rank(self, flag):
        if self.args.world_size <= 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=self.args.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _weights_finite(self):
        checks = [torch.isfinite(p.detach()).all() for p in self.model.parameters() if p.is_floating_point()]
        return bool(torch.stack(checks).all()) if checks else True

    def fail(self, reason, bar=None):
        """Record why the run stops, in ``results.json`` and ``failed.json`` (never ``complete.json``),
        and raise :class:`utils.errors.RunFailed` (exit code 3)."""
        if bar is not None:
            bar.close()
        self.wait_for_state()
        self.results["failed"] = {"reason": reason, "step": self.global_step}
        self.write_results()
        self.close()
        if is_main(self.args):
            write_json(self.out / FAILED, {"failed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason,
                                           "step": self.global_step, "script": self.results.get("script"),
                                           "task": self.results.get("task"), "kind": self.results.get("kind")})
            settle(self.out)
        raise RunFailed(f"training diverged: {reason}; the run stopped there (see {self.out / FAILED}; it is not "
                        "finished): try a lower --learning_rate")

    # -- resumable state (utils/resume.py) --
    def checkpoint_due(self, pruned):
        """``--checkpoint_steps N``: every N updates; 0 (default): after every pruning event when
        there are any (IMP), else at the end of every epoch; -1: never."""
        every = getattr(self.args, "checkpoint_steps", 0)
        if every < 0:  # the same answer on every rank: all of them take part in saving
            return False
        if every > 0:
            return self.global_step % every == 0
        if self.state_hooks.get("imp") is not None:
            return pruned
        return self.batches_done >= len(self.loader)

    def state(self):
        """Everything the rest of the run depends on, as a dict of tensors and plain values. The
        tensors are CPU copies in buffers reused by the next call (:class:`StateBuffers`)."""
        from utils.pruning import masking_impl
        from utils.resume import rng_states

        epoch, done, gen_state = self.epoch, self.batches_done, self.epoch_gen_state
        if done >= len(self.loader):  # the epoch is over: resume at the start of the next one
            epoch, done = epoch + 1, 0
            gen_state = self.gen.get_state() if self.gen is not None else None
        model = unwrap(self.model)
        buf = self.state_buffers
        return {"global_step": self.global_step, "epoch": epoch, "batches_done": done,
                "epoch_gen_state": gen_state,
                "model": {k: buf.copy("model/" + k, v, torch.bool if k.endswith(".weight_mask") else None)
                          for k, v in model.state_dict().items()},  # masks as bool: 4x smaller
                "mask_impl": masking_impl(model), "optimizer": buf.deep(self.optimizer.state_dict(), "optimizer"),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "rng": rng_states(),
                "results": self.results, "record": self.record, "elapsed": time.time() - self.started,
                "total_loss": self.total_loss, "logged_loss": self.logged_loss,
                "extra": {name: get() for name, (get, _) in self.state_hooks.items()}}

    def save_state(self):
        """Rank 0 writes the state; under torchrun it carries every rank's RNG states."""
        from utils.resume import rng_states

        self.write_results()
        per_rank = [rng_states()]
        if self.args.world_size > 1:
            import torch.distributed as dist

            gathered = [None] * self.args.world_size if is_main(self.args) else None
            dist.gather_object(per_rank[0], gathered, dst=0)
            per_rank = gathered
        if is_main(self.args):
            self.wait_for_state()  # the previous state is on disk: its buffers may be reused
            state = self.state()  # a CPU copy: training may go on while it is written
            state["rng_per_rank"] = per_rank
            self.state_writer = StateWriter(self.args, state)
        if self.args.world_size > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank has handed over its RNG state

    def wait_for_state(self):
        """Block until the state being written in the background is on disk (re-raises its error)."""
        if self.state_writer is not None:
            self.state_writer.join()
            self.state_writer = None

    def resume_from(self, state):
        """Load a saved state: masks, weights, optimizer, schedule, scaler, counters, results;
        the RNG states are restored once the saved position in the epoch is reached."""
        from utils.pruning import apply_masks

        model = unwrap(self.model)
        masks = {k: v for k, v in state["model"].items() if k.endswith(".weight_mask")}
        if masks:
            apply_masks(model, masks, state["mask_impl"] or "plain")
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) if k in masks else v for k, v in state["model"].items()})
        self.reset_optimizer()  # parameter groups and gradient masking of the masked model
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.global_step, self.epoch, self.skip = state["global_step"], state["epoch"], state["batches_done"]
        self.resume_gen = state["epoch_gen_state"]
        self.pending_rng = state["rng_per_rank"][getattr(self.args, "rank", 0)]
        self.results, self.record = state["results"], state["record"]
        self.total_loss, self.logged_loss = state["total_loss"], state["logged_loss"]
        self.started = time.time() - state["elapsed"]
        for name, (_, set_) in self.state_hooks.items():
            set_(state["extra"][name])
        print(f"resumed at update {self.global_step} (epoch {self.epoch}, batch {self.skip})")

    def _log_and_evaluate(self, loss_since_last_log):
        """Every ``--logging_steps``: rank 0 evaluates (``--evaluate_during_training``) on the
        unwrapped model and logs lr and loss, while the other ranks wait at a barrier (the
        original evaluated only without distributed training)."""
        args = self.args
        if is_main(args):
            if args.evaluate_during_training:
                self.evaluate()
                self.model.train()
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.global_step)
            self.writer.add_scalar("loss", loss_since_last_log / args.logging_steps, self.global_step)
        if args.world_size > 1 and args.evaluate_during_training:
            import torch.distributed as dist

            dist.barrier()

    def close(self):
        if self.writer is not None:
            self.writer.close()

    def finish(self):
        """End of the run: final results, then the completion marker ``complete.json`` (last
        file written; rank 0). It names the task's headline metric of the run's last
        evaluation (the final one for fine-tuning) in percent, beside the trivial baseline."""
        from utils.metrics import headline

        self.write_results()
        self.close()
        if not is_main(self.args):
            return
        evals = self.results.get("evaluations", [])
        last = self.results.get("final") or (evals[-1] if evals else None)
        task = self.results.get("task")
        score = None
        if last is not None and task:
            try:
                score = headline(task, last)
            except KeyError:
                score = None
            if score is not None:
                score.update(step=last.get("step"), source="final" if last.get("tag") == "final" else "last in-loop")
        marker = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "script": self.results.get("script"),
                  "task": task, "kind": self.results.get("kind"), "global_step": self.global_step,
                  "wall_time_s": self.results.get("wall_time_s"), "headline": score,
                  "baseline": self.results.get("baseline")}
        write_json(self.out / COMPLETE, plain(marker))
        settle(self.out)  # the manifest keeps what the run really wrote
