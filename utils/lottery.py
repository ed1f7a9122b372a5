"""The two experiment drivers the scripts share: iterative magnitude pruning (IMP, the LT_*.py
scripts) and fine-tuning with a fixed mask (the *_trans.py scripts).

IMP as the original runs it (docs/faithfulness.md §3.1, §3.2): train; at every ``--save_steps``
save the round's weights, prune 1/(10-k) of what remains by global magnitude (10 %, 20 %, … of
the original set), rewind the backbone to the pre-trained weights (a real copy: the original's
aliasing made this a no-op on CPU and in LT_pretrain), write ``checkpoint-<step>/mask.pt`` and
its sparsity report, reset AdamW and the schedule; stop after the 10th pruning event.
"""
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from utils.args import command_of, input_paths
from utils.config import barrier, set_seed, setup_runtime
from utils.errors import UserError
from utils.export import save_finetuned, save_weights
from utils.importance import event_table, kept_units, score_record
from utils.io import check_inputs_apart, claim, lock_folder, read_json, write_json
from utils.magnitude import global_magnitude_prune, imp_amount, rewind, snapshot_state
from utils.maskfile import save_mask
from utils.masks import apply_masks, unwrap
from utils.models import check_model_limits, load_model, load_tokenizer, load_weight_file
from utils.provenance import checkpoint_identity, describe_input, run_inputs, write_record
from utils.resume import check_resumable, check_same_inputs, kill_hook, load_state
from utils.rundir import check_output_dir, plain_args, prepare_output_dir, save_args
from utils.schedule import check_plan
from utils.sparsity import format_sparsity, load_mask, model_sparsity, sparsity_report, warn_emptied
from utils.structured import max_sparsity, structured_prune
from utils.train import Trainer


def _broadcast_masks(runtime, masks):
    """Under torchrun every rank must hold rank 0's mask (one mask on every rank)."""
    if runtime.world_size <= 1:
        return masks
    import torch.distributed as dist

    for key in masks:
        t = masks[key].to(runtime.device, torch.uint8)
        dist.broadcast(t, src=0)
        masks[key] = t.bool().cpu()
    return masks


def checkpoint_dir(trainer, step):
    """``<output_dir>/checkpoint-<step>``, recorded in the folder's manifest (rank 0) before it is written."""
    out, name = trainer.run_record.out, f"checkpoint-{step}"
    if trainer.runtime.is_main:
        claim(out, (), [name])
    return out / name


