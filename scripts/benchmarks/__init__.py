"""The benchmark figures run by ``scripts/bench.py``: ``harness`` (shared helpers) and one module
per figure."""
