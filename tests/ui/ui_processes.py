"""Background processes for the browser test: each in its own process group, logging to a file, stopped by id.

Kept free of pytest so a process's log tail can be printed from any fixture's teardown or failure path.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


class ManagedProcess:
    """One started process (a new session, so its children share its process group) and its log file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: pathlib.Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} (pid {self.pid}) exited with {self.popen.returncode}; last lines of "
                f"{self.log_path}:\n{self.tail()}"
            )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group, up to ``timeout`` seconds for it to exit, then SIGKILL."""
        try:
            if self.alive():
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=10)
            # children left behind by a leader that exited (task runners, gunicorn/uvicorn workers)
            _signal_group(self.pid, signal.SIGKILL)
        finally:
            self._log.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_for(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 1.0,
    alive: Sequence[ManagedProcess] = (),
) -> T:
    """Call ``check`` until it returns something truthy (returned), for at most ``timeout`` seconds.

    An exception from ``check`` counts as "not yet" (the last one is reported on timeout). Any process in
    ``alive`` that exits meanwhile fails the wait at once, with its log tail.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in alive:
            proc.check_alive()
        try:
            result = check()
            if result:
                return result
        except Exception as err:
            last_error = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
