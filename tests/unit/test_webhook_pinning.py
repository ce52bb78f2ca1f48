"""The pinned connection: the request goes to the checked address while the Host header, TLS
SNI and certificate check keep the URL's name (a real server on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from genq.webhooks.ssrf import Target, pinned_transport
from tests.fakes.webhook_receiver import WebhookReceiver

NAME = "hooks.example"


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


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, ssl.SSLContext]]:
    """An HTTPS receiver with a certificate for NAME, and a client context trusting its CA."""
    ca_path, cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    with WebhookReceiver(tls=server_context) as server:
        yield server, ssl.create_default_context(cafile=str(ca_path))


def seen(receiver: WebhookReceiver) -> list[tuple[str, str | None]]:
    """The Host header and TLS server name of each request the receiver got."""
    return [(hit.headers["host"], hit.sni) for hit in receiver.hits()]


def test_http_goes_to_the_pinned_address_with_the_original_host(
    receiver: WebhookReceiver,
) -> None:
    port = receiver.port
    url = f"http://{NAME}:{port}/hook"
    target = Target(url=httpx.URL(url), host=NAME, port=port, address="127.0.0.1")
    with httpx.Client(transport=pinned_transport(target), trust_env=False) as client:
        assert client.post(url, content=b"{}").status_code == 200
    assert seen(receiver) == [(f"{NAME}:{port}", None)]


def test_https_keeps_sni_and_certificate_check_on_the_name(
    tls: tuple[WebhookReceiver, ssl.SSLContext],
) -> None:
    receiver, context = tls
    url = f"https://{NAME}:{receiver.port}/hook"
    target = Target(url=httpx.URL(url), host=NAME, port=receiver.port, address="127.0.0.1")
    with httpx.Client(transport=pinned_transport(target, context), trust_env=False) as client:
        assert client.post(url, content=b"{}").status_code == 200
    assert seen(receiver) == [(f"{NAME}:{receiver.port}", NAME)]


def test_https_certificate_for_another_name_is_refused(
    tls: tuple[WebhookReceiver, ssl.SSLContext],
) -> None:
    receiver, context = tls
    url = f"https://other.example:{receiver.port}/hook"
    target = Target(
        url=httpx.URL(url), host="other.example", port=receiver.port, address="127.0.0.1"
    )
    with (
        httpx.Client(transport=pinned_transport(target, context), trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="certificate"),
    ):
        client.post(url, content=b"{}")
    assert seen(receiver) == []


def test_a_pinned_transport_reaches_no_other_host(receiver: WebhookReceiver) -> None:
    port = receiver.port
    target = Target(
        url=httpx.URL(f"http://{NAME}:{port}/"), host=NAME, port=port, address="127.0.0.1"
    )
    with (
        httpx.Client(transport=pinned_transport(target), trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="pinned"),
    ):
        client.post(f"http://elsewhere.example:{port}/", content=b"{}")
    assert seen(receiver) == []
