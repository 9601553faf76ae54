"""server/tls.py: the self-signed certificate made on first start, reused after."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from spitfire.server.tls import CERTIFICATE_VALIDITY, ensure_certificate


def test_generates_a_pair_with_private_key_mode_and_loopback_names(tmp_path: Path) -> None:
    tls_dir = tmp_path / "data" / "tls"
    cert_path, key_path = ensure_certificate(tls_dir, hostname="worker-1.example")
    assert (cert_path, key_path) == (tls_dir / "cert.pem", tls_dir / "key.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert not list(tls_dir.glob(".*.tmp"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "worker-1.example"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime >= CERTIFICATE_VALIDITY
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_reuses_a_valid_pair(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path)
    before = cert_path.read_bytes(), key_path.read_bytes()
    assert ensure_certificate(tmp_path) == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_replaces_a_corrupt_or_mismatched_pair(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path)
    key_path.write_bytes(b"not a key")
    ensure_certificate(tmp_path)
    first_cert = cert_path.read_bytes()
    assert b"PRIVATE KEY" in key_path.read_bytes()

    other = tmp_path / "other"
    _, other_key = ensure_certificate(other)
    key_path.write_bytes(other_key.read_bytes())  # a key that does not match the certificate
    ensure_certificate(tmp_path)
    assert cert_path.read_bytes() != first_cert


def test_replaces_an_expired_certificate(tmp_path: Path) -> None:
    cert_path, _ = ensure_certificate(tmp_path)
    first = cert_path.read_bytes()
    later = dt.datetime.now(dt.UTC) + CERTIFICATE_VALIDITY + dt.timedelta(days=1)
    ensure_certificate(tmp_path, now=later)
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert_path.read_bytes() != first
    assert renewed.not_valid_before_utc <= later <= renewed.not_valid_after_utc


def test_an_ip_host_name_becomes_an_ip_san(tmp_path: Path) -> None:
    cert_path, _ = ensure_certificate(tmp_path, hostname="10.1.2.3")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in sans.get_values_for_type(x509.IPAddress)
