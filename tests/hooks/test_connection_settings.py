"""The connection as users make it: the form's null extras, values typed as text, one settings table behind
the form, the parsing and the README, and the Test button's one-sentence answer within seconds."""

from __future__ import annotations

import json
import pathlib
import secrets
import socket
import time

import pendulum
import pytest

from airflow_provider_opsera import OpseraAuthError, OpseraConnectionError, OpseraError, OpseraLogType
from airflow_provider_opsera.connection import EXTRAS, OpseraConnectionSettings, extras_markdown
from airflow_provider_opsera.get_provider_info import get_provider_info
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.testing import OpseraSimulator

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAY = pendulum.datetime(2024, 5, 10)
#: What Airflow's Add Connection form stores for extras the user left alone.
FORM_UNTOUCHED = {spec.key: None for spec in EXTRAS}
ALL_TYPES = [t.value for t in OpseraLogType]


class Conn:
    def __init__(self, extra, host="http://127.0.0.1:1", conn_id="c1", password="tok"):
        self.conn_id, self.host, self.port, self.password, self.extra_dejson = (
            conn_id,
            host,
            None,
            password,
            extra,
        )


@pytest.fixture
def sim():
    with OpseraSimulator(seed=3) as simulator:
        yield simulator


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use(monkeypatch, host, password="tok", extra=None, conn_id="opsera_default"):
    conn = {"conn_type": "opsera", "host": host, "password": password, "extra": extra or {}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


# -- the form's extras -----------------------------------------------------------------------------------------
def test_extras_left_alone_in_the_form_mean_their_defaults(sim, monkeypatch):
    use(monkeypatch, sim.url, sim.token, FORM_UNTOUCHED)
    sim.generate(OpseraLogType.AUDIT, DAY, DAY.add(days=1), 1500)
    hook = OpseraHook()
    assert hook.settings == OpseraConnectionSettings(
        conn_id="opsera_default", base_url=sim.url, token=sim.token
    )
    assert len(list(hook.iter_logs("audit", DAY, DAY.add(days=1)))) == 1500


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_blank_extras_mean_their_defaults(blank):
    settings = OpseraConnectionSettings.from_connection(Conn({spec.key: blank for spec in EXTRAS}))
    for spec in EXTRAS:
        assert getattr(settings, spec.key) == spec.default


def test_typed_values_may_arrive_as_text():
    settings = OpseraConnectionSettings.from_connection(
        Conn(
            {
                "timeout": "30",
                "verify": "True",
                "max_retries": " 7 ",
                "page_size": "500.0",
                "concurrency": "2",
            }
        )
    )
    assert (
        settings.timeout,
        settings.verify,
        settings.max_retries,
        settings.page_size,
        settings.concurrency,
    ) == (
        30.0,
        True,
        7,
        500,
        2,
    )
    assert OpseraConnectionSettings.from_connection(Conn({"verify": "FALSE"})).verify is False


def test_verify_takes_an_existing_ca_bundle_path(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert OpseraConnectionSettings.from_connection(Conn({"verify": str(bundle)})).verify == str(bundle)
    with pytest.raises(OpseraConnectionError, match="neither true/false nor an existing CA bundle") as err:
        OpseraConnectionSettings.from_connection(Conn({"verify": str(tmp_path / "missing.pem")}))
    assert err.value.conn_id == "c1" and "c1" not in err.value.problem


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"timeout": 0}, r"'timeout'=0 is out of range \(0.1 to 3600; default 60.0\)"),
        ({"max_retries": 101}, r"'max_retries'=101 is out of range \(0 to 100"),
        ({"max_retries": True}, "'max_retries'=True must be a whole number"),
        ({"page_size": "12.5"}, "must be a whole number"),
        ({"concurrency": "lots"}, "must be a whole number"),
        ({"retry_min_wait": -1}, "'retry_min_wait'=-1 is out of range"),
        ({"verify": 3}, "must be true, false or the path of a CA bundle"),
    ],
)
def test_bad_extras_name_the_extra_and_its_range(extra, message):
    with pytest.raises(OpseraConnectionError, match=message) as err:
        OpseraConnectionSettings.from_connection(Conn(extra))
    assert str(err.value).startswith("Connection 'c1': extra ")


# -- one table: form, parsing, README ----------------------------------------------------------------------
def test_the_form_fields_follow_the_settings_table():
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    assert list(fields) == [spec.key for spec in EXTRAS]
    for spec in EXTRAS:
        schema = fields[spec.key]["schema"]
        assert fields[spec.key]["label"] == spec.label
        assert schema.get("minimum") == spec.minimum and schema.get("maximum") == spec.maximum
        assert "null" in schema["type"]
    # true/false-or-path as one text input (a boolean|string union renders as a tall multi-type textarea)
    assert fields["verify"]["schema"]["type"] == ["string", "null"]
    assert fields["timeout"]["schema"]["minimum"] == 0.1  # the form and the parser agree (was 1 vs 0.001)
    assert fields["max_retries"]["schema"]["maximum"] == 100  # bounded in the form as in the parser
    placeholder = json.loads(conn_type["ui-field-behaviour"]["placeholders"]["extra"])
    assert placeholder == {spec.key: spec.default for spec in EXTRAS}


