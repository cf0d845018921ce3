"""The README's simulator section runs as copied: its DAG file goes to a temporary DAGs folder, its script runs
against a fresh Python process, its pytest example under pytest. A snippet that breaks fails the suite."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Simulator: test DAGs without an Opsera account"
PLUGIN = "airflow_provider_opsera.testing.pytest_plugin"


def section_snippets() -> list[str]:
    """The ```python blocks of the simulator section, in order."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    body = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", body, flags=re.MULTILINE | re.DOTALL)


def sorted_snippets() -> dict[str, list[str]]:
    """The blocks by kind: DAG files (``# dags/<file>.py`` first line), pytest tests, and scripts."""
    kinds: dict[str, list[str]] = {"dag": [], "pytest": [], "script": []}
    for code in section_snippets():
        if re.match(r"# dags/\w+\.py\n", code):
            kinds["dag"].append(code)
        elif "@pytest.mark.opsera_simulator" in code:
            kinds["pytest"].append(code)
        else:
            kinds["script"].append(code)
    return kinds


def test_the_section_has_the_snippets_this_test_runs():
    kinds = sorted_snippets()
    assert [len(kinds[k]) for k in ("dag", "script", "pytest")] == [1, 1, 1], kinds
    for code in section_snippets():
        compile(code, "README.md", "exec")  # each one is whole, valid Python


def test_every_timetable_import_in_the_readme_is_the_example_dags_one():
    """Every Python block that imports CronDataIntervalTimetable does it the example DAGs' way."""
    guarded = (
        "try:\n    from airflow.sdk import CronDataIntervalTimetable\nexcept ImportError:  # older Airflow 3 "
        "releases\n    from airflow.timetables.interval import CronDataIntervalTimetable\n"
    )
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    importing = [b for b in blocks if re.search(r"import .*CronDataIntervalTimetable", b)]
    assert len(importing) >= 3  # the object-storage, Postgres and simulator examples
    for block in importing:
        assert guarded in block, block
        assert len(re.findall(r"import .*CronDataIntervalTimetable", block)) == 2, block


def test_the_readme_says_dag_test_needs_the_dags_folder():
    text = README.read_text()
    body = text[text.index(SECTION) :]
    assert "on Airflow 3.3, the DAG's file\nin the DAGs folder" in body


@pytest.fixture
def readme_env(airflow_db, tmp_path) -> tuple[dict[str, str], pathlib.Path]:
    """A DAGs folder holding the README's DAG file, and the environment the snippets run in."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for code in sorted_snippets()["dag"]:
        name = re.match(r"# dags/(\w+\.py)\n", code).group(1)  # type: ignore[union-attr]
        (dags / name).write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.pop("PYTHONPATH", None)
    return env, tmp_path


def test_the_script_runs_as_copied(readme_env):
    env, tmp_path = readme_env
    (script,) = sorted_snippets()["script"]
    path = tmp_path / "readme_script.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_the_pytest_example_runs_as_copied(readme_env):
    env, tmp_path = readme_env
    (code,) = sorted_snippets()["pytest"]
    (tmp_path / "test_readme_fixture.py").write_text(code)
    registered = any(e.value == PLUGIN for e in importlib.metadata.entry_points(group="pytest11"))
    plugin_args = [] if registered else ["-p", PLUGIN]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *plugin_args,
            "test_readme_fixture.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert "1 passed" in result.stdout, result.stdout[-4000:] + result.stderr[-4000:]
