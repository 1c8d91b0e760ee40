"""NATS's own TLS and credentials for tests and benchmarks: real material, loopback.

    tls = make_nats_tls(tmp / "nats-tls")        # CA, server cert (127.0.0.1), client cert
    NatsServer(dir, conf=tls.server_conf())      # tls { ..., verify: true }
    seed, public = make_nkey_user(tmp / "nk")    # an nkey user: its seed file, its U... key
    chain = make_operator_chain(tmp / "jwt")     # operator -> account -> user JWTs, a .creds

Certificates come from ``cryptography``'s X.509 builder, nkeys from the
``nkeys`` package (Ed25519 via PyNaCl), so nothing here signs by hand; the JWTs
are the NATS v2 claim layout that ``nsc`` writes, signed with those nkeys.
Nothing here is for production use (no key protection beyond 0600 files).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Test material outlives no test run; two days leaves room for clock skew.
VALID_DAYS = 2


@dataclass(frozen=True, slots=True)
class NatsTLS:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_conf(self, *, verify: bool = True) -> str:
        """The nats-server ``tls {}`` block: our certificate; with ``verify``,
        clients must present one issued by the CA."""
        return (
            "tls {\n"
            f'  cert_file: "{self.server_cert}"\n'
            f'  key_file: "{self.server_key}"\n'
            f'  ca_file: "{self.ca_cert}"\n'
            f"  verify: {'true' if verify else 'false'}\n"
            "  timeout: 5\n"
            "}\n"
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Path:
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_nats_tls(directory: Path, *, name: str = "nats test ca") -> NatsTLS:
    """Issue a fresh CA and its server (SAN 127.0.0.1, localhost) and client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.pem", ca_key, ca)

    def leaf(common_name: str, usage: x509.ObjectIdentifier, san: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        path = _write(directory / f"{common_name}.pem", key, builder.sign(ca_key, hashes.SHA256()))
        return path, path.with_suffix(".key")

    server_cert, server_key = leaf("server", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_cert, client_key = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    return NatsTLS(
        directory / "ca.pem", directory / "ca.key", server_cert, server_key, client_cert, client_key
    )


def _keypair(prefix: int) -> Any:
    """A fresh nkey pair of one kind (operator, account, user)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def make_nkey_user(directory: Path) -> tuple[Path, str]:
    """A new nkey user: (its seed file, 0600; its public key ``U...`` for the server)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = _keypair(nkeys.PREFIX_BYTE_USER)
    seed = directory / "user.nk"
    seed.write_bytes(pair.seed + b"\n")
    seed.chmod(0o600)
    return seed, str(pair.public_key.decode())


@dataclass(frozen=True, slots=True)
class OperatorChain:
    """Decentralized NATS auth: the server trusts an operator, which signed an
    account (JetStream enabled), which signed the user of ``creds``."""

    server_conf: str
    creds: Path
    account: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: Any, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims = {
        "jti": _b64(os.urandom(24)),
        "iat": int(time.time()) - 60,
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": nats,
    }
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


def make_operator_chain(directory: Path, *, user: str = "edge-node") -> OperatorChain:
    """An operator, an account with JetStream, a user of it, and that user's
    ``.creds`` file; ``server_conf`` makes a server trust them (memory resolver)."""
    directory.mkdir(parents=True, exist_ok=True)
    operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    # JetStream needs the server's system account (its internal subscriptions).
    system = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    member = _keypair(nkeys.PREFIX_BYTE_USER)
    op_pub, acc_pub = operator.public_key.decode(), account.public_key.decode()
    sys_pub = system.public_key.decode()
    unlimited = {"subs": -1, "data": -1, "payload": -1, "conn": -1, "leaf": -1}
    op_jwt = _jwt(
        operator,
        op_pub,
        "edgestate-test",
        {"system_account": sys_pub, "type": "operator", "version": 2},
    )
    sys_jwt = _jwt(
        operator,
        sys_pub,
        "SYS",
        {
            "limits": unlimited | {"imports": -1, "exports": -1, "wildcards": True},
            "type": "account",
            "version": 2,
        },
    )
    acc_jwt = _jwt(
        operator,
        acc_pub,
        "edge",
        {
            "limits": unlimited
            | {
                "imports": -1,
                "exports": -1,
                "wildcards": True,
                "mem_storage": -1,
                "disk_storage": -1,
                "streams": -1,
                "consumer": -1,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        },
    )
    user_jwt = _jwt(
        account,
        member.public_key.decode(),
        user,
        {"pub": {}, "sub": {}} | unlimited | {"type": "user", "version": 2},
    )
    creds = directory / f"{user}.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{member.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    conf = (
        f"operator: {op_jwt}\n"
        f"system_account: {sys_pub}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n  {acc_pub}: {acc_jwt}\n  {sys_pub}: {sys_jwt}\n}}\n"
    )
    return OperatorChain(conf, creds, acc_pub)
