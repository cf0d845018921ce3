"""Reading an ``opsera`` Airflow connection into settings, shared by the sync and the async hook.

:data:`EXTRAS` is the one table of the connection's extras: key, kind, default, bounds, label and
description. The parsing here, the connection form (``get_provider_info``'s ``conn-fields``), the form's
placeholder and the README's table all follow from it (a test checks the README against it).

What the connection form stores decides the parsing rules: an extra the user left alone arrives as ``null``
(or an empty string), and means its default; a typed value may arrive as text (``"30"``, ``"True"``).
"""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_opsera.exceptions import OpseraAuthError, OpseraConnectionError

DEFAULT_API_URL = "https://app.opsera.io"
#: The connection id every hook, operator and sensor uses unless told otherwise.
DEFAULT_CONN_ID = "opsera_default"

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class ExtraKind(enum.Enum):
    """How an extra's value is read, and how the connection form shows it."""

    NUMBER = "number"
    INTEGER = "integer"
    #: ``true``, ``false`` or the path of a CA bundle.
    TLS = "tls"

    def form_schema(self) -> dict[str, Any]:
        if self is ExtraKind.TLS:
            # A one-line text input with suggestions: a JSON-schema union of boolean and string would render
            # as a multi-type textarea.
            return {"type": ["string", "null"], "examples": ["true", "false"]}
        return {"type": [self.value, "null"]}


@dataclass(frozen=True)
class Extra:
    """One extra of the ``opsera`` connection."""

    key: str
    kind: ExtraKind
    default: float | int | bool
    label: str
    description: str
    minimum: float | None = None
    maximum: float | None = None

    @property
    def bounds(self) -> str:
        if self.minimum is None and self.maximum is None:
            return ""
        if self.maximum is None:
            return f"at least {self.minimum:g}"
        return f"{self.minimum:g} to {self.maximum:g}"

    def form_field(self) -> dict[str, Any]:
        """The field of the connection form (``conn-fields`` in the provider info)."""
        schema = self.kind.form_schema()
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        default = "true" if self.default is True else f"{self.default:g}"
        return {
            "label": self.label,
            "description": f"{self.description} Default {default}.",
            "schema": schema,
        }

    def parse(self, value: Any, conn_id: str) -> Any:
        """The extra's value from what the connection holds: ``None``/blank is the default."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return self.default
        if self.kind is ExtraKind.TLS:
            return self._parse_tls(value, conn_id)
        integer = self.kind is ExtraKind.INTEGER
        what = "a whole number" if integer else "a number"
        try:
            if isinstance(value, bool):  # float(True) is 1.0: a switch is no number
                raise ValueError
            number = float(value.strip() if isinstance(value, str) else value)
            if not math.isfinite(number) or (integer and number != int(number)):
                raise ValueError
        except (TypeError, ValueError):
            raise OpseraConnectionError(conn_id, f"extra {self.key!r}={value!r} must be {what}.") from None
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise OpseraConnectionError(
                conn_id,
                f"extra {self.key!r}={value!r} is out of range ({self.bounds}; default {self.default}).",
            )
        return int(number) if integer else number

    def _parse_tls(self, value: Any, conn_id: str) -> bool | str:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            if not os.path.exists(text):
                raise OpseraConnectionError(
                    conn_id,
                    f"extra {self.key!r}={value!r} is neither true/false nor an existing CA bundle path on "
                    "this machine.",
                )
            return text
        raise OpseraConnectionError(
            conn_id, f"extra {self.key!r}={value!r} must be true, false or the path of a CA bundle."
        )


#: The connection's extras, in the order the form shows them.
EXTRAS: tuple[Extra, ...] = (
    Extra(
        "timeout",
        ExtraKind.NUMBER,
        60.0,
        "Timeout (seconds)",
        "Seconds one request may take, the whole response included.",
        minimum=0.1,
        maximum=3600,
    ),
    Extra(
        "verify",
        ExtraKind.TLS,
        True,
        "Verify TLS",
        "Verify the server's TLS certificate: true, false (warns once), or the path of a CA bundle.",
    ),
    Extra(
        "max_retries",
        ExtraKind.INTEGER,
        5,
        "Max retries",
        "Retries of one request on 429, 5xx, timeouts and dropped connections.",
        minimum=0,
        maximum=100,
    ),
    Extra(
        "page_size",
        ExtraKind.INTEGER,
        1000,
        "Page size",
        "Records per page on the v2 audit endpoint.",
        minimum=1,
        maximum=1000,
    ),
    Extra(
        "concurrency",
        ExtraKind.INTEGER,
        4,
        "Concurrency",
        "Requests open at once while extracting.",
        minimum=1,
        maximum=32,
    ),
    Extra(
        "retry_min_wait",
        ExtraKind.NUMBER,
        1.0,
        "Retry wait (seconds)",
        "First backoff before a retry; it doubles on each retry, with jitter.",
        minimum=0,
        maximum=300,
    ),
    Extra(
        "retry_max_wait",
        ExtraKind.NUMBER,
        60.0,
        "Longest retry wait (seconds)",
        "Cap of the backoff between retries (a server's Retry-After is honoured up to 300 s).",
        minimum=0,
        maximum=3600,
    ),
)
EXTRA: Mapping[str, Extra] = {extra.key: extra for extra in EXTRAS}


@dataclass(frozen=True)
class OpseraConnectionSettings:
    """Everything a client needs from the connection. ``repr`` never shows the token."""

    conn_id: str
    base_url: str
    token: str
    timeout: float = float(EXTRA["timeout"].default)
    verify: bool | str = True
    max_retries: int = int(EXTRA["max_retries"].default)
    page_size: int = int(EXTRA["page_size"].default)
    concurrency: int = int(EXTRA["concurrency"].default)
    retry_min_wait: float = float(EXTRA["retry_min_wait"].default)
    retry_max_wait: float = float(EXTRA["retry_max_wait"].default)

    def __repr__(self) -> str:
        return f"OpseraConnectionSettings(conn_id={self.conn_id!r}, base_url={self.base_url!r}, token=***)"

    @property
    def headers(self) -> dict[str, str]:
        from airflow_provider_opsera import __version__

        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": f"airflow-provider-opsera/{__version__}",
        }

    @classmethod
    def from_connection(cls, conn: Any) -> OpseraConnectionSettings:
        conn_id = getattr(conn, "conn_id", None) or DEFAULT_CONN_ID
        token = (getattr(conn, "password", None) or "").strip()
        if not token:
            raise OpseraAuthError(
                f"Connection {conn_id!r} has no API token: put an Opsera personal access token (API or Security "
                "Logs scope) in the connection's password field."
            )
        extra = _extras(conn, conn_id)
        values = {spec.key: spec.parse(extra.get(spec.key), conn_id) for spec in EXTRAS}
        return cls(conn_id=conn_id, base_url=_base_url(conn, conn_id), token=token, **values)


def form_placeholder() -> str:
    """The placeholder of the form's raw extra field: every extra at its default."""
    return json.dumps({spec.key: spec.default for spec in EXTRAS})


