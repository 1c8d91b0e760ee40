import asyncio
from edgestate.store import Set
from tests.sync.conftest import eventually

async def test_two(nodes):
    a = await nodes.start()
    a.store.create_document("d")
    a.store.batch([Set("d", "k", b"v")])
    b = await nodes.start([a])
    async with asyncio.timeout(5):
        await b.daemon.wait_connected(1)
    await eventually(lambda: b.store.has_document("d") and b.store.get("d", "k") == b"v", 5)
    b.store.batch([Set("d", "k2", b"v2")])
    await eventually(lambda: a.store.get("d", "k2") == b"v2", 5)
    print(a.daemon.peers(), a.daemon.stats)
