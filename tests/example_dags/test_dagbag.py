"""Every example DAG imports cleanly: no import errors, no warnings (deprecated imports above all).

The DAG files are parsed in a fresh interpreter, so warnings raised while the provider's modules are first
imported count too (in this process they may have been imported, and warned, long before).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLE_DAGS = pathlib.Path(__file__).resolve().parents[2] / "example_dags"
FILES = sorted(p.name for p in EXAMPLE_DAGS.glob("*.py") if not p.name.startswith("_"))

_PARSE = r"""
import json, sys, warnings
warnings.simplefilter("always")
results = {}
with warnings.catch_warnings(record=True) as caught:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0 and 3.1
        from airflow.models.dagbag import DagBag
    start = len(caught)
    for path in sys.argv[1:]:
        mark = len(caught)
        bag = DagBag(dag_folder=path)
        results[path] = {
            "dags": sorted(bag.dag_ids),
            "errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
            "dagbag_warnings": [w for ws in bag.captured_warnings.values() for w in ws],
            "warnings": [
                f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught[mark:]
            ],
        }
    # Imports the first DAG file pulled in (the provider's modules) warn before its own mark: keep those too.
    results["_first_imports"] = [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught[start:]
    ]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def parsed() -> dict:
    paths = [str(EXAMPLE_DAGS / name) for name in FILES]
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(warning: str) -> bool:
    """A warning raised from an example DAG or the provider, or about a deprecated import they make."""
    return (
        str(EXAMPLE_DAGS) in warning
        or "airflow_provider_opsera" in warning
        or ("Deprecat" in warning and "import" in warning.lower())
    )


def test_there_are_example_dags():
    assert "opsera_logs_to_s3.py" in FILES


@pytest.mark.parametrize("name", FILES)
def test_example_dag_imports_without_errors_or_warnings(parsed, name):
    result = parsed[str(EXAMPLE_DAGS / name)]
    assert result["errors"] == {}
    assert result["dags"], f"{name} defines no DAG"
    assert result["dagbag_warnings"] == []
    assert [w for w in result["warnings"] if ours(w)] == []


def test_importing_the_provider_raises_no_deprecation_warnings(parsed):
    assert [w for w in parsed["_first_imports"] if ours(w) and "Deprecat" in w] == []
