"""Cluster CA, node certificates, revocation, and the mutual-TLS contexts.

A cluster is a CA. ``init_cluster`` makes its key and self-signed certificate
(plus an empty CRL); ``issue_node`` signs a node certificate good for both TLS
client and server use; ``revoke`` adds a certificate to the CRL. Identities:

- a node's id is the SHA-256 fingerprint of its certificate (DER), hex;
- a cluster's id is the fingerprint of its CA certificate.

Peers dial each other by address, and node certificates do not name addresses,
so hostname checking is off: a peer is authenticated by its chain to the
cluster CA (and the CRL), and identified by its fingerprint, which the hello
frame must repeat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgestate.errors import ClusterCAError
from edgestate.files import write_private
from edgestate.sync.config import TLSFiles

log = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CRL = "crl.pem"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this node is in its cluster."""

    node_id: str
    cluster_id: str


def fingerprint(cert_der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex: node and cluster ids."""
    return hashlib.sha256(cert_der).hexdigest()


def cert_not_after(cert_der: bytes) -> float:
    """When a DER certificate expires (its notAfter), as wall-clock seconds."""
    return x509.load_der_x509_certificate(cert_der).not_valid_after_utc.timestamp()


def file_not_after(path: Path) -> float:
    """When the PEM certificate at ``path`` expires (ClusterCAError if unreadable)."""
    return _load_cert(path).not_valid_after_utc.timestamp()


def init_cluster(directory: Path, *, name: str = "edgestate cluster", days: int = 3650) -> str:
    """Create a cluster CA (key, certificate, empty CRL) in ``directory``; return its id.

    Refuses to overwrite an existing CA: that would orphan every issued node.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        raise ClusterCAError(f"{directory} already holds a cluster CA; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / CA_KEY, key)
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_crl(directory, key, cert, [])
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def issue_node(
    ca_dir: Path,
    node: str,
    out_dir: Path,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    replace: bool = False,
) -> Identity:
    """Issue ``out_dir/NODE.pem`` and ``NODE.key`` signed by the CA in ``ca_dir``.

    The CA certificate and CRL are copied beside them, so ``out_dir`` is all a
    node needs (see ``files_for``). ``not_before`` exists for tests of expiry.

    Refuses to overwrite an existing ``NODE.pem`` or ``NODE.key`` unless
    ``replace``: a new key means a new fingerprint, so the running node would get
    a new node id and its peers would see a stranger.
    """
    if not replace:
        _refuse_reissue(out_dir, node)
    ca_key, ca_cert = _load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_key(out_dir / f"{node}.key", key)
    (out_dir / f"{node}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if out_dir.resolve() != ca_dir.resolve():
        (out_dir / CA_CERT).write_bytes((ca_dir / CA_CERT).read_bytes())
        (out_dir / CRL).write_bytes((ca_dir / CRL).read_bytes())
    return Identity(
        fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        fingerprint(ca_cert.public_bytes(serialization.Encoding.DER)),
    )


def _refuse_reissue(out_dir: Path, node: str) -> None:
    cert, key = out_dir / f"{node}.pem", out_dir / f"{node}.key"
    held = [p for p in (cert, key) if p.exists()]
    if not held:
        return
    try:
        current = (
            f" (node id {fingerprint(_load_cert(cert).public_bytes(serialization.Encoding.DER))})"
        )
    except ClusterCAError:
        current = ""  # a key without a readable certificate: still refuse
    raise ClusterCAError(
        f"{held[0]} already exists{current}; re-issuing gives node {node!r} a new key and "
        "so a new node id. Pass --replace to re-issue it deliberately"
    )


def files_for(directory: Path, node: str) -> TLSFiles:
    """The TLSFiles of ``node`` as ``issue_node`` laid them out in ``directory``."""
    crl = directory / CRL
    return TLSFiles(
        ca_cert=directory / CA_CERT,
        cert=directory / f"{node}.pem",
        key=directory / f"{node}.key",
        crl=crl if crl.exists() else None,
    )


def revoke(ca_dir: Path, cert_path: Path) -> str:
    """Add the certificate at ``cert_path`` to the CA's CRL; return its fingerprint.

    Nodes read the CRL when their TLS contexts are made: copy the new
    ``crl.pem`` to each node and restart its sync daemon.
    """
    ca_key, ca_cert = _load_ca(ca_dir)
    cert = _load_cert(cert_path)
    crl = x509.load_pem_x509_crl((ca_dir / CRL).read_bytes())
    serials = [entry.serial_number for entry in crl]
    if cert.serial_number not in serials:
        serials.append(cert.serial_number)
    _write_crl(ca_dir, ca_key, ca_cert, serials)
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def load_identity(files: TLSFiles) -> Identity:
    """Read this node's id and cluster id from its certificate files."""
    cert = _load_cert(files.cert)
    ca = _load_cert(files.ca_cert)
    return Identity(
        fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        fingerprint(ca.public_bytes(serialization.Encoding.DER)),
    )


def server_context(
    files: TLSFiles, on_refused: Callable[[str], None] | None = None
) -> ssl.SSLContext:
    """TLS context for accepting peers: a certificate from our CA is required.

    ``on_refused`` is called with the reason of every failed handshake (no
    certificate, another CA, expired, revoked): asyncio only logs those in debug
    mode, and a refused peer must be logged and counted.
    """
    # A bare context, not create_default_context: that loads the system's public
    # roots, and the cluster CA must be the only one trusted.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    _configure(ctx, files)
    if on_refused is not None:
        ctx.sslobject_class = _refusal_reporting_class(on_refused)
    return ctx


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """TLS context for dialing peers: presents our certificate, requires theirs."""
    # Not create_default_context: it trusts the system's ~140 public roots too, so
    # any server with, say, a web PKI certificate would pass as a cluster member.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # identity is the CA chain plus fingerprint, see above
    ctx.verify_mode = ssl.CERT_REQUIRED
    _configure(ctx, files)
    return ctx


def _configure(ctx: ssl.SSLContext, files: TLSFiles) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(files.cert, files.key)
        ctx.load_verify_locations(cafile=str(files.ca_cert))
        if files.crl is not None:
            ctx.load_verify_locations(cafile=str(files.crl))
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    except (OSError, ssl.SSLError) as exc:
        raise ClusterCAError(
            f"cannot load cluster TLS material ({exc}); issue it with `edgestate cluster issue`"
        ) from exc


def _refusal_reporting_class(on_refused: Callable[[str], None]) -> type[ssl.SSLObject]:
    class _ReportingSSLObject(ssl.SSLObject):
        _reported = False

        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                # asyncio may retry a failed handshake step; report a peer once.
                if not self._reported:
                    self._reported = True
                    on_refused(getattr(exc, "verify_message", None) or exc.reason or str(exc))
                raise

    return _ReportingSSLObject


def _load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ClusterCAError(
            f"no usable cluster CA key in {ca_dir} ({exc}); run `edgestate cluster init`"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ClusterCAError(f"{ca_dir / CA_KEY} is not an EC key")
    return key, _load_cert(ca_dir / CA_CERT)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ClusterCAError(f"cannot read certificate {path}: {exc}") from exc


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data, replace=True)


def _write_crl(
    ca_dir: Path, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, serials: list[int]
) -> None:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        # Long-lived: an outdated CRL fails every handshake, and revocations are
        # pushed by re-issuing this file, not by its expiry.
        .next_update(now + dt.timedelta(days=3650))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(key, hashes.SHA256())
    (ca_dir / CRL).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
