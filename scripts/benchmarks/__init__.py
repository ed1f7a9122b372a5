"""One module per benchmark figure added after bench.py's first five (bench.py runs them)."""
