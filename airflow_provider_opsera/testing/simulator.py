"""``OpseraSimulator``: the offline Opsera logs API that tests, demos and benchmarks run against."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.api import Grant, SimulatedApi
from airflow_provider_opsera.testing.background import BackgroundTraffic
from airflow_provider_opsera.testing.clock import MS_DAY, to_ms
from airflow_provider_opsera.testing.config import RequestLog, SimulatorConfig
from airflow_provider_opsera.testing.faults import FaultRule, check_rule
from airflow_provider_opsera.testing.scripted import run_records
from airflow_provider_opsera.testing.segments import Segment
from airflow_provider_opsera.testing.shapes import (
    LAYOUT,
    SPLIT_FIELD,
    ColumnSpec,
    Pools,
    choice_spec,
    default_columns,
    is_absent,
    stable_hash,
)
from airflow_provider_opsera.testing.sources import StaticRecords

if TYPE_CHECKING:
    from airflow_provider_opsera.testing.server import ServerThread

_JWT_HEADER = b'{"alg":"HS256","typ":"JWT"}'


def _utc_now() -> pendulum.DateTime:
    return pendulum.now("UTC")


def _default_token(seed: int) -> str:
    """A JWT-shaped token, distinctive enough to grep for in logs that must never show it."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = json.dumps({"sub": "opsera-simulator", "seed": seed, "scope": "api"}).encode()
    signature = stable_hash("token", seed).to_bytes(8, "big") * 4
    return f"{b64(_JWT_HEADER)}.{b64(payload)}.{b64(signature)}"