class IMPRunner:
    """State of one IMP run: the rewind target and the number of pruning events so far.

    ``prune_first`` (LT_pretrain) prunes 10 % before any training and writes that mask to
    ``checkpoint-0/mask.pt`` (the original never saved it).
    """

    def __init__(self, args, runtime, model, script):
        self.args, self.runtime, self.script = args, runtime, script
        self._environment = None
        self.model = model
        self.rounds = args.imp_rounds
        self.pruning_step = 0
        need_snapshot = args.rewind == "pretrained" or args.rewind_head
        self.snapshot = snapshot_state(model) if need_snapshot else None
        self.identity = checkpoint_identity(args.model_name_or_path, unwrap(model).config)

    def environment(self, trainer):
        """The run's environment, as its args.json recorded it when the run started (read once)."""
        if self._environment is None:
            self._environment = (read_json(trainer.run_record.out / "args.json") or {}).get("environment")
        return self._environment

    def mask_record(self, trainer, step, report):
        """The provenance record of the mask written at this pruning event."""
        args = self.args
        rec = {"kind": "imp", "structure": args.structure, "script": trainer.results.get("script"),
                "command": command_of(self.script.split()[0], args), "task": trainer.results.get("task"), "seed": args.seed,
                "pruning_event": self.pruning_step, "imp_rounds": self.rounds, "step": step,
                "prunable_set": args.prunable_set, "sparsity": report["prunable"]["sparsity"],
                "sparsity_paper_set": model_sparsity(self.model),
                "emptied": [e["key"] for e in report["emptied"]],
                "checkpoint": self.identity, "args": plain_args(args), "environment": self.environment(trainer)}
        if "structure" in report:
            rec["structured"] = report["structure"]
        return rec

    def prune(self, trainer, step):
        """One pruning event: prune, rewind, save the mask, reset the optimizer."""
        args = self.args
        scored = None
        if args.structure == "heads_ffn":  # after k events, k/rounds of the encoder (to a unit)
            table, scored = event_table(args, unwrap(self.model), trainer.experiment.train,
                                        trainer.experiment.collate, self.pruning_step + 1)
            masks = structured_prune(self.model, (self.pruning_step + 1) / self.rounds, impl=args.mask_impl,
                                     table=table)
        else:
            amount = imp_amount(self.pruning_step, self.rounds)
            masks = global_magnitude_prune(self.model, amount, impl=args.mask_impl,
                                           prunable_set=args.prunable_set)
        if self.runtime.world_size > 1:
            apply_masks(self.model, _broadcast_masks(self.runtime, masks), args.mask_impl)
        self.pruning_step += 1
        if self.snapshot is not None:
            rewind(self.model, self.snapshot, include_head=args.rewind_head,
                   include_backbone=args.rewind == "pretrained")
        path = checkpoint_dir(trainer, step) / "mask.pt"
        report = None
        if self.runtime.is_main:
            report = save_mask(path, masks, model=unwrap(self.model), fmt=args.mask_format,
                               prunable_set=args.prunable_set, structure=args.structure)
            record = write_record(path, self.mask_record(trainer, step, report), args.cache_dir or None)
            if scored is not None:  # why each head and neuron went: mask_scores.json beside the mask
                write_json(path.with_name("mask_scores.json"), score_record(*scored, kept=kept_units(masks, unwrap(self.model))))
            print(f"pruning event {self.pruning_step}/{self.rounds} at step {step}: "
                  f"zero_rate = {report['prunable']['sparsity']:.2f} -> {path}")
            print(format_sparsity(report))
            trainer.results.setdefault("masks", []).append(
                {"step": step, "pruning_event": self.pruning_step,
                 "sparsity": report["prunable"]["sparsity"], "path": str(path.relative_to(trainer.run_record.out)),
                 "sha256": record["sha256"]})
            trainer.run_record.write()
        trainer.reset_optimizer()
        return report

    def on_save(self, trainer, step):
        """Hook for :class:`utils.train.Trainer` at every ``--save_steps``."""
        if self.args.save_round_weights and self.runtime.is_main:
            save_weights(self.model, checkpoint_dir(trainer, step))  # round just trained
        self.prune(trainer, step)
        return "stop" if self.pruning_step >= self.rounds else None


class FinishedRun:
    """What a finished run's folder holds, for ``--resume`` on a run that had ended."""

    def __init__(self, args):
        self.results = read_json(Path(args.output_dir) / "results.json") or {}
        self.global_step = self.results.get("global_step")
        print(f"--resume: the run in {args.output_dir} is finished (complete.json); nothing to do")


def begin(args, runtime, script, model=None, provenance=None):
    """``--resume`` checks (before anything is written), then :func:`open_run`. Returns
    ``(finished, provenance)``: a :class:`FinishedRun` when the run had already ended (else None),
    and ``provenance`` completed with what the run reads (the checkpoint's weights, the data
    files, by sha256), for args.json; a resumed run must find the very files it started from
    (:func:`utils.resume.check_same_inputs`)."""
    resume = getattr(args, "resume", False)
    if resume and check_resumable(args) == "finished":
        return FinishedRun(args), provenance
    provenance = run_inputs(args, unwrap(model).config if model is not None else None, provenance)
    if resume:
        check_same_inputs(args, provenance)
    open_run(args, runtime, script, provenance)
    return None, provenance


def make_trainer(args, runtime, model, experiment, script, on_save, extra, prunable_set):
    """The run's :class:`Trainer`, with the tests' fault injection installed when asked for
    (:func:`utils.resume.kill_hook`)."""
    trainer = Trainer(args, runtime, model, experiment, script=script, on_save=on_save, results_extra=extra,
                      prunable_set=prunable_set)
    hook = kill_hook()
    if hook is not None:
        trainer.after_update.append(hook)
    return trainer


def restore(args, trainer):
    """With ``--resume``: load the latest state into ``trainer`` (its inputs were compared by :func:`begin`)."""
    if getattr(args, "resume", False):
        trainer.checkpoints.restore(load_state(args.output_dir))
        return True
    return False


