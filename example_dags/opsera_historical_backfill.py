"""Backfill a long range of Opsera logs into the daily archive: one mapped task instance per log type and day.

Triggered by hand (no schedule) with ``start`` and ``end``, the first and the last day to land (both included,
UTC; only days that have ended), and ``log_types`` (default all four). A small ``plan_days`` task checks them
and lists one entry per log type and day; ``land_day`` is ``OpseraLogsOperator`` mapped over that list
(``expand_kwargs``: concrete ``log_type``, ``start`` and ``end``, as mapped arguments are not templated), each
map index landing its day into ``<output_base>/opsera/<log_type>/dt=<YYYY-MM-DD>/``: the folders and manifests
(``start``/``end`` of the day) of ``opsera_logs_to_s3``. A day's folder is replaced whole by whichever run lands
it last, so the backfill, the daily DAG and reruns of either can cover the same days in any order and leave
each record once; each day's asset event reaches the log type's folder asset, as the daily DAG's do.

Why a day per task: the archive has a folder per day, so a day is the coarsest interval a task can land, and
it is what the API needs anyway: per day the provider sends one request for a v1 day under the cap of 1000
records (user and pipeline activity), ``ceil(records / page_size)`` pages for audit (v2), and one request for
token activity, which only takes ``date``. Only a v1 day over the cap costs more (one request per ``type``
value, plus one): the API cannot return it in fewer. A failed day is retried, and can be cleared, alone.

Settings, each a DAG param (per run) that falls back to an Airflow Variable, then to a default, as in
``opsera_logs_to_s3``: ``output_base`` / ``opsera_output_base`` (default ``file:///tmp/opsera-logs``, which is
one archive only where all workers share a filesystem: use an object store on Celery or Kubernetes),
``output_conn_id`` / ``opsera_output_conn_id`` and ``opsera_conn_id`` / ``opsera_conn_id``.

How much runs at once, and why:

- ``pool``: the Variable ``opsera_pool`` (default ``default_pool``), read when the file is parsed because the
  scheduler needs a task's pool before it runs (so it cannot be a param). Put every Opsera task (this DAG's
  and the daily ones') in that pool: its slots times the connection's ``concurrency`` extra (requests in
  flight per task, default 4) bound the requests the whole cluster has open to Opsera. The default is
  ``default_pool`` because a task whose pool does not exist stays queued forever.
- ``max_active_tis_per_dag`` and ``max_active_tis_per_dagrun`` = 8: days landing at once, all log types
  together (32 requests in flight at the default concurrency), leaving pool slots to the daily runs. The plan
  lists a day's log types side by side, so every type moves forward at the same pace.
- at most ``[core] max_map_length`` (default 1024) days x log types per run, Airflow's own limit on a mapped
  task: a year of all four log types (1,460) needs two runs, or a higher limit.
- ``max_active_runs=1``: a second backfill waits for the first instead of racing it over the same folders.
- ``retries=3`` with a constant ``retry_delay`` of 30 seconds: the hook already retries throttling, 5xx
  answers, connection errors and timeouts itself, with backoff and ``Retry-After``; a task-level retry is for
  a lost worker or an outage that outlasts the hook's retries, and every minute of delay is paid again for each
  failed day. (``retry_exponential_backoff`` is left out: its meaning changed within Airflow 3.)
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

from airflow_provider_opsera import OpseraLogType
from airflow_provider_opsera.compat import conf
from airflow_provider_opsera.operators.logs import OpseraLogsOperator

LOG_TYPES = tuple(t.value for t in OpseraLogType)
#: Days landing at once in one run, all log types together (see the docstring).
MAX_ACTIVE = 8

# Each setting: the run's param if set, else the Airflow Variable, else a default, read when the task runs.
OUTPUT_BASE = (
    "{{ (params.output_base or var.value.get('opsera_output_base', 'file:///tmp/opsera-logs')).rstrip('/') }}"
)
OUTPUT_CONN_ID = "{{ params.output_conn_id or var.value.get('opsera_output_conn_id', '') }}"
OPSERA_CONN_ID = "{{ params.opsera_conn_id or var.value.get('opsera_conn_id', 'opsera_default') }}"


def _pool() -> str:
    """The Variable ``opsera_pool``, else ``default_pool``: a task's pool is fixed when the DAG is parsed."""
    try:
        from airflow.sdk import Variable

        return str(Variable.get("opsera_pool", default="default_pool"))
    except Exception:  # no Variable store while parsing (e.g. a bare DagBag on Airflow 3.0)
        return "default_pool"


