"""Opsera logs into PostgreSQL: :class:`OpseraLogsToPostgresOperator`.

- :mod:`.operator`: the operator (interval, filters, OpenLineage, outlets) on top of the hook;
- :mod:`.table`: the table layout a log type gets (typed columns, ``raw``, ``loaded_at``);
- :mod:`.rows`: records to COPY rows (pure, property-tested);
- :mod:`.sql`: the statements (pure);
- :mod:`.load`: one load in one transaction (first load: COPY into a new table; later: stage and upsert).
"""

from __future__ import annotations

from airflow_provider_opsera.transfers.postgres.operator import OpseraLogsToPostgresOperator

__all__ = ["OpseraLogsToPostgresOperator"]
