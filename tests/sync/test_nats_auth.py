"""NATS's own TLS and credentials against a real nats-server (docs/nats.md, "Authentication").

Each test starts its servers with the TLS or authorization configuration under
test (loopback, temp dirs, free ports): a node with the right material connects
and replicates; one with the wrong material is refused by the server, says why
in its status (``last_error_code``, ``last_error``), keeps serving its LAN, and
keeps retrying.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from edgestate.devkit.nats_auth import make_nats_tls, make_nkey_user, make_operator_chain
from edgestate.devkit.nats_server import NatsServer
from edgestate.store import Set
from edgestate.sync.nats_config import NatsConfig
from tests.sync.conftest import Node, Nodes, eventually
from tests.sync.nats_sites import intruder_link, nats_config, ready, value

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"


def _secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _plain(tmp: Path, url: str, **overrides: object) -> NatsConfig:
    """A link config with no credentials unless ``overrides`` give them."""
    base: dict[str, object] = {"user": None, "password_file": None}
    return nats_config(tmp, [url], **(base | overrides))


async def _refused(node: Node, code: str, seconds: float = 30) -> str:
    """Wait until ``node``'s link reports a failure of ``code``; return its message."""
    link = node.daemon.nats
    assert link is not None
    await eventually(lambda: link.stats.last_error_code == code, seconds)
    assert not link.stats.connected and not link.ready.is_set()
    assert link.stats.last_error is not None
    status = await link.status()
    assert status["last_error_code"] == code and status["connected"] is False
    return link.stats.last_error


async def _replicates(writer: Node, reader: Node, key: str) -> None:
    if not writer.store.has_document(DOC):
        writer.store.create_document(DOC)
    writer.store.batch([Set(DOC, key, b"1")])
    await eventually(lambda: value(reader.store, DOC, key) == b"1", 30)


async def test_tls_with_client_certificates_connects_and_refuses_the_wrong_material(
    nodes: Nodes, tmp_path: Path
) -> None:
    material = make_nats_tls(tmp_path / "nats-tls")
    other = make_nats_tls(tmp_path / "other-tls", name="another ca")
    server = NatsServer(tmp_path / "nats", conf=material.server_conf(verify=True))
    server.start()
    try:
        good: dict[str, object] = {
            "ca_cert": material.ca_cert,
            "cert": material.client_cert,
            "key": material.client_key,
        }
        a = await nodes.start(nats=_plain(tmp_path, server.url, **good))
        b = await nodes.start(nats=_plain(tmp_path, server.url, **good))
        await ready([a, b])
        await _replicates(a, b, "over-tls")

        # No client certificate: the server's verify refuses the handshake.
        no_cert = await nodes.start(nats=_plain(tmp_path, server.url, ca_cert=material.ca_cert))
        reason = await _refused(no_cert, "nats_tls")
        assert "refused our TLS client certificate" in reason, reason
        assert "no client certificate is configured" in reason, reason
        # Trusting another CA: our side refuses the server's certificate.
        wrong_ca: dict[str, object] = {
            "ca_cert": other.ca_cert,
            "cert": other.client_cert,
            "key": other.client_key,
        }
        distrust = await nodes.start([no_cert], nats=_plain(tmp_path, server.url, **wrong_ca))
        reason = await _refused(distrust, "nats_tls")
        assert "is not trusted by sync.nats.ca_cert" in reason and str(other.ca_cert) in reason
        # Both keep serving: their LAN link works, and NATS traffic did not reach them.
        await distrust.daemon.wait_connected(1)
        await _replicates(no_cert, distrust, "over-the-lan")
        assert value(no_cert.store, DOC, "over-tls") is None

        # An intruder holding the NATS client certificate but another cluster's
        # edgestate certificate gets onto the server, and is refused by the nodes.
        await _intruder_is_refused(tmp_path, server.url, a, b, _no_user(good))
    finally:
        await nodes.close()
        server.stop()


def _no_user(extra: Mapping[str, object]) -> dict[str, object]:
    return {"user": None, "password_file": None, **extra}


async def _intruder_is_refused(
    tmp: Path, url: str, ours: Node, member: Node, nats_settings: dict[str, object]
) -> None:
    async with intruder_link(tmp, url, ours.daemon.cluster_id, **nats_settings) as (
        intruder,
        store,
    ):  # NATS let it in
        store.create_document(DOC)
        store.batch([Set(DOC, "evil", b"1")])
        await eventually(lambda: intruder.stats.updates_published >= 1, 30)
        # A member's write published after the intruder's: once here, the
        # intruder's message has been through our consumer.
        await _replicates(member, ours, "after-intruder")
        assert value(ours.store, DOC, "evil") is None
        assert ours.daemon.nats is not None
        assert any(
            "not issued by our cluster CA" in r
            for r in ours.daemon.nats.stats.refused_senders.values()
        )


