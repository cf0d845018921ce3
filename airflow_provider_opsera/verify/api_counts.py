"""The API's count of an interval now, to compare with what the archive holds for it (``--against-api``).

Counted through the hook's complete extraction (``iter_log_batches``, raw: no record is decoded or kept), the
same proof the landing operators rely on: a count the API cannot prove complete is a warning, never a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pendulum import DateTime

from airflow_provider_opsera.exceptions import OpseraIncompleteResultError
from airflow_provider_opsera.hooks.opsera import OpseraHook


class ApiCounter:
    """Counts records of one log type per interval, with one hook (one HTTP session) for the whole run."""

    def __init__(self, log_type: str, opsera_conn_id: str) -> None:
        self.log_type = log_type
        self.hook = OpseraHook(opsera_conn_id=opsera_conn_id)

    def count(
        self, start: DateTime, end: DateTime, filters: Mapping[str, Any] | None = None
    ) -> tuple[int | None, str | None]:
        """(records in ``[start, end)`` now, None), or (None, why the count could not be proven)."""
        try:
            return sum(
                len(b) for b in self.hook.iter_log_batches(self.log_type, start, end, filters, raw=True)
            ), None
        except OpseraIncompleteResultError as err:
            return None, f"the API's count could not be proven complete: {err}"

    def close(self) -> None:
        self.hook.close()
