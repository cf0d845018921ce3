"""The async twin of the hook's single call, for triggers: aiohttp, the same settings and the same retry rule.

Nothing here blocks the event loop: the connection is read with ``BaseHook.aget_connection`` (or in a
thread where that does not exist), requests and retry waits are awaited.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from yarl import URL

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for, validate_params
from airflow_provider_opsera.compat import BaseHook
from airflow_provider_opsera.connection import OpseraConnectionSettings
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.hooks.opsera import http_error
from airflow_provider_opsera.responses import Page, decode_page
from airflow_provider_opsera.retry import (
    RetryWait,
    describe_failure,
    final_error,
    is_retryable,
    parse_retry_after,
)

log = logging.getLogger(__name__)


async def aget_connection(conn_id: str) -> Any:
    """The Airflow connection, read without blocking the event loop."""
    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    try:  # Airflow before 3.1: the sync lookup, off the loop
        from asgiref.sync import sync_to_async

        return await sync_to_async(BaseHook.get_connection)(conn_id)
    except ImportError:  # pragma: no cover - asgiref comes with Airflow
        return await asyncio.to_thread(BaseHook.get_connection, conn_id)


def _ssl(verify: bool | str) -> ssl.SSLContext | bool:
    if verify is True:
        return True
    if verify is False:
        return False
    return ssl.create_default_context(cafile=verify)


class OpseraAsyncClient:
    """One call at a time to Opsera's log endpoints, async. Use as ``async with OpseraAsyncClient(conn_id)``.

    ``requests`` and ``retries`` count what it did (attempts, retries included).
    """

    def __init__(self, opsera_conn_id: str = "opsera_default", *, logger: Any = None) -> None:
        self.opsera_conn_id = opsera_conn_id
        self.log = logger or log
        self.settings: OpseraConnectionSettings | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    async def __aenter__(self) -> OpseraAsyncClient:
        conn = await aget_connection(self.opsera_conn_id)
        self.settings = settings = OpseraConnectionSettings.from_connection(conn)
        if settings.verify is False:
            self.log.warning("TLS certificate verification is OFF for connection %r.", self.opsera_conn_id)
        self._session = aiohttp.ClientSession(
            headers=settings.headers,
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            connector=aiohttp.TCPConnector(ssl=_ssl(settings.verify), limit=max(1, settings.concurrency)),
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
            raise RuntimeError("use OpseraAsyncClient as 'async with OpseraAsyncClient(conn_id) as client'")
        endpoint = endpoint_for(log_type)
        query = validate_params(endpoint.log_type, params)
        settings = self.settings
        url = f"{settings.base_url}{endpoint.path}"
        shown = str(URL(url).with_query(query))
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(settings.max_retries + 1),
            wait=RetryWait(settings.retry_min_wait, settings.retry_max_wait),
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    self.requests += 1
                    async with self._session.get(url, params=query) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise http_error(
                                endpoint,
                                response.status,
                                shown,
                                body,
                                self.opsera_conn_id,
                                self.settings.token if self.settings else None,
                                parse_retry_after(response.headers.get("Retry-After")),
                            )
                    return decode_page(body, endpoint, shown)
        except (OpseraError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise final_error(err, settings.max_retries + 1, shown) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_retry(self, state: Any) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        self.log.warning(
            "Opsera call failed (%s); retry %d in %.1fs.",
            describe_failure(exc) if exc else "?",
            state.attempt_number,
            wait,
        )
