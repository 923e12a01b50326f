"""The server's TLS certificate: the listener's ``ssl.SSLContext``, reloaded in place on ``SIGHUP``.

The context is made once and handed to uvicorn; :meth:`ServerCertificate.reload` re-runs ``load_cert_chain``
on that same context, so the listening socket stays open and every handshake after the reload presents the
new certificate (an open connection keeps the one it negotiated). The files are first loaded into a scratch
context: a renewed certificate whose key does not match, or a half-written file, leaves the served
certificate as it was (OpenSSL would otherwise install the new certificate before refusing the key).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)


class CertificateError(ValueError):
    """The certificate or key cannot be read, parsed or paired; the message says which file and why."""


@dataclass(frozen=True)
class CertificateInfo:
    """What Ember and ``ember doctor`` need to know of the leaf certificate."""

    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    #: DNS names and IP addresses of the subjectAltName extension, then the subject's common name.
    names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


def read_certificate(cert_file: str | Path) -> CertificateInfo:
    """The first (leaf) certificate of a PEM chain file; :class:`CertificateError` if it cannot be read."""
    path = Path(cert_file)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read the TLS certificate {path}: {exc.strerror or exc}") from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError(f"{path} holds no PEM certificate: {exc}") from None
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return CertificateInfo(
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=tuple(dict.fromkeys(dns + [n for n in cn if n not in ips])),
        ip_addresses=tuple(ips),
    )


def _new_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # uvicorn speaks HTTP/1.1 (and WebSocket over it)
    return context


def _load(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise CertificateError(f"TLS file not found: {exc.filename or (cert_file, key_file)}") from None
    except PermissionError as exc:
        raise CertificateError(
            f"cannot read TLS file {exc.filename or (cert_file, key_file)}: permission denied (the server's "
            "user must be able to read the certificate and the key)"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc).upper():
            reason = "the key does not belong to the certificate"
        raise CertificateError(f"cannot use TLS certificate {cert_file} with key {key_file}: {reason}") from None
    except OSError as exc:
        raise CertificateError(f"cannot read TLS certificate {cert_file} or key {key_file}: {exc}") from None


class ServerCertificate:
    """The certificate and key files the server presents, and the one ``SSLContext`` it listens with."""

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.context = _new_context()
        _load(self.context, self.cert_file, self.key_file)
        self.info = read_certificate(self.cert_file)

    def reload(self) -> CertificateInfo:
        """Read both files again and serve them to new connections; on any problem keep the current ones and
        raise :class:`CertificateError`."""
        _load(_new_context(), self.cert_file, self.key_file)  # checked on a scratch context first
        info = read_certificate(self.cert_file)
        _load(self.context, self.cert_file, self.key_file)
        self.info = info
        return info

    def reload_logged(self) -> None:
        """:meth:`reload` for a signal handler: the outcome goes to the log, a failure is not raised."""
        try:
            info = self.reload()
        except CertificateError as exc:
            log.error("TLS certificate not reloaded, still serving serial %x: %s", self.info.serial, exc)
            return
        log.info(
            "TLS certificate reloaded from %s: serial %x, valid until %s",
            self.cert_file,
            info.serial,
            info.not_after.isoformat(),
        )
