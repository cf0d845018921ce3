"""Reading an ``opsera`` Airflow connection into settings, shared by the sync hook and the async trigger."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_opsera.exceptions import OpseraAuthError, OpseraError

DEFAULT_API_URL = "https://app.opsera.io"


@dataclass(frozen=True)
class OpseraConnectionSettings:
    """Everything a client needs from the connection. ``repr`` never shows the token."""

    conn_id: str
    base_url: str
    token: str
    timeout: float = 60.0
    verify: bool | str = True
    max_retries: int = 5
    page_size: int = 1000
    concurrency: int = 4
    retry_min_wait: float = 1.0
    retry_max_wait: float = 60.0

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
    def from_connection(cls, conn: Any) -> OpseraSettings:
        conn_id = getattr(conn, "conn_id", None) or "opsera_default"
        token = (getattr(conn, "password", None) or "").strip()
        if not token:
            raise OpseraAuthError(
                f"Connection {conn_id!r} has no API token: put an Opsera personal access token (API or Security "
                "Logs scope) in the connection's password field."
            )
        extra = _extras(conn, conn_id)
        return cls(
            conn_id=conn_id,
            base_url=_base_url(conn, conn_id),
            token=token,
            timeout=_number(extra, "timeout", 60.0, conn_id, minimum=0.001),
            verify=_verify(extra.get("verify", True), conn_id),
            max_retries=int(_number(extra, "max_retries", 5, conn_id, minimum=0, maximum=100, integer=True)),
            page_size=int(_number(extra, "page_size", 1000, conn_id, minimum=1, maximum=1000, integer=True)),
            concurrency=int(_number(extra, "concurrency", 4, conn_id, minimum=1, maximum=32, integer=True)),
            retry_min_wait=_number(extra, "retry_min_wait", 1.0, conn_id, minimum=0),
            retry_max_wait=_number(extra, "retry_max_wait", 60.0, conn_id, minimum=0),
        )


OpseraSettings = OpseraConnectionSettings


def _extras(conn: Any, conn_id: str) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None) or "{}"
        try:
            extra = json.loads(raw)
        except ValueError:
            raise OpseraError(f"Connection {conn_id!r}: extra is not a JSON object.") from None
    if not isinstance(extra, dict):
        raise OpseraError(f"Connection {conn_id!r}: extra must be a JSON object.")
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
        raise OpseraError(
            f"Connection {conn_id!r}: host {host!r} is not an http(s) URL; set it to the API base URL, "
            f"e.g. {DEFAULT_API_URL}."
        )
    conn_port = getattr(conn, "port", None)
    if conn_port and not 0 < int(conn_port) < 65536:
        raise OpseraError(f"Connection {conn_id!r}: port {conn_port} is not a TCP port (1-65535).")
    if conn_port and port is None:
        host = f"{parts.scheme}://{parts.netloc}:{int(conn_port)}{parts.path}"
    return host


def _number(
    extra: dict[str, Any],
    key: str,
    default: float,
    conn_id: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    value = extra.get(key)
    if value is None or value == "":
        return default
    try:
        number = float(value)
        if not math.isfinite(number) or (integer and number != int(number)):
            raise ValueError
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise OpseraError(f"Connection {conn_id!r}: extra {key!r}={value!r} must be {kind}.") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"from {minimum:g}" + (f" to {maximum:g}" if maximum is not None else " up")
        raise OpseraError(f"Connection {conn_id!r}: extra {key!r}={value!r} is out of range ({bounds}).")
    return number


def _verify(value: Any, conn_id: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", ""):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return value.strip()  # a CA bundle path
    raise OpseraError(f"Connection {conn_id!r}: extra 'verify' must be true, false or a CA bundle path.")
