"""Where an event trigger keeps its watermark across triggerer restarts: outside the triggerer.

Airflow re-creates an ``AssetWatcher``'s trigger from the same kwargs after every restart and does not
de-duplicate its events (each one becomes an asset event), so what was already emitted must live somewhere
the next triggerer reads: the asset's state store where Airflow has one (3.3+: injected into watcher
triggers as ``asset_state_store``), else an Airflow Variable named after the trigger's kwargs (every Airflow
3 triggerer serves Variables to its triggers). The watermark is small JSON: ``{"at": epoch seconds,
"emitted": {run_count: epoch seconds}}``; see ``OpseraPipelineEventTrigger``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

#: The key in the asset's state store.
STATE_KEY = "opsera_pipeline_events"


class WatermarkStore(Protocol):
    async def get(self) -> dict[str, Any] | None: ...

    async def set(self, value: dict[str, Any]) -> None: ...


class AssetStateWatermark:
    """The watched assets' state store (Airflow 3.3+); one trigger may serve several assets: all are written."""

    def __init__(self, accessors: list[Any]) -> None:
        self.accessors = accessors

    async def get(self) -> dict[str, Any] | None:
        found = [v for v in [await a.aget(STATE_KEY) for a in self.accessors] if isinstance(v, dict)]
        return max(found, key=lambda v: float(v.get("at") or 0)) if found else None

    async def set(self, value: dict[str, Any]) -> None:
        for accessor in self.accessors:
            await accessor.aset(STATE_KEY, value)


class VariableWatermark:
    """An Airflow Variable, ``opsera_pipeline_events_<digest of the trigger's kwargs>`` (every Airflow 3)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.key = f"{STATE_KEY}_{digest}"

    async def get(self) -> dict[str, Any] | None:
        from airflow.sdk import Variable

        text = await _off_loop(Variable.get, self.key, default=None)
        try:
            value = json.loads(text) if text else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def set(self, value: dict[str, Any]) -> None:
        from airflow.sdk import Variable

        await _off_loop(Variable.set, self.key, json.dumps(value))


async def _off_loop(func: Any, *args: Any, **kwargs: Any) -> Any:
    """A blocking call (the triggerer's supervisor round trip) without blocking the event loop."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(func)(*args, **kwargs)


def store_for(trigger: Any) -> WatermarkStore:
    """The trigger's store: its assets' state store when the triggerer injected one, else a Variable."""
    injected = getattr(trigger, "asset_state_store", None)
    if injected is not None:
        accessors = [
            *getattr(injected, "_by_name", {}).values(),
            *getattr(injected, "_by_uri", {}).values(),
        ]
        if accessors:
            return AssetStateWatermark(accessors)
    return VariableWatermark(trigger.serialize()[1])
