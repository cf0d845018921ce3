"""The extraction benchmark suite: ``make bench`` (``python benchmarks/run.py``); see benchmarks/README.md."""
