"""The node's side of the fork server (:mod:`.zygote`): start it, ask it for workers.

A worker forked by the zygote is the zygote's child, not the node's, so the node
cannot wait for it itself: :class:`ForkedProcess` stands in for an
``asyncio.subprocess.Process`` (``pid``, ``returncode``, ``wait``, ``terminate``,
``kill``) and learns of the exit from the zygote's event socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
_PID = struct.Struct("!q")
READY_TIMEOUT_S = 60.0  # its imports: seconds on a loaded machine


class ForkedProcess:
    """A worker the zygote forked: what the supervisor uses of a subprocess."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def _exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        """Wait until it exited; its exit code (negative: the signal that ended it)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        # Not yet reaped by the zygote (it reports exits after reaping), so the pid
        # is still this process's.
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One zygote process of a node; see the module docstring."""

    def __init__(self) -> None:
        self._spawn: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events_writer: asyncio.StreamWriter | None = None
        self._children: dict[int, ForkedProcess] = {}
        self._lock = asyncio.Lock()
        self.pid = 0

    async def start(self) -> None:
        """Start the zygote and wait until it has imported everything."""
        spawn, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        events, their_events = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edgestate.node.workers.zygote",
                str(theirs.fileno()),
                str(their_events.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), their_events.fileno()),
            )
        finally:
            theirs.close()
            their_events.close()
        self._spawn = spawn
        # The writer is kept: a dropped StreamWriter closes its transport.
        reader, self._events_writer = await asyncio.open_unix_connection(sock=events)
        self._reader = asyncio.create_task(self._events(reader))
        async with asyncio.timeout(READY_TIMEOUT_S):
            (self.pid,) = _PID.unpack(await asyncio.to_thread(_recv_exactly, spawn, _PID.size))

    async def spawn(self, settings: object, fds: tuple[int, ...]) -> ForkedProcess:
        """Fork one worker running ``settings`` (a ``WorkerSettings``, pickled as it is)
        with the sockets ``fds`` (the API listeners, then the link last)."""
        spawn = self._spawn
        if spawn is None or self._proc is None or self._proc.returncode is not None:
            raise OSError("the fork server is not running")
        payload = pickle.dumps(settings)
        async with self._lock:  # one request and its answer at a time
            pid = await asyncio.to_thread(_request, spawn, payload, fds)
            child = self._children[pid] = ForkedProcess(pid)
        return child

    async def _events(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            pid, code = (int(v) for v in line.split())
            child = self._children.pop(pid, None)
            if child is not None:
                child._exit(code)
        # The zygote is gone: its children can no longer be waited for; they end
        # on their own when their links close, and the supervisor starts new ones.
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child._exit(-signal.SIGKILL)
        self._children.clear()

    async def close(self) -> None:
        """Stop the zygote (its children are the supervisor's to stop first)."""
        if self._spawn is not None:
            self._spawn.close()
            self._spawn = None
        if self._proc is not None:
            try:
                async with asyncio.timeout(10):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            await self._reader
        if self._events_writer is not None:
            self._events_writer.close()


def _request(sock: socket.socket, payload: bytes, fds: tuple[int, ...]) -> int:
    socket.send_fds(sock, [_LENGTH.pack(len(payload))], list(fds))
    sock.sendall(payload)
    (pid,) = _PID.unpack(_recv_exactly(sock, _PID.size))
    return int(pid)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("the fork server exited")
        data += chunk
    return data
