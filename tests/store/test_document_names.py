"""The one document-name rule: the store, sync frames, manifests and the schemas all
say the same thing, from edgestate/store/names.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgpack
import pytest
import yaml

from edgestate.errors import InvalidDocumentNameError, MalformedFrameError, ManifestError
from edgestate.runtime.manifest import parse_manifest
from edgestate.store import DOC_NAME_PATTERN, Store, check_doc_name, is_doc_name
from edgestate.sync import frames

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

BAD = [
    "",
    ".",
    "..",
    "...",
    "a.",
    "CON",
    "con",
    "Con.txt",
    "nul.tar.gz",
    "PRN",
    "aux",
    "COM1",
    "lpt9.log",
    "x" * 65,
    "a/b",
    "a b",
    "a\n",
    "é",
]
GOOD = ["a", "docs", "x.y-z_1", ".hidden", "a..b", "console", "com10", "CONx", "_modules", "x" * 64]


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_by_the_store(tmp_path: Path, name: str) -> None:
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(InvalidDocumentNameError, match="Windows device name"):
            store.create_document(name)
        assert store.documents() == []


@pytest.mark.parametrize("name", GOOD)
def test_good_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert check_doc_name(name) == name
    with Store.open(tmp_path / "s") as store:
        assert store.create_document(name)


@pytest.mark.parametrize("name", BAD)
def test_sync_frames_naming_a_bad_document_are_malformed(name: str) -> None:
    data = msgpack.packb({"t": "diff", "doc": name, "update": b"\x00\x00"})
    with pytest.raises(MalformedFrameError, match="document name"):
        frames.decode(data, max_bytes=1 << 20, max_docs=1000)


def _manifest(*docs: str) -> bytes:
    return json.dumps(
        {
            "name": "m",
            "version": "1.0.0",
            "documents": {"read": [], "write": list(docs)},
            "limits": {"fuel": 1000, "memory_pages": 1, "max_output_bytes": 10},
        }
    ).encode()


@pytest.mark.parametrize("name", ["..", "CON", "nul.txt", "a."])
def test_manifests_granting_a_bad_name_are_refused(name: str) -> None:
    with pytest.raises(ManifestError, match="Windows device name"):
        parse_manifest(_manifest(name))


def test_every_schema_carries_the_one_rule() -> None:
    sync = json.loads((SCHEMAS / "sync-protocol.schema.json").read_text())
    manifest = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    cli_docs = json.loads((SCHEMAS / "cli" / "inspect-docs.schema.json").read_text())
    openapi = yaml.safe_load((SCHEMAS / "openapi.yaml").read_text())
    patterns = {
        "sync-protocol": sync["$defs"]["docName"]["pattern"],
        "manifest": manifest["$defs"]["documentList"]["items"]["pattern"],
        "inspect-docs": cli_docs["properties"]["documents"]["items"]["properties"]["name"][
            "pattern"
        ],
        "openapi": openapi["components"]["parameters"]["doc"]["schema"]["pattern"],
    }
    assert patterns == dict.fromkeys(patterns, DOC_NAME_PATTERN)
    schema_rule = re.compile(DOC_NAME_PATTERN)
    for name in BAD + GOOD:
        assert (schema_rule.fullmatch(name) is not None) == is_doc_name(name), name
