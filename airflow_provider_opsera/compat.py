"""The Airflow names this provider uses, imported where each Airflow 3 release keeps them.

``airflow.sdk`` is the home of the task SDK's public names, but it filled up over the 3.x releases:
``BaseHook`` arrived in 3.1's ``airflow.sdk``, ``AirflowFailException`` and friends in
``airflow.sdk.exceptions`` later still. Every module of the provider imports these names from here, so one
file knows the fallbacks and the rest of the code reads as if on the newest Airflow.
"""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )

try:
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]

try:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
except ImportError:  # Airflow 3.0 without the standard provider's triggers
    from airflow.triggers.temporal import DateTimeTrigger  # type: ignore[no-redef,import-not-found]

try:
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # an Airflow 3 without event-driven scheduling (3.0.0 has it; kept for forks and patches)
    from airflow.triggers.base import BaseTrigger as BaseEventTrigger  # type: ignore[assignment]


def copy_expert(cursor: Any, statement: str, file: Any) -> None:
    """psycopg2's ``cursor.copy_expert(statement, file)``, raising what ``file.read()`` raised as itself.

    PostgresHook hands out psycopg2 connections where SQLAlchemy is 1.x (Airflow 3.0 requires it): psycopg2
    turns any exception from the file's ``read()`` (a failed API call, a bad record, even ``SystemExit``)
    into ``QueryCanceled: COPY from stdin failed: error in .read() call``. The load's callers expect the
    error itself, as psycopg 3 raises it.
    """
    raised: list[BaseException] = []

    class _Reader:
        def read(self, size: int = -1) -> Any:
            try:
                return file.read(size)
            except BaseException as err:
                raised.append(err)
                raise

        def readline(self, size: int = -1) -> Any:
            try:
                return file.readline(size)
            except BaseException as err:
                raised.append(err)
                raise

    try:
        cursor.copy_expert(statement, _Reader())
    except Exception:
        if raised:
            raise raised[0] from None
        raise


def alias_asset_uris(alias_name: str) -> set[str]:
    """The URIs of the assets the ``AssetAlias`` named ``alias_name`` resolves to, asked from inside a task's
    process (a worker's, or ``dag.test()``'s) through the task SDK's channel to Airflow.

    Airflow 3.3 answers the question itself (``GetAssetsByAlias``); before it, the alias's events name the
    assets it resolves to. Whatever else Airflow answers (an ``ErrorResponse``) raises ``RuntimeError``.
    """
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS  # set in a task's process only

    try:
        from airflow.sdk.execution_time.comms import GetAssetsByAlias
    except ImportError:  # Airflow 3.0 to 3.2
        from airflow.sdk.execution_time.comms import GetAssetEventByAssetAlias

        events = SUPERVISOR_COMMS.send(GetAssetEventByAssetAlias(alias_name=alias_name))
        return {event.asset.uri for event in _field(events, "asset_events")}
    assets = SUPERVISOR_COMMS.send(GetAssetsByAlias(alias_name=alias_name))
    return {asset.uri for asset in _field(assets, "assets")}


def _field(response: Any, name: str) -> Any:
    """``response.<name>``, or a clear error for whatever else Airflow answered."""
    if not hasattr(response, name):
        raise RuntimeError(f"Airflow answered {response!r}")
    return getattr(response, name)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseEventTrigger",
    "BaseHook",
    "DateTimeTrigger",
    "alias_asset_uris",
    "conf",
    "copy_expert",
]
