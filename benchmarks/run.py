"""``python benchmarks/run.py`` (``make bench``): extraction throughput and memory against the floor, a
hand-written script and dlt. Prints the table and writes benchmarks/RESULTS.md. ``--smoke`` for a tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable as the benchmarks' root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import main

if __name__ == "__main__":
    sys.exit(main())
