"""Injected faults: which request gets one (rules, consumed in order) and what a faulty body looks like.

Transport faults (429, 5xx, resets, slowness) hit any request. Data faults alter a 200 answer, so a rule for
one waits for a request that would succeed (and, for the per-record ones, for a page holding records).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from airflow_provider_opsera.catalogue import OpseraLogType

GATEWAY_KINDS = frozenset({"500", "502", "503", "504"})
TRANSPORT_KINDS = GATEWAY_KINDS | {"429", "reset_before", "reset_mid_body", "slow"}
DATA_KINDS = frozenset(
    {
        "malformed_json",
        "missing_data",
        "data_not_list",
        "record_missing_id",
        "record_missing_created_at",
        "duplicate_records",
        "stale_copies",
        "outside_window",
        "total_changes",
    }
)
FAULT_KINDS = TRANSPORT_KINDS | DATA_KINDS
#: Kinds that alter a page's records, so they wait for a page that has some.
NEEDS_RECORDS = frozenset(
    {"record_missing_id", "record_missing_created_at", "duplicate_records", "stale_copies"}
)
#: Options each kind takes (anything else is a typo, refused at ``inject``).
OPTIONS: dict[str, frozenset[str]] = dict.fromkeys(FAULT_KINDS, frozenset()) | {
    "429": frozenset({"retry_after"}),
    "slow": frozenset({"delay"}),
    "reset_mid_body": frozenset({"fraction"}),
    "duplicate_records": frozenset({"n"}),
    # older versions (updatedAt an hour earlier, a changed __v) of the page's first n records, after the
    # page's own records or, with before=True, ahead of them: a record updated while the pages were read
    "stale_copies": frozenset({"n", "before"}),
    "outside_window": frozenset({"n"}),
    "total_changes": frozenset({"delta"}),
    **dict.fromkeys(GATEWAY_KINDS, frozenset({"body"})),
}

_GATEWAY_TITLES = {
    "500": "500 Internal Server Error",
    "502": "502 Bad Gateway",
    "503": "503 Service Temporarily Unavailable",
    "504": "504 Gateway Time-out",
}


@dataclass(frozen=True)
class Fault:
    """A fault picked for one request."""

    kind: str
    opts: dict[str, Any]


@dataclass
class FaultRule:
    """Fail the next ``times`` matching requests (None: every one) with one of ``kinds``, maybe at random."""

    kinds: tuple[str, ...]
    times: int | None
    log_type: OpseraLogType | None
    probability: float | None
    opts: dict[str, Any]
    rng: random.Random


def check_rule(
    kinds: tuple[str, ...], times: int | None, probability: float | None, opts: dict[str, Any]
) -> None:
    """Refuse unknown kinds and options early, where the test author made the typo."""
    if not kinds:
        raise ValueError("at least one fault kind is needed")
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(sorted(FAULT_KINDS))}")
    allowed = frozenset().union(*(OPTIONS[k] for k in kinds))
    unknown = set(opts) - allowed
    if unknown:
        names = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"fault {'/'.join(kinds)} does not take {', '.join(sorted(unknown))}; options: {names}"
        )
    if times is not None and times < 1:
        raise ValueError("times must be a positive number of requests, or None for every request")
    if probability is not None and not 0 < probability <= 1:
        raise ValueError("probability must be in (0, 1]")


class FaultPlan:
    """The fault rules in force, consumed in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, log_type: OpseraLogType | None, eligible: Callable[[str], bool]) -> Fault | None:
        """The fault for this request, if a rule fires; a fired rule uses up one of its ``times``."""
        with self._lock:
            for rule in self._rules:
                if rule.log_type is not None and rule.log_type != log_type:
                    continue
                kinds = [k for k in rule.kinds if eligible(k)]
                if not kinds:
                    continue
                if rule.probability is not None and rule.rng.random() >= rule.probability:
                    continue
                kind = kinds[0] if len(kinds) == 1 else rule.rng.choice(kinds)
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                return Fault(kind, rule.opts)
        return None


def retry_after(value: object) -> str | None:
    """The ``Retry-After`` header: seconds, or ``"http-date"`` for an HTTP-date two seconds ahead.

    The date is on the real wall clock, not the simulator's: the client compares it with its own clock.
    """
    if value is None:
        return None
    if value == "http-date":
        return format_datetime(dt.datetime.fromtimestamp(int(time.time()) + 2, dt.timezone.utc), usegmt=True)
    return str(value)


def gateway_page(kind: str) -> str:
    """The HTML a gateway (nginx here) answers with when the service behind it fails."""
    title = _GATEWAY_TITLES[kind]
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def _without(records: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    out = list(records)
    middle = len(out) // 2
    out[middle] = {k: v for k, v in out[middle].items() if k != field}
    return out


def _stale(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it was before its last update: ``updatedAt`` an hour earlier, marked ``"stale": true``."""
    updated = record.get("updatedAt")
    if not isinstance(updated, str):
        return {k: v for k, v in record.items() if k != "updatedAt"} | {"stale": True}
    older = dt.datetime.fromisoformat(str(updated).replace("Z", "+00:00")) - dt.timedelta(hours=1)
    return {
        **record,
        "updatedAt": older.strftime("%Y-%m-%dT%H:%M:%S.") + f"{older.microsecond // 1000:03d}Z",
        "stale": True,
    }


def tamper(fault: Fault, body: dict[str, Any], outside: list[dict[str, Any]]) -> dict[str, Any]:
    """The altered JSON body of a 200 answer for a data fault (``malformed_json`` is cut after encoding)."""
    kind, count, data = fault.kind, body.get("count", 0), body.get("data", [])
    if kind == "missing_data":
        return {"count": count}
    if kind == "data_not_list":
        return {"count": 1, "data": {}}
    if kind == "record_missing_id":
        return {"count": count, "data": _without(data, "_id")}
    if kind == "record_missing_created_at":
        return {"count": count, "data": _without(data, "createdAt")}
    if kind == "duplicate_records":
        n = int(fault.opts.get("n", 3))
        return {"count": count, "data": data + [dict(r) for r in data[:n]]}
    if kind == "stale_copies":
        stale = [_stale(r) for r in data[: int(fault.opts.get("n", 3))]]
        return {"count": count, "data": stale + data if fault.opts.get("before") else data + stale}
    if kind == "outside_window":
        half = len(outside) // 2
        return {"count": count, "data": outside[:half] + data + outside[half:]}
    if kind == "total_changes":
        return {"count": max(0, count + int(fault.opts.get("delta", 5))), "data": data}
    return body
