"""The Opsera hooks: one connection, two faces.

- :class:`OpseraHook` (sync, ``requests``): connection, token, retries and paging; whole intervals through
  the extraction runner; the UI's connection test.
- :class:`OpseraAsyncHook` (async, ``aiohttp``): one call at a time for triggers; nothing blocks the event
  loop (the connection is read with ``BaseHook.aget_connection``, or off the loop where that is missing).

Both read the same settings (:mod:`airflow_provider_opsera.connection`) and share, from
:mod:`.transport`, the retry policy, the retry log line, the status-to-error mapping, the decoding of an
answer, the TLS-off warning and the URL shown in messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from typing import Any

import aiohttp
import requests
from pendulum import DateTime
from requests.adapters import HTTPAdapter
from tenacity import AsyncRetrying, Retrying

from airflow_provider_opsera.catalogue import (
    Endpoint,
    OpseraLogType,
    endpoint_for,
    validate_filters,
    validate_params,
)
from airflow_provider_opsera.compat import BaseHook
from airflow_provider_opsera.connection import DEFAULT_CONN_ID, OpseraConnectionSettings
from airflow_provider_opsera.exceptions import OpseraConnectionError, OpseraError
from airflow_provider_opsera.extraction import DECODE_AHEAD, Call, ExtractionStats, Runner, proof_for
from airflow_provider_opsera.hooks.connection_test import (
    TEST_PROBES,
    TEST_TIMEOUT,
    connection_test_result,
)
from airflow_provider_opsera.hooks.transport import (
    http_error,
    log_retry,
    parse_answer,
    read_body,
    retry_policy,
    shown_url,
    ssl_context,
    warn_tls_off,
)
from airflow_provider_opsera.planning import plan
from airflow_provider_opsera.responses import Page, Record
from airflow_provider_opsera.retry import final_error, parse_retry_after
from airflow_provider_opsera.timeutils import parse_interval, utc_now

__all__ = ["DECODE_AHEAD", "OpseraAsyncHook", "OpseraHook", "http_error"]


class _OpseraHookBase(BaseHook):
    """What both faces share: the connection type, the form, and reading the connection into settings."""

    conn_name_attr = "opsera_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "opsera"
    hook_name = "Opsera"

    def __init__(self, opsera_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opsera_conn_id = opsera_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_provider_opsera.get_provider_info import get_provider_info

        return get_provider_info()["connection-types"][0]["ui-field-behaviour"]

    def _settings_of(self, conn: Any) -> OpseraConnectionSettings:
        settings = OpseraConnectionSettings.from_connection(conn)
        if settings.verify is False:
            warn_tls_off(self.opsera_conn_id)
        return settings


class OpseraHook(_OpseraHookBase):
    """Talks to Opsera's audit and activity logs API.

    :param opsera_conn_id: an ``opsera`` connection: host = API URL (empty: https://app.opsera.io), password =
        API token; its extras are the table :data:`airflow_provider_opsera.connection.EXTRAS`.
    :param clock: the worker's clock (a callable returning a UTC datetime; default: the system clock). What
        "recent" and "live" mean is measured on it; tests pass the simulator's clock.
    """

    def __init__(
        self,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        *,
        clock: Callable[[], DateTime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(opsera_conn_id, **kwargs)
        self.clock: Callable[[], DateTime] = clock or utc_now
        #: What the last :meth:`iter_logs` / :meth:`iter_log_batches` did (requests, retries, splits, ...).
        self.last_stats = ExtractionStats()

    @cached_property
    def settings(self) -> OpseraConnectionSettings:
        return self._settings_of(self.get_connection(self.opsera_conn_id))

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
    def _request(
        self, endpoint: Endpoint, params: Mapping[str, str], stats: ExtractionStats | None
    ) -> tuple[int, float | None, bytes]:
        """One GET, once: status, ``Retry-After`` and the whole body (bounded by the connection's timeout)."""
        if stats is not None:
            stats.requests += 1
        settings = self.settings
        # verify passed per request: requests lets REQUESTS_CA_BUNDLE override a Session's own setting.
        with self.session.get(
            f"{settings.base_url}{endpoint.path}",
            params=params,
            timeout=settings.timeout,
            verify=settings.verify,
            stream=True,
        ) as response:
            url = shown_url(settings, endpoint, params)
            body = read_body(response, time.monotonic() + settings.timeout, url)
            return response.status_code, parse_retry_after(response.headers.get("Retry-After")), body

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
        url = shown_url(settings, endpoint, params)

        def before_sleep(state: Any) -> None:
            if stats is not None:
                stats.retries += 1
            log_retry(self.log, endpoint, state)

        try:
            for attempt in Retrying(
                **retry_policy(settings, before_sleep, call.cancelled if call is not None else None)
            ):
                with attempt:
                    with call.slot if call is not None else contextlib.nullcontext():
                        status, retry_after, body = self._request(endpoint, params, stats)
                    received = self.clock()
                    page = parse_answer(settings, endpoint, url, status, retry_after, body, raw=raw)
                    page.received = received
                    return page
        except (OpseraError, requests.RequestException, OSError) as err:
            raise final_error(err, settings.max_retries + 1, url) from None
        raise AssertionError("unreachable")  # pragma: no cover

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
                endpoint,
                plan(endpoint, lo, hi, fixed, now=self.clock()),
                page_size=settings.page_size,
                stats=stats,
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
            status, retry_after, body = self._request(endpoint, params, None)
            url = shown_url(self.settings, endpoint, params)
            parse_answer(self.settings, endpoint, url, status, retry_after, body, raw=True)
        except (OpseraError, requests.RequestException, OSError) as err:
            return err
        return None


class OpseraAsyncHook(_OpseraHookBase):
    """The async face of :class:`OpseraHook`, for triggers: one call at a time, over aiohttp.

    Use as ``async with OpseraAsyncHook(conn_id) as hook: page = await hook.get_page(log_type, params)``.
    ``requests`` and ``retries`` count what it did (attempts, retries included).

    :param opsera_conn_id: the ``opsera`` connection (the same settings as the sync hook).
    :param logger: where retry warnings go (a trigger passes its own ``self.log``).
    """

    def __init__(self, opsera_conn_id: str = DEFAULT_CONN_ID, *, logger: Any = None, **kwargs: Any) -> None:
        super().__init__(opsera_conn_id, **kwargs)
        if logger is not None:
            self._log = logger
        self.settings: OpseraConnectionSettings | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    @classmethod
    async def aget_connection_off_loop(cls, conn_id: str) -> Any:
        """The Airflow connection, read without blocking the event loop."""
        getter = getattr(BaseHook, "aget_connection", None)
        if getter is not None:
            return await getter(conn_id)
        try:  # Airflow before 3.1: the sync lookup, off the loop
            from asgiref.sync import sync_to_async

            return await sync_to_async(BaseHook.get_connection)(conn_id)
        except ImportError:  # pragma: no cover - asgiref comes with Airflow
            return await asyncio.to_thread(BaseHook.get_connection, conn_id)

    async def __aenter__(self) -> OpseraAsyncHook:
        self.settings = settings = self._settings_of(await self.aget_connection_off_loop(self.opsera_conn_id))
        self._session = aiohttp.ClientSession(
            headers=settings.headers,
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            connector=aiohttp.TCPConnector(
                ssl=ssl_context(settings.verify), limit=max(1, settings.concurrency)
            ),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def get_page(self, log_type: OpseraLogType | str, params: Mapping[str, Any] | None = None) -> Page:
        """One GET with the given query parameters (validated), with the retry rule; decoded and checked."""
        if self._session is None or self.settings is None:
            raise RuntimeError("use OpseraAsyncHook as 'async with OpseraAsyncHook(conn_id) as hook'")
        endpoint = endpoint_for(log_type)
        query = validate_params(endpoint.log_type, params)
        settings, session = self.settings, self._session
        url = shown_url(settings, endpoint, query)

        def before_sleep(state: Any) -> None:
            self.retries += 1
            log_retry(self.log, endpoint, state)

        try:
            async for attempt in AsyncRetrying(**retry_policy(settings, before_sleep)):
                with attempt:
                    self.requests += 1
                    async with session.get(f"{settings.base_url}{endpoint.path}", params=query) as response:
                        body = await response.read()
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    return parse_answer(settings, endpoint, url, response.status, retry_after, body)
        except (OpseraError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise final_error(err, settings.max_retries + 1, url) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_logs(
        self, log_type: OpseraLogType | str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The async :meth:`OpseraHook.get_logs`: one raw call, returning ``{"count", "data"}``."""
        page = await self.get_page(log_type, params)
        return {"count": page.count, "data": [r.payload for r in page.records]}