def backfill_days(
    start: str, end: str, log_types: list[str], now: pendulum.DateTime, max_map_length: int
) -> list[dict]:
    """One map index per log type and day from ``start`` to ``end`` (both included): its operator arguments,
    day by day (the log types of a day side by side, so every type moves forward at the same pace)."""
    unknown = sorted(set(log_types) - set(LOG_TYPES))
    if unknown or not log_types:
        raise ValueError(f"log_types {unknown or log_types}: choose from {', '.join(LOG_TYPES)}.")
    first, last = (pendulum.parse(str(d), tz="UTC").start_of("day") for d in (start, end))  # type: ignore[union-attr]
    if last < first:
        raise ValueError(f"end ({last.to_date_string()}) is before start ({first.to_date_string()}).")
    if last.add(days=1) > now:
        raise ValueError(
            f"end ({last.to_date_string()}) has not ended yet (now {now.isoformat()}): backfill only whole days "
            "up to yesterday; the daily DAG lands today's."
        )
    days, types = (last - first).in_days() + 1, [t for t in LOG_TYPES if t in log_types]
    if days * len(types) > max_map_length:
        # Airflow refuses a longer list to map over, with a message that does not say what to do.
        raise ValueError(
            f"{days} days x {len(types)} log types is {days * len(types)} mapped tasks, more than "
            f"[core] max_map_length ({max_map_length}): backfill at most {max_map_length // len(types)} "
            "days per run, or raise max_map_length (AIRFLOW__CORE__MAX_MAP_LENGTH, on the API server too)."
        )
    return [
        {
            "log_type": log_type,
            "start": day.isoformat(),
            "end": day.add(days=1).isoformat(),
        }
        for day in (first.add(days=i) for i in range(days))
        for log_type in types
    ]


with DAG(
    dag_id="opsera_historical_backfill",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "start": Param(type="string", format="date", description="first day to land, e.g. 2024-01-01"),
        "end": Param(
            type="string", format="date", description="last day to land (included), e.g. 2024-12-31"
        ),
        "log_types": Param(
            list(LOG_TYPES),
            type="array",
            items={"type": "string", "enum": list(LOG_TYPES)},
            description="default: all four",
        ),
        "output_base": Param(None, type=["null", "string"], description="e.g. s3://my-bucket"),
        "output_conn_id": Param(None, type=["null", "string"], description="e.g. aws_default"),
        "opsera_conn_id": Param(None, type=["null", "string"], description="default: opsera_default"),
    },
    tags=["opsera", "backfill"],
    doc_md=__doc__,
):

    @task
    def plan_days(params: Any = None) -> list[dict]:
        """The days to land: concrete values, as mapped arguments are not templated."""
        assert params is not None
        limit = conf.getint("core", "max_map_length", fallback=1024)
        return backfill_days(
            params["start"], params["end"], list(params["log_types"]), pendulum.now("UTC"), limit
        )

    OpseraLogsOperator.partial(
        task_id="land_day",
        # Rendered for each map index from its own (mapped, concrete) log type and day.
        output_path=f"{OUTPUT_BASE}/opsera/{{{{ task.log_type.value }}}}/dt={{{{ task.start[:10] }}}}/",
        # What the operator declares for such a path, but only once it runs: declared here too, so the alias
        # exists when the DAG is parsed and each day's event reaches the folder's asset, as the daily DAG's do.
        outlets=[AssetAlias(name="opsera:opsera_historical_backfill.land_day")],
        output_conn_id=OUTPUT_CONN_ID,
        opsera_conn_id=OPSERA_CONN_ID,
        pool=_pool(),
        max_active_tis_per_dag=MAX_ACTIVE,
        max_active_tis_per_dagrun=MAX_ACTIVE,
        map_index_template="{{ task.log_type.value }} {{ task.start[:10] }}",
    ).expand_kwargs(plan_days())