def run_imp(args, runtime, model, experiment, script, prune_first=False, results_extra=None):
    """Run IMP end to end; returns the :class:`Trainer` (its ``results`` hold everything)."""
    structure_plan(args, model, check_imp_plan(args, runtime, len(experiment.train), prune_first))
    finished, _ = begin(args, runtime, script, model)
    if finished is not None:
        return finished
    runner = IMPRunner(args, runtime, model, script)
    extra = {"kind": "imp", "task": experiment.task, "rewind": args.rewind, "rewind_head": args.rewind_head,
             "round_schedule": args.round_schedule, "prunable_set": args.prunable_set,
             "structure": args.structure, **(results_extra or {})}
    trainer = make_trainer(args, runtime, model, experiment, script, runner.on_save, extra, args.prunable_set)
    trainer.checkpoints.hooks["imp"] = (lambda: {"pruning_step": runner.pruning_step},
                                        lambda st: setattr(runner, "pruning_step", st["pruning_step"]))
    if args.round_schedule == "per_round" and args.save_steps > 0:
        trainer.schedule_steps = args.save_steps
        trainer.reset_optimizer()
    if not restore(args, trainer) and prune_first:
        runner.prune(trainer, 0)
    trainer.train()
    # IMP's record is its in-loop evaluations (each before a pruning event); the model left at
    # the end is rewound and pruned, so it is not evaluated again.
    trainer.finish()
    return trainer


class Built(NamedTuple):
    """A fixed-mask script's model: the model, its initial sparsity (percent, the original's
    "model 0"), the prunable set its mask was made on, and the provenance of what was loaded."""
    model: torch.nn.Module
    sparsity: float
    prunable_set: str
    provenance: dict


def build_transfer_model(args, kind, **config_overrides):
    """Model for the *_trans scripts (docs/faithfulness.md §4.1): ``--dir`` pre|rand, then ``--weight_pertub``,
    then ``--mask_dir``. Prints ``model 0: <sparsity>`` as the original and returns a :class:`Built`."""
    init = args.dir or "pre"
    model = load_model(kind, args.model_name_or_path, init=init, seed=args.seed, **config_overrides)
    identity = checkpoint_identity(args.model_name_or_path, model.config, init=init)
    provenance = {"checkpoint": identity}
    cache = getattr(args, "cache_dir", "") or None
    if args.weight_pertub:
        n = load_weight_file(model, args.weight_pertub)
        provenance["weight_pertub"] = describe_input(args.weight_pertub, identity, "--weight_pertub", cache)
        print(f"--weight_pertub: {n} tensors loaded from {args.weight_pertub}")
    prunable_set = "paper"
    if args.mask_dir:
        masks = load_mask(args.mask_dir, model)
        provenance["mask"] = describe_input(args.mask_dir, identity, "mask", cache)
        record = provenance["mask"]["record"] or {}
        prunable_set = record.get("prunable_set", "paper")
        warn_emptied(sparsity_report(masks, prunable_set=prunable_set), args.mask_dir)
        apply_masks(model, masks, impl=args.mask_impl)
        if not provenance["mask"]["record"]:
            print(f"note: no provenance record found for mask {args.mask_dir} (no sidecar beside it, "
                  "and its sha256 is not in the record index); the run records its sha256 only",
                  file=sys.stderr)
    sparsity = model_sparsity(model)
    print(f"model 0: {sparsity}")
    return Built(model, sparsity, prunable_set, provenance)


def run_transfer(args, runtime, built, experiment, script, final_eval=True, results_extra=None):
    """Fine-tune ``built.model`` with its mask fixed; ``result.pt`` starts with the initial sparsity
    (docs/faithfulness.md §4.1). ``final_eval`` adds the one evaluation after training (glue_trans/squad_trans)."""
    model = built.model

    def save_checkpoint(trainer, step):
        if runtime.is_main:
            save_weights(model, checkpoint_dir(trainer, step))

    if args.do_train:
        check_plan(args, len(experiment.train), world_size=runtime.world_size)
    finished, provenance = begin(args, runtime, script, model, built.provenance)
    if finished is not None:
        return finished
    kind = "finetune" if args.do_train else "eval_only"  # an evaluation alone is never pooled with trained runs
    extra = {"kind": kind, "task": experiment.task, "init": args.dir or "pre", "mask": args.mask_dir, "weight_pertub": args.weight_pertub,
             "initial_sparsity": built.sparsity, **(results_extra or {})}
    trainer = make_trainer(args, runtime, model, experiment, script,
                           save_checkpoint if args.save_steps > 0 else None, extra, built.prunable_set)
    trainer.run_record.record.append(built.sparsity)
    restore(args, trainer)
    if args.do_train:
        trainer.train()
    if final_eval and runtime.is_main and experiment.evaluate is not None:
        trainer.results["final"] = trainer.evaluate(tag="final")
    if getattr(args, "save_model", False) and runtime.is_main:
        trainer.results["saved_model"] = str(save_finetuned(args, model, script, provenance))
    trainer.finish()
    return trainer


