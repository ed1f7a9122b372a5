"""What a task family hands the drivers: one interface for GLUE, SQuAD and masked-language modelling.

``glue_experiment``, ``squad_experiment`` and ``mlm_experiment`` each return an
:class:`Experiment`; the drivers (:mod:`utils.lottery`) and the :class:`utils.train.Trainer`
read nothing else of the task.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Experiment:
    """``task``: the task's name as results record it (``MRPC``, ``squad``, ``mlm``); ``train``:
    the training rows (None: evaluation only); ``collate``: batch builder; ``evaluate(model) ->
    metrics``; ``baseline``: the trivial score on the evaluated rows (``metric``, ``value``,
    ``what``), written beside every score; ``info``: more fields for ``results.json``."""
    task: str
    train: Any
    collate: Callable
    evaluate: Optional[Callable] = None
    baseline: Optional[dict] = None
    info: dict = field(default_factory=dict)