def _extras(conn: Any, conn_id: str) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None) or "{}"
        try:
            extra = json.loads(raw)
        except ValueError:
            raise OpseraConnectionError(conn_id, "extra is not a JSON object.") from None
    if not isinstance(extra, dict):
        raise OpseraConnectionError(conn_id, "extra must be a JSON object.")
    return extra


def _base_url(conn: Any, conn_id: str) -> str:
    host = (getattr(conn, "host", None) or "").strip().rstrip("/")
    if not host:
        return DEFAULT_API_URL
    if "://" not in host:
        host = "https://" + host
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in host:
        raise OpseraConnectionError(
            conn_id,
            f"host {host!r} is not an http(s) URL; set it to the API base URL, e.g. {DEFAULT_API_URL}.",
        )
    conn_port = getattr(conn, "port", None)
    if conn_port and not 0 < int(conn_port) < 65536:
        raise OpseraConnectionError(conn_id, f"port {conn_port} is not a TCP port (1-65535).")
    if conn_port and port is None:
        host = f"{parts.scheme}://{parts.netloc}:{int(conn_port)}{parts.path}"
    return host


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_CONN_ID",
    "EXTRA",
    "EXTRAS",
    "Extra",
    "ExtraKind",
    "OpseraConnectionSettings",
    "extras_markdown",
    "form_placeholder",
]


def extras_markdown() -> str:
    """The README's table of the extras (a test keeps the README equal to it)."""
    rows = ["| extra | form label | meaning | default | range |", "| --- | --- | --- | --- | --- |"]
    for spec in EXTRAS:
        default = "true" if spec.default is True else f"{spec.default:g}"
        rows.append(
            f"| `{spec.key}` | {spec.label} | {spec.description} | {default} | {spec.bounds or '-'} |"
        )
    return "\n".join(rows)
