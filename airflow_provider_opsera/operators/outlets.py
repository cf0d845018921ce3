"""Which outlet asset a landing operator declares, and the asset event it emits.

The asset is the *dataset folder*, not one run's partition. ``output_path`` usually carries the run's date
(``s3://bucket/opsera/audit/dt={{ data_interval_start | ds }}/``); an asset per rendered folder would add a
new asset every day, and no downstream DAG could be scheduled on it. So:

- a static ``output_path``: the asset is that folder;
- a templated one: the asset is the folder above its last templated path segment
  (``s3://bucket/opsera/audit/``), declared when the DAG is parsed; each event's ``extra`` names the run's
  folder (``folder``, ``manifest``) and what landed there;
- if that folder is itself templated (a base from a Variable or param), it is only known at run time: the
  operator declares an ``AssetAlias`` (``opsera:<dag_id>.<task_id>``) and resolves it, when it runs, to the
  asset of the rendered folder.

Asset partition keys (Airflow 3.3+) are not set: an event carrying one no longer triggers ordinary,
non-partitioned asset-scheduled DAGs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import Asset, AssetAlias

from airflow_provider_opsera.operators import first_event

_TEMPLATE = re.compile(r"\{\{|\{%")


def is_templated(text: str) -> bool:
    return bool(_TEMPLATE.search(text))


def dataset_folder(output_path: str) -> str:
    """The folder (template) the outlet asset names: ``output_path`` up to its last templated segment."""
    matches = list(_TEMPLATE.finditer(output_path))
    if not matches:
        return output_path
    cut = output_path.rfind("/", 0, matches[-1].start())
    root = output_path[: cut + 1]
    stem = root.rstrip("/")
    # "", "/" or "s3://" alone names no folder: then the whole path is the only folder there is.
    if not stem or stem.endswith(":"):
        return output_path
    return root


def asset_uri(path: str) -> str:
    """An Asset URI for a storage path: no connection id, no trailing slash, ``file://`` for a bare path."""
    parts = urlsplit(path.strip())
    if not parts.scheme:
        return "file://" + ("/" + path.strip().lstrip("/")).rstrip("/")
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/") or path


def alias_name(dag_id: str | None, task_id: str) -> str:
    """The name of the alias a task declares when its asset is only known at run time."""
    return f"opsera:{dag_id}.{task_id}" if dag_id else f"opsera:{task_id}"


def declare_outlet(output_path: str, dag_id: str | None, task_id: str) -> Asset | AssetAlias:
    """What the operator declares at parse time for ``output_path`` (unrendered)."""
    folder = dataset_folder(output_path)
    if not is_templated(folder):
        return Asset(uri=asset_uri(folder))
    return AssetAlias(name=alias_name(dag_id, task_id))


def resolve(outlet: Asset | AssetAlias, rendered_root: str, rendered_folder: str) -> Asset:
    """The concrete asset this run's event is for: the declared asset, or the rendered root for an alias."""
    if isinstance(outlet, Asset):
        return outlet
    folder_uri = asset_uri(rendered_folder)
    root_uri = asset_uri(rendered_root)
    # A root that does not contain the folder (a template with branches) falls back to the folder itself.
    if not (folder_uri + "/").startswith(root_uri + "/"):
        root_uri = folder_uri
    return Asset(uri=root_uri)


def record(context: Any, outlet: Asset | AssetAlias, asset: Asset, extra: dict[str, Any], log: Any) -> None:
    """Record this run's asset event for ``asset`` through ``outlet`` (that asset itself, or an alias). Through
    an alias, the alias's first event for an asset waits its turn (:mod:`.first_event`)."""
    if isinstance(outlet, Asset):
        context["outlet_events"][outlet].extra = extra
    else:
        first_event.await_first_event_turn(first_event.TaskSdkLookup(context), outlet.name, asset.uri, log)
        context["outlet_events"][outlet].add(asset, extra=extra)