class OpseraSimulator:
    """A real HTTP server on loopback that serves Opsera's four log endpoints from seeded synthetic data.

    Use it as a context manager (or ``start()``/``stop()``)::

        with OpseraSimulator(seed=42) as sim:
            sim.generate("audit", "2024-05-01", "2024-05-02", 5000)
            os.environ["AIRFLOW_CONN_OPSERA_DEFAULT"] = sim.connection_json()
            ...
            assert records == sim.ground_truth("audit", "2024-05-01", "2024-05-02")

    Data: ``generate`` (synthetic, by index, cheap at millions), ``add_records`` (explicit), ``script_run``
    (a pipeline run whose statuses change as time passes), ``background_pipeline_traffic`` (a busy account),
    ``load_scenario("demo")``. The API's open questions are knobs on ``sim.config`` (:class:`SimulatorConfig`),
    and ``inject`` / ``inject_random`` make requests fail in the ways real gateways and servers do. Every request
    is logged in ``sim.requests``. ``clock`` replaces the wall clock (for scripted runs in tests).
    """

    def __init__(
        self,
        seed: int = 42,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], pendulum.DateTime] | None = None,
        token: str | None = None,
    ) -> None:
        config = config if config is not None else SimulatorConfig()
        if latency:
            config.latency = latency
        self.seed, self.host, self._port = seed, host, port
        self._api = SimulatedApi(seed, config, clock or _utc_now)
        self._pools = Pools.from_seed(seed)
        self._static: dict[OpseraLogType, StaticRecords] = {}
        self._late: dict[OpseraLogType, Any] = {}
        self._scripted: StaticRecords | None = None
        self._n_sources = 0
        self._n_rules = 0
        self._salts: set[int] = set()
        self._server: ServerThread | None = None
        self.token = token or _default_token(seed)
        self.add_token(self.token)

    # -- server -------------------------------------------------------------------------------------------
    def start(self) -> OpseraSimulator:
        if self._server is None:
            from airflow_provider_opsera.testing.server import ServerThread  # aiohttp only once serving

            server = ServerThread(self._api, self.host, self._port)
            self._port = server.start()
            self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> OpseraSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running: call start() or use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def config(self) -> SimulatorConfig:
        return self._api.config

    @config.setter
    def config(self, value: SimulatorConfig) -> None:
        self._api.config = value

    def now(self) -> pendulum.DateTime:
        """The simulator's idea of now (its ``clock``)."""
        return self._api.clock()

    def connection_json(self, conn_id_extra: Mapping[str, Any] | None = None) -> str:
        """The value of ``AIRFLOW_CONN_OPSERA_DEFAULT`` (or any ``AIRFLOW_CONN_*``) pointing at this server."""
        extra = dict(conn_id_extra or {})
        return json.dumps({"conn_type": "opsera", "host": self.url, "password": self.token, "extra": extra})

    def add_token(self, token: str, scopes: Iterable[str] = ("api",), role: str = "site_admin") -> None:
        """Accept ``token``, with these scopes, acting as an owner with this role."""
        scopes = (scopes,) if isinstance(scopes, str) else scopes
        self._api.tokens[token] = Grant(frozenset(scopes), role)

    # -- data ---------------------------------------------------------------------------------------------
    def _next_salt(self) -> tuple[int, int]:
        """A seed and a distinct 40-bit id salt for the next source, both fixed by the simulator's seed."""
        self._n_sources += 1
        h = stable_hash("source", self.seed, self._n_sources)
        salt = h & 0xFFFFFFFFFF
        while salt in self._salts:
            salt = (salt + 1) & 0xFFFFFFFFFF
        self._salts.add(salt)
        return h, salt

    def generate(
        self,
        log_type: OpseraLogType | str,
        start: object,
        end: object,
        n: int,
        *,
        split_values: Sequence[Any] | Mapping[Any, float] | None = None,
        live: bool = False,
        **field_choices: Any,
    ) -> None:
        """Add ``n`` synthetic records with ``createdAt`` spread over ``[start, end)``, deterministic from the seed.

        ``split_values``: values (or ``{value: weight}``) of the split field (``type``; ``scope`` for token
        activity); ``[]`` leaves the field out. ``field_choices``: a fixed value, a list or a weights dict for
        any other field (``pipeline_id=...``, ``user_email=[...]``; a dict of numbers is weights, any other
        dict a fixed value); unknown fields become extra fields, after ``__v``.
        Pipeline records name the account's pipelines other than the seed's example one
        (``611e7dca57f4eff66e9db084``), which is left to ``script_run``. Generated records are an archive: visible at once, even with ``createdAt`` ahead of the clock (use
        ``script_run`` or ``background_pipeline_traffic`` for records that appear as time passes), unless
        ``live=True``: a live account, where each record appears once the clock (:meth:`now`) passes its
        ``createdAt``, so records arrive while a client pages.
        """
        log_type = OpseraLogType(log_type)
        lo, hi = to_ms(start), to_ms(end)
        if hi <= lo:
            raise ValueError("generate needs start < end")
        if n < 0:
            raise ValueError("n must not be negative")
        choices = dict(field_choices)
        split = SPLIT_FIELD[log_type]
        if split_values is not None:
            choices[split] = split_values
        absent = {f for f, v in choices.items() if is_absent(v)}
        specs: list[ColumnSpec] = [
            spec
            for spec in default_columns(log_type, self._pools)
            if not set(spec.fields) <= choices.keys()  # a default wholly overridden is not drawn at all
        ]
        specs += [choice_spec(f, v) for f, v in choices.items() if f not in absent]
        extras = [f for f in choices if f not in LAYOUT[log_type] and f not in absent]
        seed, salt = self._next_salt()
        # built outside the lock: a million records take a second, and the server keeps answering meanwhile
        segment = Segment(
            log_type, lo, hi, n, seed=seed, salt=salt, specs=specs, absent=absent, extras=extras, live=live
        )
        with self._api.lock:
            self._api.store.add(segment)

    def add_records(self, log_type: OpseraLogType | str, records: Iterable[Mapping[str, Any]]) -> None:
        """Add explicit records (each with ``_id`` and an ISO ``createdAt``), served as given."""
        log_type = OpseraLogType(log_type)
        with self._api.lock:
            source = self._static.get(log_type)
            if source is None:
                source = self._static[log_type] = StaticRecords(log_type)
                self._api.store.add(source)
            source.add(records)

    def add_late_records(
        self,
        log_type: OpseraLogType | str,
        records: Iterable[Mapping[str, Any]],
        delay: Any,
    ) -> None:
        """Add explicit records that the API shows only ``delay`` after their ``createdAt`` (on the simulator's
        clock, :meth:`now`): records persisted late. ``delay``: a ``timedelta`` or seconds, for every record,
        or a mapping ``_id -> delay``."""
        from airflow_provider_opsera.testing.late import LateRecords, delay_ms

        log_type = OpseraLogType(log_type)
        records = list(records)
        delays = [delay_ms(delay[r["_id"]] if isinstance(delay, Mapping) else delay) for r in records]
        with self._api.lock:
            source = self._late.get(log_type)
            if source is None:
                source = self._late[log_type] = LateRecords(log_type)
                self._api.store.add(source)
            source.add(records, delays)

    def update_record(self, log_type: OpseraLogType | str, record_id: str, **changes: Any) -> dict[str, Any]:
        """Change an explicit record (``add_records``/``add_late_records``) in place, as the API would after a
        pipeline step's status is rewritten: ``changes`` merged in, ``updatedAt`` = now unless given. Returns
        the record as served from now on."""
        from airflow_provider_opsera.testing.late import update_in

        log_type = OpseraLogType(log_type)
        with self._api.lock:
            return update_in(self._api.store.sources[log_type], record_id, changes, to_ms(self.now()))

    def script_run(
        self,
        pipeline_id: str,
        run_count: int,
        steps: Sequence[Mapping[str, Any]],
        *,
        start: object = None,
        type: str | None = "sdlc",
        user_id: str | None = None,
    ) -> None:
        """A pipeline run whose step events appear (``createdAt = start + offset``) as the clock passes them.

        ``steps``: ``[{"step_name": "anchore", "step_id": ..., "step_index": 2, "events": [(0, "analyzing",
        "Anchore Scan Started Successfully"), (60, "success", "Anchore Scan Completed")]}, ...]``.
        ``start`` defaults to now.
        """
        start_ms = to_ms(start if start is not None else self.now())
        records = run_records(
            pipeline_id,
            run_count,
            steps,
            start_ms=start_ms,
            type=type,
            user_id=user_id or self._pools.users[1][0],
        )
        with self._api.lock:
            if self._scripted is None:
                self._scripted = StaticRecords(OpseraLogType.PIPELINE_ACTIVITY, gated=True)
                self._api.store.add(self._scripted)
            self._scripted.add(records)

    def background_pipeline_traffic(
        self,
        per_hour: int,
        *,
        start: object = None,
        end: object = None,
        pipeline_ids: Sequence[str] | None = None,
    ) -> None:
        """Unrelated pipeline-activity records at ``per_hour``, from ``start`` (default: a day ago) to ``end``
        (default: forever), each visible once its ``createdAt`` has passed. Computed, not stored.

        ``pipeline_ids`` defaults to the account's pipelines other than the seed's example one.
        """
        start_ms = to_ms(start) if start is not None else to_ms(self.now()) - MS_DAY
        seed, salt = self._next_salt()
        source = BackgroundTraffic(
            per_hour,
            start_ms,
            to_ms(end) if end is not None else None,
            pipeline_ids=pipeline_ids or self._pools.pipelines[1:],
            user_ids=[u for u, _ in self._pools.users[:12]],
            seed=seed,
            salt=salt,
        )
        with self._api.lock:
            self._api.store.add(source)

    def load_scenario(self, name: str, day: object = None) -> None:
        """Load a named data set: ``"demo"`` (a realistic day, default yesterday UTC, and a scripted run) or
        ``"empty"``."""
        from airflow_provider_opsera.testing.scenarios import load

        load(self, name, day)

    def ground_truth(
        self,
        log_type: OpseraLogType | str,
        start: object,
        end: object,
        filters: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every record with ``start <= createdAt < end`` (matching ``filters`` exactly), visible now, oldest
        first, exactly as the server serves them."""
        wanted = {k: str(v) for k, v in (filters or {}).items() if v is not None}
        lo, hi = to_ms(start, ceil=True), to_ms(end, ceil=True)
        with self._api.lock:
            matches = self._api.store.matches(OpseraLogType(log_type), lo, hi, wanted, to_ms(self.now()))
            return matches.ascending(0, matches.total)

    # -- requests and faults ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestLog]:
        """Every request received so far (a copy), oldest first."""
        return self._api.requests()

    def request_count(self, log_type: OpseraLogType | str | None = None, status: int | None = None) -> int:
        wanted = OpseraLogType(log_type) if log_type is not None else None
        return sum(1 for r in self._api.requests(wanted) if status is None or r.status == status)

    def max_in_flight(self) -> int:
        """The most requests the server was answering at once since the start (or :meth:`reset_requests`)."""
        with self._api.lock:
            return self._api.max_in_flight

    def reset_requests(self) -> None:
        with self._api.lock:
            self._api.log.clear()
            self._api.max_in_flight = self._api.in_flight

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        log_type: OpseraLogType | str | None = None,
        probability: float | None = None,
        **opts: Any,
    ) -> None:
        """Make the next ``times`` matching requests (None: all) fail with ``kind``; see ``faults.FAULT_KINDS``."""
        self._add_rule((str(kind),), times, log_type, probability, opts, None)

    def inject_random(
        self,
        rate: float,
        kinds: Iterable[str],
        *,
        log_type: OpseraLogType | str | None = None,
        seed: int | None = None,
    ) -> None:
        """From now on, each (matching) request fails with probability ``rate``, with a kind drawn from ``kinds``."""
        self._add_rule(tuple(str(k) for k in kinds), None, log_type, rate, {}, seed)

    def _add_rule(
        self,
        kinds: tuple[str, ...],
        times: int | None,
        log_type: OpseraLogType | str | None,
        probability: float | None,
        opts: dict[str, Any],
        seed: int | None,
    ) -> None:
        check_rule(kinds, times, probability, opts)
        self._n_rules += 1  # a distinct stream per rule, still fixed by the simulator's seed
        rng = random.Random(seed if seed is not None else stable_hash("faults", self.seed, self._n_rules))
        target = OpseraLogType(log_type) if log_type is not None else None
        self._api.faults.add(FaultRule(kinds, times, target, probability, opts, rng))

    def clear_faults(self) -> None:
        self._api.faults.clear()
