"""The one training loop of the project, shared by all six training scripts.

The original's legacy loop (docs/faithfulness.md §2): AdamW with two weight-decay groups
(no decay on biases and LayerNorm weights), a linear schedule with warm-up over ``t_total``,
gradient clipping to ``--max_grad_norm``, gradient accumulation, ``--max_steps``, evaluation
every ``--logging_steps`` when ``--evaluate_during_training``, TensorBoard scalars and a tqdm
bar. Hooks let a driver act: ``on_save(trainer, step)`` at every ``--save_steps`` (the IMP
runner prunes, rewinds and resets the optimizer there) and ``after_update`` (each called with
the trainer after every update; the tests' fault injection is one).

What the loop does not do lives beside it: the output folder and ``args.json`` in
:mod:`utils.rundir`, results and the completion marker in :mod:`utils.record`, the resumable
state in :mod:`utils.checkpoint`, the planned number of updates in :mod:`utils.schedule`.

Finished means trained and finite: the loop stops a run whose loss (checked at every batch) or
weights (checked before every pruning event, saved state and at the end) are not finite.

Deliberate differences from the original, documented in docs/faithfulness.md §2.2-§2.3: the run
stops after exactly ``--max_steps`` updates (the original made one more), ``--max_steps`` always
sets ``t_total``, step counting starts at 0 in every script (the SQuAD scripts started at 1), and
TensorBoard files go to ``<output_dir>/runs`` instead of ``./runs``.
"""
import json
import math

import torch
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from utils.checkpoint import Checkpointer
from utils.config import autocast, barrier
from utils.masks import GradientMasker, unwrap
from utils.record import RunRecord, on_any_rank, plain, weights_finite
from utils.resume import set_rng_states
from utils.sparsity import model_sparsity

NO_DECAY = ("bias", "LayerNorm.weight")


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_loader(config, runtime, experiment):
    """(loader, generator): shuffled batches of the training rows, seeded by ``--seed``; under
    torchrun a DistributedSampler shards them (and there is no generator)."""
    gen = None
    if runtime.world_size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(experiment.train, seed=config.seed)
    else:
        gen = torch.Generator().manual_seed(config.seed)
        sampler = RandomSampler(experiment.train, generator=gen)
    loader = DataLoader(experiment.train, sampler=sampler, batch_size=config.per_gpu_train_batch_size,
                        collate_fn=experiment.collate, num_workers=getattr(config, "num_workers", 0))
    return loader, gen


