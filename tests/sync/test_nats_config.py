"""``[sync.nats]``: read from the config file, bad values refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestate.errors import ConfigError
from edgestate.node.config import load_config
from edgestate.sync.nats_subjects import Subjects, doc_token, token_doc


def _load(tmp_path: Path, nats_table: str) -> object:
    path = tmp_path / "node.toml"
    path.write_text(f"[sync.nats]\n{nats_table}\n")
    return load_config(path)


def test_a_nats_section_is_read_with_paths_resolved(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        'servers = ["nats://127.0.0.1:4222", "tls://nats.example:4443"]\n'
        'user = "edge"\npassword_file = "secrets/nats.pw"\nreplicas = 3\ngateway = true',
    )
    nats = cfg.sync.nats  # type: ignore[attr-defined]
    assert nats.servers == ("nats://127.0.0.1:4222", "tls://nats.example:4443")
    assert nats.password_file == tmp_path / "secrets/nats.pw"
    assert nats.replicas == 3 and nats.gateway and nats.tls


def test_no_section_means_no_link(tmp_path: Path) -> None:
    assert load_config(None).sync.nats is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("servers = []", "sync.nats.servers is empty"),
        ('servers = ["127.0.0.1:4222"]', "expected nats://host:port"),
        ('servers = ["http://x:1"]', "expected nats://host:port"),
        ('servers = ["nats://u:p@x:1"]', "not in the URL"),
        ('servers = ["nats://x:99999"]', "bad NATS server"),
        ('servers = ["nats://x:1"]\nuser = "u"', "go together"),
        ('servers = ["nats://x:1"]\ntoken_file = "t"\ncreds_file = "c"', "mutually exclusive"),
        ('servers = ["nats://x:1"]\ncert = "c.pem"', "cert and sync.nats.key go together"),
        ('servers = ["nats://x:1"]\nstream = "a.b"', "is not a stream name"),
        ('servers = ["nats://x:1"]\nreplicas = 7', "replicas must be 1-5"),
        ('servers = ["nats://x:1"]\nmax_age_s = 0', "max_age_s must be positive"),
        ('servers = ["nats://x:1"]\nbogus = 1', "unknown setting 'sync.nats.bogus'"),
    ],
)
def test_bad_nats_settings_are_refused_by_name(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _load(tmp_path, table)


def test_document_names_map_to_one_subject_token_and_back() -> None:
    for doc in ("plain", "a.b.c", "_modules", "x-1_2.v"):
        token = doc_token(doc)
        assert "." not in token and "*" not in token and ">" not in token
        assert token_doc(token) == doc
    subjects = Subjects.of("ab" * 32)
    assert subjects.doc("a.b") == "edgestate.abababababababab.doc.a~b"
    assert subjects.doc_of(subjects.doc("a.b")) == "a.b"
    assert subjects.doc_of("edgestate.other.doc.x") is None
