"""The Opsera hook: connection, token, retries and paging, in one place."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_when_event_set

from airflow_provider_opsera.catalogue import (
    Endpoint,
    OpseraLogType,
    endpoint_for,
    validate_filters,
    validate_params,
)
from airflow_provider_opsera.compat import BaseHook
from airflow_provider_opsera.connection import DEFAULT_CONN_ID, OpseraConnectionSettings
from airflow_provider_opsera.exceptions import (
    OpseraAPIError,
    OpseraAuthError,
    OpseraConnectionError,
    OpseraError,
)
from airflow_provider_opsera.extraction import DECODE_AHEAD, Call, ExtractionStats, Runner, proof_for
from airflow_provider_opsera.planning import initial_pieces
from airflow_provider_opsera.responses import Page, Record, decode_page
from airflow_provider_opsera.retry import (
    RetryableAPIError,
    RetryWait,
    describe_failure,
    excerpt,
    final_error,
    is_retryable,
    is_retryable_status,
    parse_retry_after,
)
from airflow_provider_opsera.timeutils import parse_interval

_insecure_warned = False
_insecure_lock = threading.Lock()


def _warn_insecure_once(log: Any, conn_id: str) -> None:
    global _insecure_warned
    with _insecure_lock:
        if _insecure_warned:
            return
        _insecure_warned = True
    import urllib3

    # One clear warning instead of urllib3's warning on every request.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    log.warning("TLS certificate verification is OFF for connection %r (extra verify=false).", conn_id)


def _read_body(response: requests.Response, deadline: float, url: str) -> bytes:
    """The whole body, or a timeout once ``deadline`` passes: the socket timeout alone bounds each read, so a
    server trickling its body a byte at a time could otherwise hold a call forever."""
    try:
        return _read_chunks(response.raw, deadline, url)
    except urllib3.exceptions.ReadTimeoutError as err:
        raise requests.Timeout(f"reading the response to GET {url} timed out") from err
    except urllib3.exceptions.HTTPError as err:  # e.g. the connection dropped mid-body
        raise requests.ConnectionError(f"the response to GET {url} broke off: {type(err).__name__}") from err


def _read_chunks(raw: Any, deadline: float, url: str) -> bytes:
    chunks = []
    while True:
        # decode_content: undo a gzip Content-Encoding, as requests would (it asks for gzip by default).
        if hasattr(raw, "read1"):
            chunk = raw.read1(1 << 16, decode_content=True)
        else:  # urllib3 1.x
            chunk = raw.read(1 << 16, decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise requests.Timeout(f"the response to GET {url} took longer than the connection's timeout")
    return b"".join(chunks)


def http_error(
    endpoint: Endpoint,
    status: int,
    url: str,
    body: bytes,
    conn_id: str,
    token: str | None,
    retry_after: float | None = None,
) -> OpseraError:
    """The provider's exception for an HTTP error status (auth errors name the scopes and roles needed).

    The body's first 4 kB go into the message, with the API token masked should the server echo it.
    """
    path = endpoint.path
    if status == 401:
        return OpseraAuthError(
            f"Opsera rejected the API token (HTTP 401) for GET {path}: check that connection {conn_id!r} holds a "
            f"valid, unexpired personal access token with {endpoint.scopes} scope, owned by one of: "
            f"{endpoint.roles}.",
            status_code=401,
            url=url,
        )
    if status == 403:
        return OpseraAuthError(
            f"Opsera refused GET {path} (HTTP 403): the token has the wrong scope or its owner lacks the role. "
            f"It needs a token with {endpoint.scopes} scope, owned by one of: {endpoint.roles}.",
            status_code=403,
            url=url,
        )
    shown = body[:4096].decode("utf-8", "replace")
    text = excerpt(shown.replace(token, "***") if token else shown)
    message = f"Opsera answered HTTP {status} for GET {url}" + (f": {text}" if text else "")
    if is_retryable_status(status):
        return RetryableAPIError(message, status_code=status, url=url, body=text, retry_after=retry_after)
    return OpseraAPIError(message, status_code=status, url=url, body=text)


class OpseraHook(BaseHook):
    """Talks to Opsera's audit and activity logs API.

    :param opsera_conn_id: an ``opsera`` connection: host = API URL (empty: https://app.opsera.io), password =
        API token; its extras are the table :data:`airflow_provider_opsera.connection.EXTRAS`.
    """

    conn_name_attr = "opsera_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "opsera"
    hook_name = "Opsera"

    def __init__(self, opsera_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opsera_conn_id = opsera_conn_id
        #: What the last :meth:`iter_logs` / :meth:`iter_log_batches` did (requests, retries, splits, ...).
        self.last_stats = ExtractionStats()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_provider_opsera.get_provider_info import get_provider_info

        return get_provider_info()["connection-types"][0]["ui-field-behaviour"]

    @cached_property
    def settings(self) -> OpseraConnectionSettings:
        settings = OpseraConnectionSettings.from_connection(self.get_connection(self.opsera_conn_id))
        if settings.verify is False:
            _warn_insecure_once(self.log, self.opsera_conn_id)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=max(4, self.settings.concurrency), max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(self.settings.headers)
        session.verify = self.settings.verify
        return session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- one call -------------------------------------------------------------------------------------------
    def _url(self, endpoint: Endpoint, params: Mapping[str, str]) -> str:
        query = urlencode(params)
        return f"{self.settings.base_url}{endpoint.path}" + (f"?{query}" if query else "")

    def _request(self, endpoint: Endpoint, params: Mapping[str, str], stats: ExtractionStats | None) -> bytes:
        """One GET, once. Raises the provider's errors; retryable ones as :class:`RetryableAPIError`."""
        url = self._url(endpoint, params)
        if stats is not None:
            stats.requests += 1
        timeout = self.settings.timeout
        # verify passed per request: requests lets REQUESTS_CA_BUNDLE override a Session's own setting.
        with self.session.get(
            f"{self.settings.base_url}{endpoint.path}",
            params=params,
            timeout=timeout,
            verify=self.settings.verify,
            stream=True,
        ) as response:
            body = _read_body(response, time.monotonic() + timeout, url)
        if response.status_code != 200:
            raise http_error(
                endpoint,
                response.status_code,
                url,
                body,
                self.opsera_conn_id,
                self.settings.token,
                parse_retry_after(response.headers.get("Retry-After")),
            )
        return body

    def _call(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str],
        *,
        raw: bool,
        stats: ExtractionStats | None = None,
        call: Call | None = None,
    ) -> Page:
        """One GET with the retry rule, decoded and checked.

        Within an extraction, ``call`` carries the runner's request slot (held for the request, released
        before decoding, so another call's request can start meanwhile) and its cancellation (no more
        retries once the extraction ended).
        """
        settings = self.settings
        stop = stop_after_attempt(settings.max_retries + 1)
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop | stop_when_event_set(call.cancelled) if call is not None else stop,
            wait=RetryWait(settings.retry_min_wait, settings.retry_max_wait),
            before_sleep=lambda state: self._before_retry(state, endpoint, stats),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    with call.slot if call is not None else contextlib.nullcontext():
                        body = self._request(endpoint, params, stats)
                    return decode_page(body, endpoint, self._url(endpoint, params), raw=raw)
        except (OpseraError, requests.RequestException, OSError) as err:
            raise final_error(err, settings.max_retries + 1, self._url(endpoint, params)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_retry(self, state: Any, endpoint: Endpoint, stats: ExtractionStats | None) -> None:
        if stats is not None:
            stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        self.log.warning(
            "Opsera %s call failed (%s); retry %d in %.1fs.",
            endpoint.log_type.value,
            describe_failure(exc) if exc else "?",
            state.attempt_number,
            wait,
        )

    def get_logs(
        self, log_type: OpseraLogType | str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One raw call with the given query parameters (validated first), returning ``{"count", "data"}``."""
        endpoint = endpoint_for(log_type)
        query = validate_params(endpoint.log_type, params)
        page = self._call(endpoint, query, raw=False)
        return {"count": page.count, "data": [r.payload for r in page.records]}

    # -- a whole interval ---------------------------------------------------------------------------------
    def iter_log_batches(
        self,
        log_type: OpseraLogType | str,
        start: Any,
        end: Any,
        filters: Mapping[str, Any] | None = None,
        *,
        raw: bool = False,
    ) -> Iterator[list[Record]]:
        """Every record with ``createdAt`` in ``[start, end)``, exactly once, one response's worth at a time.

        Each :class:`~airflow_provider_opsera.responses.Record` carries ``id``, ``key`` (comparable
        createdAt) and ``payload``: the record as a dict, or with ``raw=True`` its JSON bytes exactly as the
        API sent them (what the landing operators write).
        """
        endpoint = endpoint_for(log_type)
        lo, hi = parse_interval(start, end)
        fixed = validate_filters(endpoint.log_type, filters)
        settings = self.settings  # fail on a bad connection before anything starts
        stats = self.last_stats = ExtractionStats()
        runner = Runner(
            proof_for(
                endpoint, initial_pieces(endpoint, lo, hi, fixed), page_size=settings.page_size, stats=stats
            ),
            lambda params, call: self._call(endpoint, params, raw=raw, stats=stats, call=call),
            concurrency=settings.concurrency,
            decode_ahead=DECODE_AHEAD,
        )
        yield from runner.batches()
        self.log.info(
            "Opsera %s [%s, %s): %d records in %d requests (%d retries, %d splits) in %.1fs.",
            endpoint.log_type.value,
            lo.isoformat(),
            hi.isoformat(),
            stats.records,
            stats.requests,
            stats.retries,
            stats.splits,
            stats.seconds,
        )

    def iter_logs(
        self, log_type: OpseraLogType | str, start: Any, end: Any, filters: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every record whose ``createdAt`` lies in ``[start, end)``, each exactly once, streamed page by page.

        ``start``/``end`` are datetimes or ISO strings (naive means UTC). Raises
        :class:`~airflow_provider_opsera.exceptions.OpseraIncompleteResultError` rather than ever returning a
        set it cannot prove complete.
        """
        for batch in self.iter_log_batches(log_type, start, end, filters):
            for record in batch:
                yield record.payload

    # -- connection test ----------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Probe each log type once (one attempt, a short timeout) and say in one sentence what the token reads.

        Used by the UI's Test button, which tests under a temporary connection id: no message names it.
        """
        try:
            settings = self.settings
        except OpseraConnectionError as err:
            return False, f"The connection cannot be used: {err.problem}"
        except OpseraError as err:
            return False, str(err)
        probe = type(self)(opsera_conn_id=self.opsera_conn_id)
        probe.settings = replace(settings, timeout=min(settings.timeout, TEST_TIMEOUT), max_retries=0)
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(len(TEST_PROBES), thread_name_prefix="opsera-test") as pool:
                outcomes = dict(zip(TEST_PROBES, pool.map(probe._probe, TEST_PROBES.items()), strict=True))
        finally:
            probe.close()
        return connection_test_result(settings.base_url, outcomes, time.monotonic() - started)

    def _probe(self, item: tuple[OpseraLogType, Mapping[str, str]]) -> BaseException | None:
        """One attempt at one tiny call: None if the token reads that log type, else what failed."""
        log_type, params = item
        endpoint = endpoint_for(log_type)
        try:
            body = self._request(endpoint, params, None)
            decode_page(body, endpoint, self._url(endpoint, params), raw=True)
        except (OpseraError, requests.RequestException, OSError) as err:
            return err
        return None


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
