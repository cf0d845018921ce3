"""``make demo`` runs end to end: the day lands exactly, the summary says so, and nothing is left running."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")
DEMO = pathlib.Path(__file__).resolve().parents[1] / "tools" / "demo.py"


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment holds ``text`` (Linux /proc)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(text.encode() in (entry / name).read_bytes() for name in ("cmdline", "environ")):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not pathlib.Path("/proc").is_dir(), reason="looks for leftover processes in Linux /proc")
def test_demo_lands_the_day_and_leaves_nothing_running(tmp_path):
    output = tmp_path / "demo-output"
    done = subprocess.run(
        [
            sys.executable,
            str(DEMO),
            "--day",
            "2024-05-09",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout
    for log_type in LOG_TYPES:
        line = next(line for line in summary.splitlines() if line.strip().startswith(log_type))
        assert line.rstrip().endswith("exact"), line
        assert (output / "opsera" / log_type / "dt=2024-05-09" / "manifest.json").is_file()
    pipeline = next(line for line in summary.splitlines() if line.strip().startswith("pipeline_activity"))
    assert int(pipeline.split()[1].replace(",", "")) > 1000  # the day is above the API's cap
    assert "Time taken:" in summary
    # The demo's children carry its output folder in their environment (the DAG's output base).
    assert processes_mentioning(str(output)) == []
