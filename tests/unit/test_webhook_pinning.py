"""The pinned connection: the request goes to the checked address while the Host header, TLS
SNI and certificate check keep the URL's name (a real server on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from genq.webhooks.ssrf import Target, pinned_transport

NAME = "hooks.example"


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        sni = getattr(self.connection, "genq_sni", None)
        Recorder.seen.append({"host": self.headers.get("host"), "sni": sni})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for NAME, written as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genq test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_port() -> Iterator[int]:
    Recorder.seen = []
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), Recorder))


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    Recorder.seen = []
    ca_path, cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)

    def remember_sni(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.genq_sni = name  # type: ignore[attr-defined]

    server_context.sni_callback = remember_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    client_context = ssl.create_default_context(cafile=str(ca_path))
    for port in _serve(server):
        yield port, client_context


def test_http_goes_to_the_pinned_address_with_the_original_host(http_port: int) -> None:
    url = f"http://{NAME}:{http_port}/hook"
    target = Target(url=httpx.URL(url), host=NAME, port=http_port, address="127.0.0.1")
    with httpx.Client(transport=pinned_transport(target), trust_env=False) as client:
        assert client.post(url, content=b"{}").status_code == 204
    assert Recorder.seen == [{"host": f"{NAME}:{http_port}", "sni": None}]


def test_https_keeps_sni_and_certificate_check_on_the_name(
    tls: tuple[int, ssl.SSLContext],
) -> None:
    port, context = tls
    url = f"https://{NAME}:{port}/hook"
    target = Target(url=httpx.URL(url), host=NAME, port=port, address="127.0.0.1")
    with httpx.Client(transport=pinned_transport(target, context), trust_env=False) as client:
        assert client.post(url, content=b"{}").status_code == 204
    assert Recorder.seen == [{"host": f"{NAME}:{port}", "sni": NAME}]


def test_https_certificate_for_another_name_is_refused(tls: tuple[int, ssl.SSLContext]) -> None:
    port, context = tls
    url = f"https://other.example:{port}/hook"
    target = Target(url=httpx.URL(url), host="other.example", port=port, address="127.0.0.1")
    with (
        httpx.Client(transport=pinned_transport(target, context), trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="certificate"),
    ):
        client.post(url, content=b"{}")
    assert Recorder.seen == []


def test_a_pinned_transport_reaches_no_other_host(http_port: int) -> None:
    target = Target(
        url=httpx.URL(f"http://{NAME}:{http_port}/"), host=NAME, port=http_port, address="127.0.0.1"
    )
    with (
        httpx.Client(transport=pinned_transport(target), trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="pinned"),
    ):
        client.post(f"http://elsewhere.example:{http_port}/", content=b"{}")
    assert Recorder.seen == []
