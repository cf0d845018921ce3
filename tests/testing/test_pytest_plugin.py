"""The pytest plugin loads in every pytest session where the provider is installed: it must stay light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {"airflow", "aiohttp", "requests", "msgspec", "pendulum"}

#: The plugin as pytest loads it: through its pytest11 entry point.
LOAD_THE_PLUGIN = """
from importlib.metadata import entry_points

(plugin,) = [e for e in entry_points(group="pytest11") if e.name == "opsera"]
assert plugin.value == "airflow_provider_opsera.testing.pytest_plugin", plugin.value
plugin.load()
"""


def heavy_imports(code: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    heavy = f"sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})"
    probe = f"import json, sys\n{code}\nprint(json.dumps({heavy}))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_loading_the_plugin_imports_nothing_heavy():
    assert heavy_imports(LOAD_THE_PLUGIN) == []
    assert heavy_imports("import airflow_provider_opsera.testing.pytest_plugin") == []


def test_the_probe_sees_what_the_simulator_imports():
    # The fixture's own imports, once a test asks for it: the check above would catch any of them.
    assert {"msgspec", "pendulum"} <= {
        m.split(".")[0] for m in heavy_imports("import airflow_provider_opsera.testing.simulator")
    }
