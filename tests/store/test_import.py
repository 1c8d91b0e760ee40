"""A read-only store must stay cheap to start: `edgestate kv get` opens one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgestate.store import Set, Store


def test_a_read_only_get_imports_neither_pycrdt_nor_asyncio(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        store.create_document("d")
        store.batch([Set("d", "k", b"v")])
    code = (
        "import sys\n"
        "from edgestate.store import Store\n"
        f"s = Store.open({str(tmp_path / 's')!r}, readonly=True)\n"
        "assert s.get('d', 'k') == b'v'\n"
        "print(sorted(m for m in ('pycrdt', 'asyncio') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exported_name_resolves() -> None:
    import edgestate.store as store_package

    namespace: dict[str, object] = {}
    exec("from edgestate.store import *", namespace)
    assert set(store_package.__all__) <= set(namespace)
    assert getattr(namespace["ChangeStream"], "__name__", None) == "ChangeStream"