def _user_password(tmp: Path) -> tuple[str, Mapping[str, object], Mapping[str, object]]:
    conf = 'authorization { user: "edge", password: "right-pw" }\n'
    good = {"user": "edge", "password_file": _secret(tmp / "pw", "right-pw")}
    bad = {"user": "edge", "password_file": _secret(tmp / "bad-pw", "wrong-pw")}
    return conf, good, bad


def _token(tmp: Path) -> tuple[str, Mapping[str, object], Mapping[str, object]]:
    conf = 'authorization { token: "t0ken-for-edge" }\n'
    good = {"token_file": _secret(tmp / "token", "t0ken-for-edge")}
    bad = {"token_file": _secret(tmp / "bad-token", "not-the-token")}
    return conf, good, bad


def _nkey(tmp: Path) -> tuple[str, Mapping[str, object], Mapping[str, object]]:
    seed, public = make_nkey_user(tmp / "nkey")
    stranger, _ = make_nkey_user(tmp / "stranger-nkey")
    conf = f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n'
    return conf, {"nkey_seed_file": seed}, {"nkey_seed_file": stranger}


def _creds(tmp: Path) -> tuple[str, Mapping[str, object], Mapping[str, object]]:
    chain = make_operator_chain(tmp / "jwt")
    # A user of another operator's account: a well-formed .creds the server does not trust.
    stranger = make_operator_chain(tmp / "stranger-jwt")
    return chain.server_conf, {"creds_file": chain.creds}, {"creds_file": stranger.creds}


@pytest.mark.parametrize("kind", [_user_password, _token, _nkey, _creds], ids=lambda f: f.__name__)
async def test_credentials_let_members_in_and_wrong_ones_are_named(
    nodes: Nodes,
    tmp_path: Path,
    kind: Callable[[Path], tuple[str, Mapping[str, object], Mapping[str, object]]],
) -> None:
    conf, good, bad = kind(tmp_path)
    server = NatsServer(tmp_path / "nats", conf=conf)
    server.start()
    try:
        a = await nodes.start(nats=_plain(tmp_path, server.url, **good))
        b = await nodes.start(nats=_plain(tmp_path, server.url, **good))
        await ready([a, b])
        await _replicates(a, b, "with-credentials")

        wrong = await nodes.start([a], nats=_plain(tmp_path, server.url, **bad))
        reason = await _refused(wrong, "nats_auth")
        assert "refused our credentials (Authorization Violation)" in reason, reason
        setting = next(iter(bad))
        assert f"sync.nats.{setting}" in reason, reason
        # Refused by NATS, the node still serves its LAN: it gets a's writes over it.
        await wrong.daemon.wait_connected(1)
        await eventually(lambda: value(wrong.store, DOC, "with-credentials") == b"1", 30)
        # No credentials at all, where the server requires them.
        none = await nodes.start(nats=_plain(tmp_path, server.url))
        reason = await _refused(none, "nats_auth")
        assert "no credentials" in reason, reason
    finally:
        await nodes.close()
        server.stop()


async def test_a_refused_node_keeps_retrying_and_joins_once_the_server_accepts_it(
    nodes: Nodes, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats", conf='authorization { user: "edge", password: "old" }\n')
    server.start()
    try:
        password = {"user": "edge", "password_file": _secret(tmp_path / "pw", "new")}
        a = await nodes.start(nats=_plain(tmp_path, server.url, **password))
        await _refused(a, "nats_auth")
        # Written while refused: kept for publishing.
        a.store.create_document(DOC)
        a.store.batch([Set(DOC, "while-refused", b"1")])

        # The operator rotates the server's password to the one the node holds.
        server.stop()
        server.conf = 'authorization { user: "edge", password: "new" }\n'
        server.start()
        await eventually(lambda: a.daemon.nats is not None and a.daemon.nats.ready.is_set(), 60)
        assert a.daemon.nats is not None
        assert a.daemon.nats.stats.last_error_code is None
        b = await nodes.start(nats=_plain(tmp_path, server.url, **password))
        await ready([b])
        await eventually(lambda: value(b.store, DOC, "while-refused") == b"1", 30)
    finally:
        await nodes.close()
        server.stop()
