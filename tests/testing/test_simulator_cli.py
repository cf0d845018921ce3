"""The command line, the demo scenario and the pytest fixture."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pendulum
import pytest
import requests

from airflow_provider_opsera.testing import OpseraSimulator

PLUGIN = "airflow_provider_opsera.testing.pytest_plugin"


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], dict]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_opsera.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(3):
        line = process.stdout.readline()
        if line.startswith("AIRFLOW_CONN_OPSERA_DEFAULT="):
            value = line.split("=", 1)[1].strip()
            return process, json.loads(value.strip("'"))
    process.kill()
    raise AssertionError("the CLI did not print the connection")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_the_demo_and_stops_on_signal(signum):
    process, conn = _start_cli(
        "--scenario", "demo", "--day", "2024-05-01", "--token", "tok-123", "--seed", "5"
    )
    try:
        assert conn["conn_type"] == "opsera" and conn["password"] == "tok-123"
        response = requests.get(
            conn["host"] + "/api/v1/logs/pipelines",
            params={"date": "2024-05-01"},
            headers={"Authorization": "Bearer tok-123"},
            timeout=10,
        )
        assert response.status_code == 200 and response.json()["count"] == 2500
    finally:
        process.send_signal(signum)
        out, _ = process.communicate(timeout=15)
    assert process.returncode == 0 and "Stopped after 1 requests" in out


PROG = "python -m airflow_provider_opsera.testing"


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_opsera.testing", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_option_has_help_and_scenario_lists_the_choices():
    from airflow_provider_opsera.testing.__main__ import _parser

    assert all(action.help for action in _parser()._actions)
    result = _run_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for option, words in {
        "--port PORT": "port to listen on",
        "--host HOST": "address to listen on (default: 127.0.0.1, loopback only)",
        "--token TOKEN": "the bearer token to accept",
        "--day YYYY-MM-DD": "the demo's full day",
        "--latency SECONDS": "seconds added to every response",
        "--seed N": "seed of the generated data and the default token (default: 42)",
    }.items():
        assert f"{option} {words}" in text, option
    assert "--scenario {demo,empty} the data to serve (default: demo): demo: a realistic day" in text
    assert "; empty: no records at all" in text


def test_a_busy_port_is_a_one_line_error_with_status_2():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_cli("--port", str(port), "--scenario", "empty")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"{PROG}: error: port {port} on 127.0.0.1 is already in use: stop what is listening there, or pick "
        "another port with --port (--port 0 picks any free port)\n"
    )


@pytest.mark.parametrize("day", ["2024-13-01", "yesterday", "10/05/2024", "2024-W19-5", ""])
def test_a_bad_day_is_a_one_line_error_with_status_2(day):
    result = _run_cli("--port", "0", "--day", day)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"{PROG}: error: --day {day!r} is not a date: give the demo's day as YYYY-MM-DD, e.g. --day 2024-05-10\n"
    )


def test_demo_scenario(clock):
    sim = OpseraSimulator(clock=clock)
    sim.load_scenario("demo")
    day = clock.now.start_of("day").subtract(days=1)
    counts = {
        t: len(sim.ground_truth(t, day, day.add(days=1)))
        for t in ("user_activity", "audit", "token_activity")
    }
    assert counts == {"user_activity": 800, "audit": 5000, "token_activity": 300}
    pipelines = sim.ground_truth("pipeline_activity", day, day.add(days=1))
    by_type = {t: sum(r["type"] == t for r in pipelines) for t in ("sdlc", "sfdc", "ai-ml", "sql")}
    assert len(pipelines) == 2500 and max(by_type.values()) < 1000 and sum(by_type.values()) == 2500
    assert not [r for r in pipelines if r["pipeline_id"] == "611e7dca57f4eff66e9db084"]
    clock.advance(20)
    run = sim.ground_truth("pipeline_activity", clock.now.subtract(minutes=5), clock.now.add(seconds=1))
    assert (run[-1]["step_name"], run[-1]["status"]) == ("anchore", "analyzing")
    clock.advance(60)
    run = sim.ground_truth("pipeline_activity", clock.now.subtract(minutes=5), clock.now.add(seconds=1))
    assert (run[-1]["step_name"], run[-1]["status"]) == ("anchore", "success")
    with pytest.raises(ValueError, match="unknown scenario"):
        sim.load_scenario("busy")


def test_connection_json_and_lifecycle():
    sim = OpseraSimulator(seed=1)
    with pytest.raises(RuntimeError):
        _ = sim.url
    with sim:
        conn = json.loads(sim.connection_json({"page_size": 500}))
        assert conn == {
            "conn_type": "opsera",
            "host": sim.url,
            "password": sim.token,
            "extra": {"page_size": 500},
        }
        assert sim.url.startswith("http://127.0.0.1:")
    sim.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(conn["host"] + "/api/v2/logs/audit/user", timeout=2)
    assert sim.token.count(".") == 2  # JWT-shaped


def test_pytest_fixture(tmp_path: Path):
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import json, os, requests, pytest

            def test_default(opsera_simulator):
                conn = json.loads(os.environ["AIRFLOW_CONN_OPSERA_DEFAULT"])
                assert conn["host"] == opsera_simulator.url
                r = requests.get(conn["host"] + "/api/v2/logs/audit/user",
                                 headers={"Authorization": "Bearer " + conn["password"]})
                assert r.json() == {"count": 0, "data": []}

            @pytest.mark.opsera_simulator(seed=3, scenario="demo", day="2024-05-01")
            def test_marker(opsera_simulator):
                assert opsera_simulator.seed == 3
                assert len(opsera_simulator.ground_truth("audit", "2024-05-01", "2024-05-02")) == 5000
            """
        )
    )
    registered = any(e.value == PLUGIN for e in importlib.metadata.entry_points(group="pytest11"))
    plugin_args = [] if registered else ["-p", PLUGIN]
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_OPSERA_DEFAULT"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert "2 passed" in result.stdout, result.stdout + result.stderr


def test_plugin_imports_nothing_heavy():
    code = f"import sys, {PLUGIN}; print(sorted(m for m in ('airflow', 'aiohttp') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_real_clock_by_default():
    assert abs(OpseraSimulator().now().diff(pendulum.now("UTC")).in_seconds()) < 5
