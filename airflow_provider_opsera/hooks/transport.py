"""What both faces of the Opsera hook share below the hook: one retry policy, one retry log line, one
status-to-error mapping, one way to check and decode an answer, one TLS-off warning and one URL for messages.

Nothing here reads a connection or opens a session: the hooks do, and hand their settings in.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from tenacity import retry_if_exception, stop_after_attempt, stop_when_event_set

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.connection import OpseraConnectionSettings
from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraAuthError, OpseraError, RetryableAPIError
from airflow_provider_opsera.responses import Page, decode_page
from airflow_provider_opsera.retry import (
    RetryWait,
    describe_failure,
    excerpt,
    is_retryable,
    is_retryable_status,
)

log = logging.getLogger(__name__)


def shown_url(settings: OpseraConnectionSettings, endpoint: Endpoint, params: Mapping[str, Any]) -> str:
    """The request URL for messages and errors (the token travels in a header, never here)."""
    query = urlencode(params)
    return f"{settings.base_url}{endpoint.path}" + (f"?{query}" if query else "")


def retry_policy(
    settings: OpseraConnectionSettings,
    before_sleep: Callable[[Any], None],
    cancelled: Any = None,
) -> dict[str, Any]:
    """The keyword arguments of tenacity's ``Retrying`` / ``AsyncRetrying``: the one retry rule.

    ``max_retries`` retries on what :func:`~airflow_provider_opsera.retry.is_retryable` accepts, waiting per
    :class:`~airflow_provider_opsera.retry.RetryWait`; a set ``cancelled`` event stops further retries.
    """
    stop = stop_after_attempt(settings.max_retries + 1)
    return {
        "retry": retry_if_exception(is_retryable),
        "stop": stop | stop_when_event_set(cancelled) if cancelled is not None else stop,
        "wait": RetryWait(settings.retry_min_wait, settings.retry_max_wait),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def log_retry(logger: Any, endpoint: Endpoint, state: Any) -> None:
    """The one log line of a retry (tenacity's ``before_sleep``)."""
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    logger.warning(
        "Opsera %s call failed (%s); retry %d in %.1fs.",
        endpoint.log_type.value,
        describe_failure(exc) if exc else "?",
        state.attempt_number,
        wait,
    )


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


def parse_answer(
    settings: OpseraConnectionSettings,
    endpoint: Endpoint,
    url: str,
    status: int,
    retry_after: float | None,
    body: bytes,
    *,
    raw: bool = False,
) -> Page:
    """One answer checked and decoded: the page, or the provider's error for its status or body."""
    if status != 200:
        raise http_error(endpoint, status, url, body, settings.conn_id, settings.token, retry_after)
    return decode_page(body, endpoint, url, raw=raw)


@functools.cache
def warn_tls_off(conn_id: str) -> None:
    """One clear warning per connection and process, instead of urllib3's warning on every request."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    log.warning("TLS certificate verification is OFF for connection %r (extra verify=false).", conn_id)


def ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl`` argument for the connection's ``verify``."""
    if verify is True or verify is False:
        return verify
    return ssl.create_default_context(cafile=verify)


def read_body(response: requests.Response, deadline: float, url: str) -> bytes:
    """The whole body, or a timeout once ``deadline`` passes: the socket timeout alone bounds each read, so a
    server trickling its body a byte at a time could otherwise hold a call forever."""
    raw = response.raw
    read = raw.read1 if hasattr(raw, "read1") else raw.read  # read1: urllib3 2
    chunks: list[bytes] = []
    try:
        while True:
            # decode_content: undo a gzip Content-Encoding, as requests would (it asks for gzip by default).
            chunk = read(1 << 16, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the response to GET {url} took longer than the connection's timeout")
    except urllib3.exceptions.ReadTimeoutError as err:
        raise requests.Timeout(f"reading the response to GET {url} timed out") from err
    except urllib3.exceptions.HTTPError as err:  # e.g. the connection dropped mid-body
        raise requests.ConnectionError(f"the response to GET {url} broke off: {type(err).__name__}") from err
