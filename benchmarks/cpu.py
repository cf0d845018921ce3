"""CPU seconds spent by the simulator and by PostgreSQL while one configuration runs.

With the client's own CPU (measured in the child), these say what bounds a figure: on 2 cores, a run whose
client, server and database together need most of 2 CPU-seconds a second is CPU-bound, whatever its code does.
PostgreSQL's CPU is that of the backends serving the measured process's own connections (other clients of the
same server are not counted), sampled while they live.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_CLIENT_PORT = re.compile(r"\((\d+)\)")


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:  # only the extra figures are lost
        return None
    return psutil


def _seconds(times: Any) -> float:
    return float(times.user + times.system)


class CpuMeter:
    """Cumulative CPU seconds of the simulator process and of the local PostgreSQL server."""

    def __init__(self, simulator_pid: int) -> None:
        self.psutil = _psutil()
        self.simulator = self._process(simulator_pid)
        self.postmaster = self._find_postmaster()

    def _process(self, pid: int) -> Any:
        if self.psutil is None:
            return None
        try:
            return self.psutil.Process(pid)
        except self.psutil.Error:
            return None

    def _find_postmaster(self) -> Any:
        if self.psutil is None:
            return None
        for proc in self.psutil.process_iter(["name", "ppid"]):
            try:
                parent = self.psutil.Process(proc.info["ppid"]) if proc.info["ppid"] else None
                if proc.info["name"] == "postgres" and (parent is None or parent.name() != "postgres"):
                    return proc
            except self.psutil.Error:
                continue
        return None

    def read(self) -> dict[str, float | None]:
        return {"sim": self._simulator_seconds()}

    def watch(self, pid: int, pg_port: int = 5432) -> BackendWatch:
        """Start sampling the PostgreSQL backends of process ``pid``'s connections."""
        return BackendWatch(self, pid, pg_port)

    def _simulator_seconds(self) -> float | None:
        try:
            return _seconds(self.simulator.cpu_times()) if self.simulator is not None else None
        except Exception:
            return None


class BackendWatch:
    """Samples, every ``interval`` seconds, the CPU of the backends serving one process's connections.

    A backend's last sample before it exits is what counts: up to ``interval`` of its CPU can be missed.
    """

    def __init__(self, meter: CpuMeter, pid: int, pg_port: int, interval: float = 0.05) -> None:
        self.meter, self.pid, self.pg_port, self.interval = meter, pid, pg_port, interval
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if meter.psutil is not None and meter.postmaster is not None:
            self._thread = threading.Thread(target=self._run, name="pg-cpu", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        psutil = self.meter.psutil
        try:
            client = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.wait(self.interval):
            try:
                ports = {
                    c.laddr.port
                    for c in client.net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == self.pg_port
                }
            except psutil.Error:
                return  # the measured process ended
            if not ports:
                continue
            for backend in self.meter.postmaster.children():
                try:
                    match = _CLIENT_PORT.search(" ".join(backend.cmdline()))
                    if match and int(match.group(1)) in ports:
                        self.seen[backend.pid] = _seconds(backend.cpu_times())
                except psutil.Error:
                    continue

    def stop(self) -> float | None:
        """Stop sampling; the backends' CPU seconds (None if they could not be watched)."""
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values()) if self.seen else None


def delta(before: dict[str, float | None], after: dict[str, float | None], runs: int) -> dict[str, float]:
    """Seconds a run, for the meters that could be read both times."""
    out = {}
    for key, value in after.items():
        start = before.get(key)
        if value is not None and start is not None:
            out[key] = (value - start) / max(1, runs)
    return out