def start_run(args, script):
    """Common start of every training script, writing nothing: flag and output-folder checks (an
    output folder holding an input is refused; one another run is writing is refused at once,
    through its lock), the model's limits, device, seed. Returns ``(tokenizer, runtime)``. The
    first writes come from :func:`open_run`, once the model, the mask and the data have been
    checked too."""
    if args.model_type.lower() != "bert":
        raise UserError(f"--model_type {args.model_type}: only bert is supported by the pruning code")
    if hasattr(args, "imp_rounds") and not args.do_train:  # the IMP scripts' flags
        raise UserError(f"{script.split()[0]} runs IMP, which trains: pass --do_train (an evaluation alone is "
                        "glue_trans.py, squad_trans.py or pretrain_trans.py without --do_train)")
    check_output_dir(args)
    check_inputs_apart(args.output_dir, input_paths(args))
    check_model_limits(args)
    runtime = setup_runtime(args)
    if runtime.is_main and Path(args.output_dir).is_dir():
        lock_folder(args.output_dir, create=False)  # another run writing there: refused now, not later
    set_seed(args.seed)
    flag = "--tokenizer_name" if args.tokenizer_name else "--model_name_or_path"
    tokenizer = load_tokenizer(args.tokenizer_name or args.model_name_or_path,
                               do_lower_case=True if getattr(args, "do_lower_case", False) else None, flag=flag)
    return tokenizer, runtime


def open_run(args, runtime, script, provenance):
    """The run's first writes, after every input was checked: the output folder (a completion
    marker left there is removed) and ``args.json``. Under torchrun rank 0 writes, the others
    wait."""
    if runtime.is_main:
        prepare_output_dir(args)
        if not getattr(args, "resume", False):  # a resumed run keeps the args.json it started with
            save_args(args, runtime, script, provenance)
    barrier(runtime)


def structure_plan(args, model, events):
    """``--structure heads_ffn``: the pooler stays dense (``--prunable_set no_pooler``; an
    explicit ``--prunable_set paper`` conflicts), and the events beyond the one-head rule's
    largest sparsity are announced (the parser already made the prunable set ``no_pooler``)."""
    if args.structure != "heads_ffn":
        return
    top = max_sparsity(unwrap(model))
    capped = [k for k in range(1, events + 1) if k / args.imp_rounds > top + 1e-12]
    if capped:
        print(f"note: --structure heads_ffn: every layer keeps one head, so sparsity stops at "
              f"{100 * top:.1f} % of the encoder; pruning event(s) {capped[0]}-{capped[-1]} of "
              f"{args.imp_rounds} remove every remaining FFN neuron and all heads but one per layer")


def check_imp_plan(args, runtime, n_train, prune_first=False):
    """Refuse an IMP run that would never prune; say when it will stop before the last event."""
    if args.save_steps <= 0:
        raise UserError("--save_steps 0: IMP prunes every --save_steps updates, so this run would never prune")
    total = check_plan(args, n_train, args.save_steps if args.round_schedule == "per_round" else None,
                       runtime.world_size)
    events = min(args.imp_rounds, total // args.save_steps + (1 if prune_first else 0))
    if events == 0:
        raise UserError(f"--save_steps {args.save_steps} is longer than the whole run ({total} updates): IMP "
                        "would never prune; lower --save_steps or train longer (--num_train_epochs, --max_steps)")
    if events < args.imp_rounds:
        print(f"note: this run has {total} updates, so it stops after {events} of {args.imp_rounds} pruning "
              f"events, at {100.0 * events / args.imp_rounds:.0f} % sparsity")
    return events