def make_optimizer(model, config, runtime, schedule_steps):
    """(AdamW, linear schedule with warm-up over ``schedule_steps``, GradScaler or None): two
    weight-decay groups, none on biases and LayerNorm weights; fused AdamW on CUDA."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)],
               "weight_decay": config.weight_decay},
              {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, eps=config.adam_epsilon, betas=(0.9, 0.999),
                                  fused=(runtime.device.type == "cuda") or None)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=config.warmup_steps,
                                                num_training_steps=schedule_steps)
    scaler = torch.amp.GradScaler("cuda") if getattr(config, "fp16", False) else None
    return optimizer, scheduler, scaler


class Trainer:
    """Fine-tunes ``model`` on ``experiment.train``, evaluating with ``experiment.evaluate``.

    ``config`` is the frozen flags, ``runtime`` the device and ranks; ``prunable_set`` is the set
    whose sparsity evaluations report. ``run_record`` (:class:`utils.record.RunRecord`) collects
    every evaluation; ``checkpoints`` (:class:`utils.checkpoint.Checkpointer`) saves and restores
    the state.
    """

    def __init__(self, config, runtime, model, experiment, script="", on_save=None, results_extra=None,
                 prunable_set="paper"):
        self.config, self.runtime, self.experiment = config, runtime, experiment
        if runtime.world_size > 1:  # torchrun: one process per device, gradients all-reduced
            from torch.nn.parallel import DistributedDataParallel

            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.model, self.on_save, self.after_update, self.prunable_set = model, on_save, [], prunable_set
        self.global_step, self.writer = 0, None  # the writer: TensorBoard (rank 0, while training)
        self.run_record = RunRecord(config.output_dir, runtime, script, results_extra, experiment.baseline,
                                    step=lambda: self.global_step)
        # the loader (None: evaluation only) and its sampler's generator (one process)
        has_rows = experiment.train is not None
        self.loader, self.gen = train_loader(config, runtime, experiment) if has_rows else (None, None)
        # position in the run, and what resuming from a saved state still has to replay
        self.epoch, self.batches_done, self.epoch_gen_state = 0, 0, None
        self.skip, self.pending_rng, self.resume_gen = 0, None, None
        self.total_loss = self.logged_loss = 0.0
        self.checkpoints, self.bar = Checkpointer(self), tqdm(disable=True)
        steps_per_epoch = max(1, len(self.loader or ()) // config.gradient_accumulation_steps)
        if config.max_steps > 0:
            self.t_total, self.num_epochs = config.max_steps, math.ceil(config.max_steps / steps_per_epoch)
        else:
            self.t_total = int(steps_per_epoch * config.num_train_epochs)
            self.num_epochs = math.ceil(config.num_train_epochs)
        self.schedule_steps = self.t_total  # IMP's --round_schedule per_round shortens it
        self.optimizer = self.scheduler = self.scaler = self.grad_masker = None
        self.reset_optimizer()

    @property
    def results(self):
        return self.run_record.results

    def reset_optimizer(self):
        """Fresh AdamW (zero moments) and a fresh linear schedule over ``schedule_steps``."""
        self.optimizer, self.scheduler, self.scaler = make_optimizer(self.model, self.config, self.runtime,
                                                                     self.schedule_steps)
        if self.grad_masker is not None:
            self.grad_masker.remove()
        # masks may have changed: rebuild (in-backward hooks in one process, a pass under DDP)
        self.grad_masker = GradientMasker(self.model, eager=self.runtime.world_size == 1)

    def evaluate(self, tag=None):
        """Run the experiment's evaluation; print and record the result with step and sparsity."""
        sparsity = model_sparsity(self.model, self.prunable_set)
        print(f"step {self.global_step}: sparsity of the prunable set {sparsity:.2f}%")
        evaluate = self.experiment.evaluate
        metrics = plain(evaluate(unwrap(self.model))) if evaluate else {}
        entry = {"step": self.global_step, "sparsity": sparsity, **metrics, **({"tag": tag} if tag else {})}
        print(json.dumps(entry))
        for k, v in metrics.items() if self.writer is not None else ():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"eval_{k}", v, self.global_step)
        self.run_record.add(entry, metrics)
        return entry

    def forward_backward(self, batch):
        """Forward and backward of one batch (scaled for accumulation); returns the loss."""
        with autocast(self.runtime):
            loss = self.model(**to_device(batch, self.runtime.device)).loss
        loss = loss / self.config.gradient_accumulation_steps
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.item()

    def optimizer_step(self):
        """Mask gradients, clip, step AdamW and the schedule, clear gradients."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self.grad_masker()  # under DDP: pruned weights get zero gradient, before clipping
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
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
        After a restored state it continues from the saved position."""
        if self.runtime.is_main:
            self.writer = SummaryWriter(log_dir=str(self.run_record.out / "runs"))
        self.model.zero_grad(set_to_none=True)
        self.bar = tqdm(total=self.t_total, initial=self.global_step, desc="train", dynamic_ncols=True,
                        disable=not self.runtime.is_main or None)
        for epoch in range(self.epoch, self.num_epochs):
            if self._epoch(epoch):
                break
            self.batches_done = 0
        self.bar.close()
        self.checkpoints.wait()
        self.stop_if_not_finite()
        if self.writer is not None:
            self.writer.flush()
        self.run_record.write()
        return self.global_step, self.total_loss / max(self.global_step, 1)

    def _epoch(self, epoch):
        """One epoch (the rest of it, when resuming); True when the run stops in it."""
        self.epoch = epoch
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(epoch)
        if self.resume_gen is not None:  # the permutation of the epoch the state was saved in
            self.gen.set_state(self.resume_gen)
            self.resume_gen = None
        self.epoch_gen_state = self.gen.get_state() if self.gen is not None else None
        self._replay_done()
        self.model.train()
        for step, batch in enumerate(self.loader):
            if self.skip:  # resuming: batches the saved run had already trained on
                self.skip -= 1
                self._replay_done()  # before the next batch is drawn
                continue
            self.batches_done = step + 1
            loss = self.forward_backward(batch)
            self.total_loss += loss
            self.stop_if_not_finite(loss)
            if (step + 1) % self.config.gradient_accumulation_steps == 0 and self._update():
                return True
        return False

    def _replay_done(self):
        if self.skip == 0 and self.pending_rng is not None:
            set_rng_states(self.pending_rng)
            self.pending_rng = None

    def _update(self):
        """One optimizer update and what follows it: logging, ``on_save``, the state, the
        ``after_update`` hooks. True when the run stops here."""
        config = self.config
        self.optimizer_step()
        self.bar.update(1)
        if config.logging_steps > 0 and self.global_step % config.logging_steps == 0:
            self._log_and_evaluate(self.total_loss - self.logged_loss)
            self.logged_loss = self.total_loss
        pruned = stop = False
        if config.save_steps > 0 and self.global_step % config.save_steps == 0 and self.on_save:
            self.stop_if_not_finite()  # never prune or save non-finite weights
            stop, pruned = self.on_save(self, self.global_step) == "stop", True
            self.model.train()
        if stop or (config.max_steps > 0 and self.global_step >= config.max_steps):
            return True
        if self.checkpoints.due(pruned):
            self.stop_if_not_finite()
            self.checkpoints.save()
        for hook in self.after_update:
            hook(self)
        return False

    def stop_if_not_finite(self, loss=None):
        """With ``loss``: stop the run when the loss of this batch is NaN/inf on any process; without:
        when a weight is (the same on every process). Stopping is :meth:`fail`."""
        if loss is not None:
            if on_any_rank(not math.isfinite(loss), self.runtime):
                self.fail(f"the training loss became {loss if not math.isfinite(loss) else 'non-finite'} at "
                          f"update {self.global_step + 1}")
        elif not weights_finite(self.model):
            self.fail(f"a weight became NaN or infinite at update {self.global_step}")

    def fail(self, reason):
        """Stop the run as failed (:meth:`utils.record.RunRecord.fail`, exit code 3)."""
        self.bar.close()
        self.checkpoints.wait()
        self.finish(failed=reason)

    def _log_and_evaluate(self, loss_since_last_log):
        """Every ``--logging_steps``: rank 0 evaluates (``--evaluate_during_training``) on the
        unwrapped model and logs lr and loss, while the other ranks wait at a barrier (the
        original evaluated only without distributed training)."""
        config = self.config
        if self.runtime.is_main:
            if config.evaluate_during_training:
                self.evaluate()
                self.model.train()
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.global_step)
            self.writer.add_scalar("loss", loss_since_last_log / config.logging_steps, self.global_step)
        if config.evaluate_during_training:
            barrier(self.runtime)

    def finish(self, failed=None):
        """End of the run: final results, then ``complete.json`` (:meth:`utils.record.RunRecord.finish`),
        or with ``failed`` (the reason) ``failed.json`` (:meth:`utils.record.RunRecord.fail`)."""
        if self.writer is not None:
            self.writer.close()
        if failed:
            self.run_record.fail(failed)  # raises RunFailed
        self.run_record.finish()
