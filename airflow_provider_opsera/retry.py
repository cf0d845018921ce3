"""The one retry rule, shared by the sync hook and the async trigger.

Worth retrying: 429, any 5xx, dropped connections, timeouts, and 200 bodies that are not the documented
shape (a truncated body through a gateway looks like that). Never: 400, 401, 403, 404, 422.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from typing import Any

import requests
from tenacity import RetryCallState

from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraError, RetryableAPIError

#: Longest wait honoured from a ``Retry-After`` header; a longer one is capped, so a task cannot hang.
MAX_RETRY_AFTER = 300.0


def is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def is_retryable(exc: BaseException) -> bool:
    """The retry predicate handed to tenacity: the provider's errors say so themselves (``retryable``)."""
    if isinstance(exc, OpseraError):
        return exc.retryable
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # a certificate that fails verification will fail again

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp comes with Airflow
        return False
    if isinstance(exc, aiohttp.ClientSSLError):
        return False
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryWait:
    """Tenacity wait: the server's ``Retry-After`` when given (capped), else exponential backoff with jitter."""

    def __init__(self, min_wait: float, max_wait: float) -> None:
        self.min_wait, self.max_wait = min_wait, max(min_wait, max_wait)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), MAX_RETRY_AFTER)
        backoff = self.min_wait * 2 ** max(0, retry_state.attempt_number - 1)
        return min(self.max_wait, backoff + random.uniform(0, self.min_wait))


def describe_failure(exc: BaseException) -> str:
    """A short, token-free description of a transport failure."""
    if isinstance(exc, OpseraAPIError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def excerpt(body: Any, limit: int = 300) -> str:
    """The first ``limit`` characters of a body, whitespace folded, for error messages."""
    if isinstance(body, bytes):
        body = body[: limit * 4].decode("utf-8", "replace")
    text = " ".join(str(body).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def final_error(err: BaseException, attempts: int, url: str) -> BaseException:
    """The error a call ends with once the retry rule stopped: the provider's own, saying how hard it tried."""
    if isinstance(err, RetryableAPIError) and attempts > 1:
        return OpseraAPIError(
            f"{err} (gave up after {attempts} attempts)",
            status_code=err.status_code,
            url=err.url,
            body=err.body,
        )
    if isinstance(err, OpseraError):
        return err
    return OpseraAPIError(
        f"Could not reach Opsera at GET {url} after {attempts} attempts: {describe_failure(err)}", url=url
    )
