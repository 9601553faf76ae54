"""The server's TLS identity for QUIC: a certificate and key in ``<data-dir>/tls/``, made on first start.

QUIC is always TLS 1.3. Unless the operator gives ``--tls-cert/--tls-key``, the server calls
`ensure_certificate` on start-up: it reuses ``tls/cert.pem`` and ``tls/key.pem`` when both load
and belong together (and the certificate is still valid), and otherwise writes a fresh
self-signed pair:

- key: ECDSA P-256 (every TLS 1.3 stack and every SDK runtime can verify it; aioquic signs with
  ECDSA_SECP256R1_SHA256), PKCS#8 PEM, unencrypted, file mode 0600;
- certificate: self-signed, valid from one hour ago (clock skew) for `CERTIFICATE_VALIDITY`,
  subject alternative names ``localhost``, ``127.0.0.1``, ``::1`` and this machine's host name,
  a leaf (not a CA) for server authentication.

Both files are written atomically (temporary file, fsync, rename, directory fsync) so a crash
leaves either the old pair or the new one; the key is renamed into place before the certificate,
and a certificate that does not match the key is regenerated, so a crash between the two renames
heals on the next start. Clients trust the certificate by passing ``cert.pem`` as their CA file;
the SDKs accept it without one only on loopback addresses (README.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("spitfire.server.tls")

#: File names inside the TLS directory.
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
#: How long a generated certificate is valid: long enough never to expire under a running server.
CERTIFICATE_VALIDITY = dt.timedelta(days=3650)
#: Backdating of ``not_valid_before``, so that a client whose clock lags a little still accepts it.
CLOCK_SKEW = dt.timedelta(hours=1)
#: Names every generated certificate carries (plus the host name).
DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1", "::1")

#: One DNS label of a host name (RFC 1123); names that do not fit are left out of the SANs.
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class TlsSetupError(RuntimeError):
    """The TLS directory cannot be created or written (the message names the path)."""


def ensure_certificate(
    tls_dir: Path, *, hostname: str | None = None, now: dt.datetime | None = None
) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` of a usable certificate and key in ``tls_dir``.

    Reuses the existing pair when both files load, the key matches the certificate and the
    certificate is valid at ``now``; otherwise generates a new self-signed pair (logging why)
    and writes it atomically, the key with mode 0600. ``hostname`` (default: this machine's) is
    added to the subject alternative names; ``now`` (default: the current UTC time) is a
    parameter so tests can check expiry without waiting.

    :raises TlsSetupError: the directory or the files cannot be written.
    """
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    problem = _existing_pair_problem(cert_path, key_path, now)
    if problem is None:
        return cert_path, key_path
    log.info("generating a self-signed TLS certificate in %s (%s)", tls_dir, problem)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_self_signed(key, hostname or socket.gethostname(), now)
    try:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            mode=0o600,
        )
        _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise TlsSetupError(f"cannot write the TLS certificate to {tls_dir}: {exc}") from exc
    return cert_path, key_path


def build_self_signed(key: ec.EllipticCurvePrivateKey, hostname: str, now: dt.datetime) -> x509.Certificate:
    """A self-signed server certificate for ``key`` naming localhost, loopback and ``hostname``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"spitfire-server {hostname}"[:64])])
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _san_entries(hostname: str) -> list[x509.GeneralName]:
    """localhost, 127.0.0.1, ::1 and ``hostname`` (when it is a valid DNS name or an IP address)."""
    dns = list(DEFAULT_DNS_NAMES)
    ips = [ipaddress.ip_address(a) for a in DEFAULT_IP_ADDRESSES]
    try:
        ip = ipaddress.ip_address(hostname)
    except ValueError:
        labels = hostname.rstrip(".").split(".")
        if hostname and all(_DNS_LABEL.match(label) for label in labels) and hostname.lower() not in dns:
            dns.append(hostname.rstrip("."))
    else:
        if ip not in ips:
            ips.append(ip)
    return [*(x509.DNSName(d) for d in dns), *(x509.IPAddress(i) for i in ips)]


def _existing_pair_problem(cert_path: Path, key_path: Path, now: dt.datetime) -> str | None:
    """None when the pair at these paths is usable; else why not (for the log line)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "none found"
    except (OSError, ValueError, TypeError) as exc:
        return f"the existing pair does not load: {exc}"
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "the existing key does not match the certificate"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "the existing certificate is expired or not yet valid"
    return None


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data``: temporary file with ``mode``, fsync, rename, directory fsync."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow the mode asked for
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
