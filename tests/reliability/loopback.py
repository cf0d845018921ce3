"""Small real HTTP(S) servers on loopback for what the simulator does not do: redirects, echoing the request's
headers back in error bodies, and TLS with a self-signed certificate."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import pathlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    """One request a loopback server received."""

    host: str
    path: str
    headers: dict[str, str]


@dataclass
class Behaviour:
    """What the server answers: ``ok`` (an empty page), ``echo`` (``status`` with the request's headers in the
    body and in a response header), ``redirect`` (302 to ``location`` + the request's path and query), or
    ``trickle`` (an empty page sent one byte every ``pause`` seconds, ``size`` bytes long)."""

    mode: str = "ok"
    pause: float = 0.1
    size: int = 30
    status: int = 500
    location: str = ""
    seen: list[Seen] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        b.seen.append(Seen(self.headers.get("Host", ""), self.path, dict(self.headers.items())))
        if b.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", b.location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if b.mode == "echo":
            echoed = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
            body = f"<html><body><h1>{b.status}</h1><pre>You sent:\n{echoed}</pre></body></html>".encode()
            self.send_response(b.status)
            self.send_header("Content-Type", "text/html")
            self.send_header("X-Echo-Authorization", self.headers.get("Authorization", ""))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"count": 0, "data": []}).encode()
        if b.mode == "trickle":
            body = body.ljust(b.size)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(b.pause)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """A threaded HTTP server (HTTPS with ``tls``) on ``host``, answering every GET per its ``behaviour``."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = Behaviour()
        self.server = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self.server.behaviour = self.behaviour  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: pathlib.Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, pathlib.Path]:
    """A server TLS context with a fresh self-signed certificate for ``host``, and the certificate's path
    (a CA bundle that trusts it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
