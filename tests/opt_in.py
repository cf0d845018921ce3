"""Suites that run only when asked for (the browser and real-triggerer tests): their marker, a path under their
folder, ``-m <marker>``, or an environment variable selects them; otherwise they are deselected."""

from __future__ import annotations

import os
import pathlib

import pytest


def asked_for(config: pytest.Config, marker: str, env: str, folder: pathlib.Path) -> bool:
    if os.environ.get(env, "").lower() in ("1", "true", "yes"):
        return True
    if marker in (config.option.markexpr or ""):
        return True
    here = config.invocation_params.dir
    for arg in config.args:
        path = (here / arg.split("::")[0]).resolve()
        if path == folder or folder in path.parents:
            return True
    return False


def deselect_unless_asked(
    config: pytest.Config, items: list[pytest.Item], marker: str, env: str, folder: pathlib.Path
) -> None:
    """Drop the items carrying ``marker`` unless the run asked for them (see :func:`asked_for`)."""
    if asked_for(config, marker, env, folder):
        return
    deselected = [item for item in items if item.get_closest_marker(marker)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(marker)]
