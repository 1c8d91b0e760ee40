"""Sealed NATS messages: every message proves its sender is a member of our cluster.

NATS credentials only get a client onto the NATS servers; anyone holding them
(another cluster sharing the servers, a leaked password) could publish on our
subjects. So each message is an envelope ``[1, sender, signature, body]``
(msgpack): ``body`` is one encoded sync frame (``edgestate.sync.frames``),
``sender`` the SHA-256 fingerprint of the sender's node certificate, and
``signature`` its ECDSA P-256 signature (the node's cluster TLS key) over the
subject and the body, so a message cannot be moved to another document's subject
either. Receivers verify the certificate once (issued by our cluster CA, in its
validity window, not revoked, not a CA) and cache it by fingerprint; certificates
travel in a JetStream stream of their own (``NatsLink``), so a receiver can check
a message whose sender is offline. The signature costs ~110 bytes per message;
the publisher coalesces updates, so it is paid per batch, not per update.

In insecure (development) mode there are no keys: ``sender`` is the node id and
the signature empty, and only an insecure receiver accepts such messages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgestate.errors import MalformedFrameError, PeerRefusedError
from edgestate.sync.config import TLSFiles
from edgestate.sync.tls import fingerprint

ENVELOPE_VERSION = 1
# Fingerprints (32 bytes) or insecure node ids (see frame_fields.ID_PATTERN, <= 128 chars).
MAX_SENDER_BYTES = 128
# A DER ECDSA P-256 signature is at most 72 bytes.
MAX_SIGNATURE_BYTES = 80
# Certificates kept verified (or refused) by fingerprint: far more than any
# cluster's nodes, bounded so a flood of fake senders cannot grow memory.
MAX_CACHED_CERTS = 16384


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified message: who sent it and the frame bytes it carries."""

    sender: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that is not a member's: dropped, counted, logged once per sender."""

    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class NeedCert:
    """A message from a sender whose certificate this node has not seen yet."""

    sender: str


class Sealer:
    """Seals this node's messages (signs them with its cluster key, if it has one)."""

    def __init__(self, files: TLSFiles | None, node_id: str) -> None:
        self.node_id = node_id
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.cert_der: bytes | None = None
        self._sender: bytes | str = node_id
        if files is not None:
            key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PeerRefusedError(f"{files.key} is not an EC key of a cluster node")
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            self._key = key
            self.cert_der = cert.public_bytes(serialization.Encoding.DER)
            self._sender = bytes.fromhex(fingerprint(self.cert_der))

    def seal(self, subject: str, body: bytes) -> bytes:
        """The envelope of ``body`` published on ``subject``."""
        signature = b""
        if self._key is not None:
            signature = self._key.sign(_signed(subject, body), ec.ECDSA(hashes.SHA256()))
        packed: bytes = msgpack.packb(
            [ENVELOPE_VERSION, self._sender, signature, body], use_bin_type=True
        )
        return packed


class Verifier:
    """Opens envelopes, admitting only members of our cluster."""

    def __init__(self, files: TLSFiles | None) -> None:
        self._ca: x509.Certificate | None = None
        self._revoked: frozenset[int] = frozenset()
        if files is not None:
            self._ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
            if files.crl is not None and files.crl.exists():
                crl = x509.load_pem_x509_crl(files.crl.read_bytes())
                self._revoked = frozenset(entry.serial_number for entry in crl)
        self._known: dict[str, ec.EllipticCurvePublicKey] = {}
        # Fingerprint -> why it was refused (logged once per sender).
        self.refused: dict[str, str] = {}

    @property
    def secure(self) -> bool:
        """Whether messages must be signed by a cluster member."""
        return self._ca is not None

    def open(self, subject: str, data: bytes) -> Opened | NeedCert | Refused:
        """Check one envelope: Opened if a member sealed it, NeedCert if the sender's
        certificate must be learned first, Refused if not a member's.
        MalformedFrameError if it is no envelope at all."""
        sender_raw, signature, body = _parse(data)
        shown = sender_raw.hex() if isinstance(sender_raw, bytes) else sender_raw
        if self._ca is None:
            if signature or not isinstance(sender_raw, str):
                return Refused(shown, "a signed message reached an insecure node")
            return Opened(sender_raw, body)
        if not isinstance(sender_raw, bytes) or len(sender_raw) != 32 or not signature:
            return Refused(shown, "an unsigned message (an insecure node, or no member)")
        sender = sender_raw.hex()
        if sender in self.refused:
            return Refused(sender, self.refused[sender])
        key = self._known.get(sender)
        if key is None:
            return NeedCert(sender)
        try:
            key.verify(signature, _signed(subject, body), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            # Not cached as refused: anyone can forge a member's fingerprint.
            return Refused(sender, f"bad signature on a message claiming to be {sender[:16]}")
        return Opened(sender, body)

    def learn(self, sender: str, cert_der: bytes) -> None:
        """Verify ``sender``'s certificate and remember it; PeerRefusedError if it is
        not a valid member certificate of our cluster (remembered too)."""
        try:
            self._known[sender] = self._check(sender, cert_der)
        except PeerRefusedError as exc:
            if len(self.refused) >= MAX_CACHED_CERTS:
                self.refused.pop(next(iter(self.refused)))
            self.refused[sender] = str(exc)
            raise
        if len(self._known) > MAX_CACHED_CERTS:
            self._known.pop(next(iter(self._known)))

    def _check(self, sender: str, cert_der: bytes) -> ec.EllipticCurvePublicKey:
        assert self._ca is not None
        if fingerprint(cert_der) != sender:
            raise PeerRefusedError(f"the certificate published for {sender[:16]} is not its own")
        try:
            cert = x509.load_der_x509_certificate(cert_der)
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            why = str(exc) or type(exc).__name__
            raise PeerRefusedError(
                f"node {sender[:16]} holds a certificate not issued by our cluster CA ({why})"
            ) from None
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PeerRefusedError(
                f"the certificate of node {sender[:16]} is expired or not valid yet"
            )
        if cert.serial_number in self._revoked:
            raise PeerRefusedError(f"the certificate of node {sender[:16]} is revoked")
        try:
            if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise PeerRefusedError(f"{sender[:16]} is a CA certificate, not a node's")
        except x509.ExtensionNotFound:
            pass
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise PeerRefusedError(f"the certificate of node {sender[:16]} has no EC key")
        return key


def _signed(subject: str, body: bytes) -> bytes:
    return subject.encode() + b"\0" + body


def _parse(data: bytes) -> tuple[Any, bytes, bytes]:
    try:
        item = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedFrameError(f"NATS message is not a sealed envelope: {exc}") from None
    if (
        not isinstance(item, list)
        or len(item) != 4
        or item[0] != ENVELOPE_VERSION
        or not isinstance(item[1], (bytes, str))
        or not isinstance(item[2], bytes)
        or not isinstance(item[3], bytes)
        or len(item[1]) > MAX_SENDER_BYTES
        or len(item[2]) > MAX_SIGNATURE_BYTES
    ):
        raise MalformedFrameError("NATS message is not a sealed envelope of version 1")
    return item[1], item[2], item[3]
