"""Shared library of the BERT-Tickets scripts: pruning and masks, models, data, metrics, training."""
