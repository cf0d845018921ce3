"""The provider's errors, all of them: a small hierarchy to catch at the level you care about.

Whether an error is worth retrying is a property of its class (``retryable``); the retry policy
(:mod:`airflow_provider_opsera.retry`) reads it, so nothing that raises an error needs the policy.
"""

from __future__ import annotations

from typing import ClassVar


class OpseraError(Exception):
    """Base class of every error raised by the Opsera provider."""

    #: Whether the call that raised it is worth making again.
    retryable: ClassVar[bool] = False


class OpseraConnectionError(OpseraError):
    """The ``opsera`` connection's settings cannot be used as they are. ``problem`` says what to change,
    without the connection id (the UI's Test button tests under a temporary id)."""

    def __init__(self, conn_id: str, problem: str) -> None:
        super().__init__(f"Connection {conn_id!r}: {problem}")
        self.conn_id = conn_id
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.conn_id, self.problem))


class OpseraAuthError(OpseraError):
    """The API refused the token (HTTP 401 or 403)."""

    def __init__(self, message: str, status_code: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class OpseraAPIError(OpseraError):
    """Any other failed call: an HTTP error status, or a body that is not the documented shape.

    ``status_code`` is the HTTP status (``None`` when the failure was not an HTTP status, e.g. a malformed
    body), ``url`` the request URL (never carries the token: it travels in a header), and ``body`` a short
    excerpt of what the server sent.
    """

    def __init__(
        self, message: str, status_code: int | None = None, url: str | None = None, body: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url
        self.body = body

    def __reduce__(self):  # keep pickling (e.g. across processes) lossless
        return (type(self), (self.args[0], self.status_code, self.url, self.body))


class RetryableAPIError(OpseraAPIError):
    """A failed call worth trying again (429, 5xx, malformed body); ``retry_after`` from the server, if any."""

    retryable = True

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        url: str | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, url=url, body=body)
        self.retry_after = retry_after

    def __reduce__(self):
        return (type(self), (self.args[0], self.status_code, self.url, self.body, self.retry_after))


class MalformedResponseError(RetryableAPIError):
    """A 200 response whose body is not ``{"count": ..., "data": [records]}`` with ``_id`` and ``createdAt``
    (a body truncated by a gateway looks like that, so it is retried)."""


class OpseraIncompleteResultError(OpseraError):
    """The API's caps make it impossible to prove that every record of the interval was fetched.

    Raised instead of ever returning a silently short set. ``window`` names the piece that could not be
    proven complete.
    """

    def __init__(self, message: str, window: str | None = None) -> None:
        super().__init__(message)
        self.window = window

    def __reduce__(self):
        return (type(self), (self.args[0], self.window))


class OpseraRecordError(OpseraError, ValueError):
    """A record that cannot be loaded as it is: a known field with an unexpected type, or a value PostgreSQL
    cannot store. ``record_id`` and ``field`` name the culprit."""

    def __init__(self, message: str, record_id: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.record_id = record_id
        self.field = field

    def __reduce__(self):
        return (type(self), (self.args[0], self.record_id, self.field))


class LandingIntegrityError(OpseraError, ValueError):
    """A landed folder does not match its manifest (missing part, wrong count or sha256)."""


class LandingConflictError(OpseraError):
    """Another run of the same interval got in the way of this one's landing: it waited longer than allowed for
    the folder's publish lock, or its own parts were removed because it was taken for a dead run. The folder's
    published state is untouched; running the task again lands the interval."""
