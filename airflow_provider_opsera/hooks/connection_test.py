"""The connection test behind the UI's Test button: one tiny call per log type, one attempt each with a short
timeout, and one sentence that says what the token can read or what failed at that URL.

Pure wording lives here (:func:`connection_test_result`); :meth:`OpseraHook.test_connection` makes the calls.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
import urllib3

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.retry import describe_failure, excerpt

#: Seconds one probe of the connection test may take.
TEST_TIMEOUT = 10.0
#: The connection test's one tiny call per log type (token activity takes no count: an empty, early day).
TEST_PROBES: dict[OpseraLogType, Mapping[str, str]] = {
    OpseraLogType.USER_ACTIVITY: {"range": "1m", "count": "1"},
    OpseraLogType.AUDIT: {
        "start_date": "2000-01-01",
        "end_date": "2000-01-01",
        "page": "1",
        "page_size": "1",
    },
    OpseraLogType.TOKEN_ACTIVITY: {"date": "2000-01-01"},
    OpseraLogType.PIPELINE_ACTIVITY: {"range": "1m", "count": "1"},
}


def connection_test_result(
    base_url: str, outcomes: Mapping[OpseraLogType, BaseException | None], seconds: float
) -> tuple[bool, str]:
    """The connection test's verdict and its one sentence, from each probe's outcome."""
    readable = [log_type.value for log_type, err in outcomes.items() if err is None]
    refused = {log_type: err for log_type, err in outcomes.items() if err is not None}
    if not refused:
        return True, (
            f"Connected to {base_url} in {seconds:.1f}s: the token can read all four log types "
            f"({', '.join(readable)})."
        )
    transport = [err for err in refused.values() if not isinstance(err, OpseraError)]
    if not readable and transport:
        return False, f"Cannot reach Opsera at {base_url}: {transport_failure(transport[0])}."
    if not readable and all(getattr(err, "status_code", None) == 401 for err in refused.values()):
        return False, (
            f"Opsera at {base_url} rejected the API token (HTTP 401): use a valid, unexpired personal access "
            f'token with the "API Access" or "Security Logs (Read Only)" scope.'
        )
    by_reason: dict[str, list[str]] = {}
    for log_type, err in refused.items():
        by_reason.setdefault(probe_failure(log_type, err), []).append(log_type.value)
    reasons = "; ".join(f"{', '.join(types)}: {reason}" for reason, types in by_reason.items())
    if not readable:
        return False, f"Opsera at {base_url} answered, but the token can read no log type ({reasons})."
    return True, (
        f"Connected to {base_url} in {seconds:.1f}s: the token can read {', '.join(readable)}, "
        f"but not {', '.join(t.value for t in refused)} ({reasons})."
    )


def probe_failure(log_type: OpseraLogType, err: BaseException) -> str:
    """Why one probe failed, in a clause: the status and what to do."""
    endpoint = endpoint_for(log_type)
    status = getattr(err, "status_code", None)
    if status == 401:
        return (
            f"HTTP 401, the token is not valid or has expired; use a personal access token with {endpoint.scopes} "
            f"scope, owned by one of: {endpoint.roles}"
        )
    if status == 403:
        return f"HTTP 403, it needs {endpoint.scopes} scope and an owner who is one of: {endpoint.roles}"
    if not isinstance(err, OpseraError):
        return transport_failure(err)
    if status is not None:
        return f"HTTP {status}"
    return f"an unexpected answer ({excerpt(str(err), 120)})"


def transport_failure(err: BaseException) -> str:
    """What went wrong below HTTP, in a few words: refused, DNS, TLS, timeout."""
    if isinstance(err, requests.exceptions.SSLError):
        reason = _innermost(err)
        detail = getattr(reason, "verify_message", None) or getattr(reason, "reason", None) or ""
        return f"TLS failed ({detail or 'the certificate could not be verified'}); set extra verify to a CA bundle"
    if isinstance(err, requests.Timeout):
        return "no answer within the test's timeout"
    reason = _innermost(err)
    if isinstance(reason, urllib3.exceptions.NameResolutionError) or "Name or service not known" in str(err):
        return "the host name does not resolve (DNS)"
    if isinstance(reason, ConnectionRefusedError) or "Connection refused" in str(err):
        return "connection refused (nothing listens at that address and port)"
    return excerpt(describe_failure(err), 160)


def _innermost(err: BaseException) -> BaseException:
    """The root cause of a requests/urllib3 error (their chain is ``MaxRetryError.reason`` and ``__context__``)."""
    seen: set[int] = set()
    current: BaseException = err
    while id(current) not in seen:
        seen.add(id(current))
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        if nxt is None:
            nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return current
