"""Named data sets: ``demo`` (a realistic day plus a live scripted run) and ``empty``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_opsera.testing.clock import MS_DAY, from_ms, to_ms

if TYPE_CHECKING:
    from airflow_provider_opsera.testing.simulator import OpseraSimulator

SCENARIOS = ("demo", "empty")
DEMO_PIPELINE = "611e7dca57f4eff66e9db084"
#: The seed's example run: source and build pass, then the anchore scan is analyzing for a minute, then passes.
DEMO_RUN_STEPS: list[dict[str, Any]] = [
    {"step_name": "source", "events": [(0, "running", "Source checkout started"), (2, "success", None)]},
    {"step_name": "build", "events": [(4, "running", "Jenkins build started"), (12, "success", None)]},
    {
        "step_name": "anchore",
        "step_id": "611508513ce36642d3180dc8",
        "step_index": 2,
        "events": [
            (15, "analyzing", "Anchore Scan Started Successfully"),
            (75, "success", "Anchore Scan Completed Successfully"),
        ],
    },
]


def load(sim: OpseraSimulator, name: str, day: object = None) -> None:
    """Fill ``sim`` with the named scenario; ``day`` (default: yesterday, UTC) is the demo's full day."""
    if name == "empty":
        return
    if name != "demo":
        raise ValueError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    if day is None:
        start_ms = to_ms(sim.now().date()) - MS_DAY
    else:
        start_ms = to_ms(pendulum.parse(day).date() if isinstance(day, str) else day)  # type: ignore[union-attr]
        start_ms -= start_ms % MS_DAY
    start, end = from_ms(start_ms), from_ms(start_ms + MS_DAY)
    sim.generate("user_activity", start, end, 800)
    sim.generate("audit", start, end, 5000)
    sim.generate("token_activity", start, end, 300)
    # above the cap of 1000: a client has to split the day by pipeline type (each type stays under it)
    sim.generate("pipeline_activity", start, end, 2500)
    sim.script_run(DEMO_PIPELINE, 174, DEMO_RUN_STEPS, user_id="60157c8c70628140f776e359")