def test_every_bound_in_the_form_is_what_the_parser_accepts():
    for spec in EXTRAS:
        if spec.minimum is not None:
            assert OpseraConnectionSettings.from_connection(Conn({spec.key: spec.minimum}))
            with pytest.raises(OpseraConnectionError):
                OpseraConnectionSettings.from_connection(Conn({spec.key: spec.minimum - 0.01}))
        if spec.maximum is not None:
            assert OpseraConnectionSettings.from_connection(Conn({spec.key: spec.maximum}))
            with pytest.raises(OpseraConnectionError):
                OpseraConnectionSettings.from_connection(Conn({spec.key: spec.maximum + 1}))


def test_the_readme_table_is_the_settings_table():
    readme = (ROOT / "README.md").read_text()
    assert extras_markdown() in readme, "README's extras table is stale: paste extras_markdown()'s output"


def test_the_providers_page_links_the_documentation():
    assert get_provider_info()["documentation-url"].startswith("https://")


# -- the Test button ------------------------------------------------------------------------------------------
def ui_test(host: str, password: str, extra: dict | None = None) -> tuple[bool, str, float]:
    """What the UI's Test button does: a transient connection under a random id, exported as a URI."""
    from airflow.models.connection import Connection

    conn = Connection(
        conn_id=secrets.token_hex(8),
        conn_type="opsera",
        host=host,
        password=password,
        extra=json.dumps(FORM_UNTOUCHED if extra is None else extra),
    )
    var = f"AIRFLOW_CONN_{conn.conn_id.upper()}"
    import os

    os.environ[var] = conn.get_uri()
    try:
        started = time.monotonic()
        ok, message = conn.test_connection()
        return ok, message, time.monotonic() - started
    finally:
        os.environ.pop(var, None)


def one_sentence(message: str) -> None:
    assert message.count(". ") == 0 and message.endswith("."), message
    assert len(message) < 600, message


def test_a_good_token_reads_all_four_log_types(sim):
    ok, message, _ = ui_test(sim.url, sim.token)
    assert ok, message
    assert message.startswith(f"Connected to {sim.url} in ")
    assert "all four log types (user_activity, audit, token_activity, pipeline_activity)" in message
    assert sim.request_count() == 4  # one tiny call per log type
    one_sentence(message)


def test_a_closed_port_answers_within_seconds_in_one_sentence(monkeypatch):
    port = closed_port()
    # The form's defaults (5 retries, 60 s timeout) must not apply to the test: one attempt each.
    ok, message, took = ui_test(f"http://127.0.0.1:{port}", "tok")
    assert not ok
    assert message == (
        f"Cannot reach Opsera at http://127.0.0.1:{port}: connection refused (nothing listens at that address "
        "and port)."
    )
    assert took < 5, took


def test_a_host_that_does_not_resolve_says_dns():
    ok, message, took = ui_test("https://no-such-host.invalid", "tok")
    assert not ok
    assert (
        message
        == "Cannot reach Opsera at https://no-such-host.invalid: the host name does not resolve (DNS)."
    )
    assert took < 15


def test_a_wrong_token_is_one_sentence_without_the_temporary_conn_id(sim):
    ok, message, _ = ui_test(sim.url, "not-a-token")
    assert not ok
    assert message == (
        f"Opsera at {sim.url} rejected the API token (HTTP 401): use a valid, unexpired personal access token "
        'with the "API Access" or "Security Logs (Read Only)" scope.'
    )
    assert "Connection '" not in message


def test_a_read_only_token_says_exactly_what_it_can_read(sim):
    sim.add_token("read-only-token", scopes=("api-readonly",), role="auditor")
    ok, message, _ = ui_test(sim.url, "read-only-token")
    assert ok, message
    assert message.startswith(f"Connected to {sim.url} in ")
    assert message.endswith(
        "the token can read audit, but not user_activity, token_activity, pipeline_activity "
        '(user_activity, token_activity, pipeline_activity: HTTP 403, it needs "API Access" or "Security Logs '
        '(Read Only)" scope and an owner who is one of: Site Admins and Power Users).'
    )


def test_a_bad_extra_is_reported_without_the_temporary_conn_id():
    ok, message, _ = ui_test("http://127.0.0.1:1", "tok", {"page_size": 5000})
    assert not ok
    assert message == (
        "The connection cannot be used: extra 'page_size'=5000 is out of range (1 to 1000; default 1000)."
    )


def test_a_401_names_the_scopes_and_roles_a_new_token_needs(sim, monkeypatch):
    use(monkeypatch, sim.url, "expired", {"max_retries": 0})
    with pytest.raises(OpseraAuthError, match="HTTP 401") as err:
        OpseraHook().get_logs("user_activity", {"date": "2024-05-10"})
    assert '"API Access" or "Security Logs (Read Only)" scope' in str(err.value)
    assert "Site Admins and Power Users" in str(err.value)
    assert isinstance(err.value, OpseraError)
