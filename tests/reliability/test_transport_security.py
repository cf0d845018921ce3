"""Where the token could leak on the wire or in errors: redirects to another host, servers that echo the request
back, and TLS verification (on by default; off warns once). Sync hook and async client (the trigger's) alike."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings

import pytest
from loopback import LoopbackServer, self_signed

from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraAuthError, OpseraError
from airflow_provider_opsera.hooks.opsera import OpseraAsyncHook, OpseraHook
from airflow_provider_opsera.hooks.transport import warn_tls_off

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLWZvci10ZXN0cw.Zm9vYmFyYmF6cXV4"
FAST = {"retry_min_wait": 0.001, "retry_max_wait": 0.01, "max_retries": 1, "timeout": 5}


def use(monkeypatch: pytest.MonkeyPatch, url: str, **extra) -> None:
    conn = {"conn_type": "opsera", "host": url, "password": TOKEN, "extra": {**FAST, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))


def sync_call() -> dict:
    hook = OpseraHook()
    try:
        return hook.get_logs("audit", {"page": 1, "page_size": 1})
    finally:
        hook.close()


async def _async_call() -> object:
    async with OpseraAsyncHook("opsera_default") as client:
        return await client.get_page("pipeline_activity", {"range": "1h"})


def async_call() -> object:
    return asyncio.run(_async_call())


CALLS = {"sync": sync_call, "async": async_call}


TLS_OFF = "TLS certificate verification is OFF"


def everything(caplog, capfd, *errors: BaseException) -> str:
    out, err = capfd.readouterr()
    text = caplog.text + out + err
    for e in errors:
        text += f"{e}\n{e!r}\n{vars(e)!r}\n"
        cause = e.__cause__ or e.__context__
        if cause is not None:
            text += f"{cause}\n{cause!r}\n"
    return text


@pytest.fixture(autouse=True)
def debug_everywhere(caplog):
    for name in (None, "urllib3", "requests", "aiohttp", "asyncio", "airflow", "airflow_provider_opsera"):
        caplog.set_level(logging.DEBUG, logger=name)


# -- redirects --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "target_host", ["127.0.0.2", "127.0.0.1"], ids=["other-host", "same-host-other-port"]
)
def test_a_redirect_to_another_host_never_carries_the_token(monkeypatch, caplog, capfd, call, target_host):
    with LoopbackServer(target_host) as target, LoopbackServer() as origin:
        origin.behaviour.mode = "redirect"
        origin.behaviour.location = target.url
        use(monkeypatch, origin.url)
        error = None
        try:
            CALLS[call]()
        except OpseraError as err:  # refusing to follow is fine too
            error = err
        assert origin.behaviour.seen, "the client never called"
        assert origin.behaviour.seen[0].headers.get("Authorization") == f"Bearer {TOKEN}"
        for seen in target.behaviour.seen:
            assert "Authorization" not in seen.headers
            assert TOKEN not in json.dumps(seen.headers) + seen.path
        assert TOKEN not in everything(caplog, capfd, *([error] if error else []))


# -- servers that echo what they got ----------------------------------------------------------------------
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("status", [500, 502, 400, 404, 401, 403, 429])
def test_an_error_body_echoing_the_token_is_redacted(monkeypatch, caplog, capfd, call, status):
    with LoopbackServer() as server:
        server.behaviour.mode, server.behaviour.status = "echo", status
        use(monkeypatch, server.url)
        with pytest.raises(OpseraError) as info:
            CALLS[call]()
        err = info.value
        assert isinstance(err, OpseraAuthError if status in (401, 403) else OpseraAPIError)
        if status not in (401, 403):
            assert "***" in err.body  # the excerpt is there, with the token masked
            assert "You sent" in str(err)
        text = everything(caplog, capfd, err)
        assert TOKEN not in text
        if status in (500, 502, 429):
            assert "retry 1" in text  # the retry was logged, the excerpt in it redacted too


# -- TLS ----------------------------------------------------------------------------------------------------
#: Environment variables through which ``requests`` picks a CA bundle of its own (see the xfail test below).
CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    for name in CA_ENV:
        monkeypatch.delenv(name, raising=False)
    context, cert = self_signed(tmp_path)
    with LoopbackServer(tls=context) as server:
        yield server, cert


def test_tls_verification_is_on_by_default(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps({"conn_type": "opsera", "password": TOKEN}))
    hook = OpseraHook()
    assert hook.settings.verify is True and hook.session.verify is True


@pytest.mark.parametrize("call", list(CALLS))
def test_a_self_signed_certificate_is_refused_by_default(monkeypatch, tls_server, caplog, capfd, call):
    server, _ = tls_server
    conn = {"conn_type": "opsera", "host": server.url, "password": TOKEN, "extra": FAST}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))
    with pytest.raises(OpseraAPIError, match=r"(?i)certificate") as info:
        CALLS[call]()
    assert not server.behaviour.seen, "no request may be sent over an unverified connection"
    assert TOKEN not in everything(caplog, capfd, info.value)


@pytest.mark.parametrize("call", list(CALLS))
def test_a_ca_bundle_path_verifies_without_warning(monkeypatch, tls_server, caplog, capfd, call):
    server, cert = tls_server
    use(monkeypatch, server.url, verify=str(cert))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CALLS[call]()
    assert server.behaviour.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    text = everything(caplog, capfd)
    assert "verification is OFF" not in text
    assert not [w for w in caught if "Insecure" in type(w.message).__name__]


def test_verification_off_warns_once_for_the_sync_hook(monkeypatch, tls_server, caplog, capfd):
    server, _ = tls_server
    warn_tls_off.cache_clear()  # once per process: start this test afresh
    use(monkeypatch, server.url, verify=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # three tasks' hooks in one worker process, several requests each
            sync_call()
            sync_call()
    assert len(server.behaviour.seen) == 6
    logged = caplog.text
    text = everything(caplog, capfd)
    # Logged once: counted in logging's records, or else in the output (Airflow 3.0 sends a line to both).
    assert (logged.count(TLS_OFF) or text.count(TLS_OFF)) == 1
    assert not [w for w in caught if "Insecure" in type(w.message).__name__]
    assert TOKEN not in text


def test_verification_off_warns_once_for_the_async_client(monkeypatch, tls_server, caplog, capfd):
    server, _ = tls_server
    warn_tls_off.cache_clear()  # once per process: start this test afresh
    use(monkeypatch, server.url, verify=False)

    async def poll_several_times() -> None:
        async with OpseraAsyncHook("opsera_default") as client:
            for _ in range(4):
                await client.get_page("pipeline_activity", {"range": "1h"})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(poll_several_times())
    assert len(server.behaviour.seen) == 4
    logged = caplog.text
    text = everything(caplog, capfd)
    # Logged once: counted in logging's records, or else in the output (Airflow 3.0 sends a line to both).
    assert (logged.count(TLS_OFF) or text.count(TLS_OFF)) == 1
    assert not [w for w in caught if "Insecure" in type(w.message).__name__]


@pytest.mark.parametrize("verify", ["ca-bundle", "off"])
def test_the_connection_verify_setting_wins_over_the_environment(monkeypatch, tls_server, verify):
    """Worker images often set REQUESTS_CA_BUNDLE to the system bundle; the connection must still decide."""
    server, cert = tls_server
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    warn_tls_off.cache_clear()
    use(monkeypatch, server.url, verify=str(cert) if verify == "ca-bundle" else False)
    assert sync_call() == {"count": 0, "data": []}


def test_the_connection_test_names_a_tls_failure(monkeypatch, tls_server):
    server, cert = tls_server
    use(monkeypatch, server.url)
    ok, message = OpseraHook().test_connection()
    assert not ok
    assert message.startswith(f"Cannot reach Opsera at {server.url}: TLS failed (")
    assert "TLS failed (self-signed certificate); set extra verify to a CA bundle" in message
    assert TOKEN not in message
    use(monkeypatch, server.url, verify=str(cert))
    ok, message = OpseraHook().test_connection()
    assert ok and "all four log types" in message, message
