"""The HTTP side: an aiohttp application on its own event loop, in a daemon thread, serving a SimulatedApi.

Answers are computed synchronously (they take milliseconds); latency and ``slow`` faults are awaited, so one
slow answer never holds up another request.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from airflow_provider_opsera.testing.api import Answer, SimulatedApi
from airflow_provider_opsera.testing.clock import to_ms
from airflow_provider_opsera.testing.config import RequestLog
from airflow_provider_opsera.testing.faults import (
    DATA_KINDS,
    GATEWAY_KINDS,
    NEEDS_RECORDS,
    Fault,
    gateway_page,
    retry_after,
    tamper,
)
from airflow_provider_opsera.testing.query import ROUTES, Route

_API: web.AppKey[SimulatedApi] = web.AppKey("opsera_api", SimulatedApi)
_JSON = "application/json"


def _abort(request: web.BaseRequest, *, reset: bool) -> None:
    """Close the client's connection now: with a TCP reset, or (mid-body) with a plain close after the bytes."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type=_JSON)


async def _respond(
    request: web.Request, api: SimulatedApi, answer: Answer, fault: Fault | None, now_ms: int
) -> tuple[int, int, web.StreamResponse]:
    """Send the answer, altered by the fault if any; return the status and record count to log, and the response."""
    if fault is None:
        return answer.status, len(answer.records), _json(answer.body, answer.status)
    kind, opts = fault.kind, fault.opts
    if kind == "slow":
        await asyncio.sleep(float(opts.get("delay", 5.0)))
        return answer.status, len(answer.records), _json(answer.body, answer.status)
    if kind == "reset_before":
        _abort(request, reset=True)
        return 0, 0, web.Response()
    if kind == "429":
        value = retry_after(opts.get("retry_after"))
        headers = {"Retry-After": value} if value is not None else {}
        return 429, 0, web.json_response({"message": "Too Many Requests"}, status=429, headers=headers)
    if kind in GATEWAY_KINDS:
        page = opts.get("body") or gateway_page(kind)
        return int(kind), 0, web.Response(text=page, status=int(kind), content_type="text/html")
    body = msgspec.json.encode(answer.body)
    if kind == "malformed_json":
        # any proper prefix of a JSON object is invalid JSON
        return (
            answer.status,
            len(answer.records),
            web.Response(body=body[: len(body) * 2 // 3], content_type=_JSON),
        )
    if kind == "reset_mid_body":
        response = web.StreamResponse(status=answer.status)
        response.content_type = _JSON
        response.content_length = len(body)  # promise the whole body, then break the promise
        await response.prepare(request)
        await response.write(body[: int(len(body) * float(opts.get("fraction", 0.5)))])
        _abort(request, reset=False)
        return answer.status, len(answer.records), response
    outside = api.outside(answer.query, int(opts.get("n", 3)), now_ms) if answer.query else []
    tampered = tamper(fault, answer.body, outside)
    n = len(tampered["data"]) if isinstance(tampered.get("data"), list) else 0
    return answer.status, n, _json(tampered, answer.status)


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        api = request.app[_API]
        now = api.clock()
        now_ms = to_ms(now)
        pairs = list(request.query.items())
        answer = api.answer(route, request.headers.get("Authorization"), pairs, now_ms)
        outside_cache: dict[str, bool] = {}

        def eligible(kind: str) -> bool:
            if kind not in DATA_KINDS:
                return True
            if answer.status != 200:
                return False
            if kind in NEEDS_RECORDS:
                return bool(answer.records)
            if kind == "outside_window":
                if "ok" not in outside_cache:
                    outside_cache["ok"] = bool(answer.query and api.outside(answer.query, 1, now_ms))
                return outside_cache["ok"]
            return True

        fault = api.faults.pick(route.log_type, eligible)
        api.enter()
        try:
            if api.config.latency > 0:
                await asyncio.sleep(api.config.latency)
            status, n, response = await _respond(request, api, answer, fault, now_ms)
        finally:
            api.leave()
        api.record(
            RequestLog(
                now, request.path, route.log_type, dict(pairs), status, n, fault.kind if fault else None
            )
        )
        return response

    return handle


async def _not_found(request: web.Request) -> web.StreamResponse:
    api = request.app[_API]
    api.record(RequestLog(api.clock(), request.path, None, dict(request.query.items()), 404, 0, None))
    return web.json_response({"message": f"Cannot GET {request.path}"}, status=404)


def make_app(api: SimulatedApi) -> web.Application:
    """The aiohttp application serving the four log routes (GET), and a JSON 404 for anything else."""
    app = web.Application()
    app[_API] = api
    for route in ROUTES.values():
        app.router.add_get(route.path, _handler(route))
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


class ServerThread:
    """Runs :func:`make_app` on a private event loop in a daemon thread, bound to ``host:port``."""

    def __init__(self, api: SimulatedApi, host: str, port: int) -> None:
        self.api, self.host, self.port = api, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> int:
        """Start serving; return the bound port (useful with port 0)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="opsera-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.port

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # reported to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            # requests still parked (a "slow" fault, latency) are cancelled, not left to warn at exit
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _setup(self) -> None:
        # a short shutdown grace: stop() should not wait on a request parked in a "slow" fault
        self._runner = web.AppRunner(
            make_app(self.api), access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
