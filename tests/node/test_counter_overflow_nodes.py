"""Two real node subprocesses heal from a partition in which a counter's legal
increments summed past int64: the counter reads saturated on both and the
document keeps replicating (found in the hardening issue: every merge failed,
the link reconnected for ever and the document's other keys stopped too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestate.client import NodeAPIError
from tests.node.conftest import NodeProcess, eventually, start_node

pytestmark = pytest.mark.timeout(120)

I64_MAX = (1 << 63) - 1
DOC = "tally"


def test_nodes_heal_after_partitioned_increments_pass_int64(
    tmp_path: Path, node_factory: list[NodeProcess]
) -> None:
    a = start_node(tmp_path / "a", "--no-mdns")
    node_factory.append(a)
    b = start_node(tmp_path / "b", "--no-mdns")
    node_factory.append(b)
    # Partitioned: neither knows the other. Each increment is legal where it is made.
    assert a.client.incr(DOC, "n", I64_MAX, create=True) == I64_MAX
    assert b.client.incr(DOC, "n", 1, create=True) == 1
    a.client.put(DOC, "from-a", b"1")
    b.client.put(DOC, "from-b", b"2")

    # The link comes back: b restarts with a as its peer.
    assert b.stop() == 0, b.log()
    b = start_node(tmp_path / "b", "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
    node_factory.append(b)

    def healed() -> bool:
        return all(
            n.client.get(DOC, "from-a")["found"]
            and n.client.get(DOC, "from-b")["found"]
            and n.client.get(DOC, "n")["counter"] == I64_MAX
            for n in (a, b)
        )

    eventually(healed, timeout=30, what="both nodes holding both writes and the saturated total")
    # The document still replicates both ways, over the same link.
    a.client.put(DOC, "after-a", b"3")
    b.client.put(DOC, "after-b", b"4")
    eventually(
        lambda: b.client.get(DOC, "after-a")["found"] and a.client.get(DOC, "after-b")["found"],
        timeout=30,
        what="writes after the heal replicating",
    )
    # Away from the range is refused by name; back towards it is taken.
    with pytest.raises(NodeAPIError) as refused:
        a.client.incr(DOC, "n", 1)
    assert refused.value.code == "value_too_large"
    assert a.client.incr(DOC, "n", -2) == I64_MAX - 1
    eventually(lambda: b.client.get(DOC, "n")["counter"] == I64_MAX - 1, what="the decrement")
    assert "Traceback" not in a.log() + b.log()
