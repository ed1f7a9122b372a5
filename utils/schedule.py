"""How many updates a run makes, checked before anything is written (:func:`check_plan`)."""
import math
import sys

from utils.errors import UserError


def batches_per_epoch(config, n_examples, world_size=1):
    """Batches of one process in one epoch of ``n_examples`` training rows."""
    per_rank = math.ceil(n_examples / max(world_size, 1))
    return math.ceil(per_rank / config.per_gpu_train_batch_size)


def planned_updates(config, n_examples, world_size=1):
    """Optimizer updates a run will make on ``n_examples`` training rows (what the Trainer runs)."""
    steps_per_epoch = max(1, batches_per_epoch(config, n_examples, world_size) // config.gradient_accumulation_steps)
    if config.max_steps > 0:
        return config.max_steps
    return int(steps_per_epoch * config.num_train_epochs)


def check_plan(config, n_examples, schedule_steps=None, world_size=1):
    """Refuse, before anything is written, a run that would make no optimizer update: no training
    rows, ``--gradient_accumulation_steps`` above the batches of an epoch (the accumulation never
    completes), or a schedule of 0 updates (``--num_train_epochs 0.01``). Returns the planned updates.

    A warm-up longer than the schedule (``schedule_steps``, default the whole run) is allowed, as
    in the original, but warned about here, at the start: the learning rate then rises for the
    whole schedule and never reaches ``--learning_rate``."""
    batches, accumulation = batches_per_epoch(config, n_examples, world_size), config.gradient_accumulation_steps
    if n_examples == 0:
        raise UserError("the training data has no rows: there is nothing to train on")
    if batches < accumulation:
        raise UserError(f"--gradient_accumulation_steps {accumulation} is more than the {batches} batches of an "
                        f"epoch ({n_examples} rows, --per_gpu_train_batch_size {config.per_gpu_train_batch_size}): "
                        "no optimizer update would ever be made")
    total = planned_updates(config, n_examples, world_size)
    if total < 1:
        raise UserError(f"--num_train_epochs {config.num_train_epochs:g} gives 0 optimizer updates "
                        f"({batches // accumulation} per epoch): train longer, or set --max_steps")
    length = schedule_steps or total
    if config.warmup_steps > length:
        print(f"warning: --warmup_steps {config.warmup_steps} is longer than the schedule's {length} updates: the "
              f"learning rate rises throughout and peaks at {100.0 * length / config.warmup_steps:.0f} % of "
              "--learning_rate", file=sys.stderr)
    return total
