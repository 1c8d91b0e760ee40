"""The fork server: a process that imported what a worker needs, and forks workers.

    python -m edgestate.node.workers.zygote SPAWN_FD EVENTS_FD   (started by the node)

Started by the node before its first worker, from a fresh interpreter: it imports
wasmtime, aiohttp, lmdb, msgpack, pycrdt and the worker's code, and nothing else
happens in it (no thread, event loop, LMDB environment or socket besides its two
to the node), so ``fork`` is safe. Each worker is then a fork of it: the pages of
those imports stay shared with every worker (measured by scripts/bench_memory.py:
a worker's USS 7 MB forked against 38 MB started fresh) and a worker starts in
milliseconds plus its own setup, not seconds of imports.

On ``SPAWN_FD`` (a unix socketpair) the node sends one request per worker: a
4-byte length, the pickled :class:`~.process.WorkerSettings`, and the worker's
two sockets (the API listener, its link to the node) as SCM_RIGHTS; the answer is
the child's pid (8 bytes). On ``EVENTS_FD`` it writes ``pid code\\n`` when a child
exits (code as ``asyncio`` gives it: negative for a signal). It exits when the
node closes ``SPAWN_FD``; its children stay (each exits when its own link closes).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import threading

MAX_REQUEST = 1 << 20  # pickled settings: a few KB
# API listeners (the spare gets one per worker) and the link: Linux's SCM_MAX_FD.
MAX_FDS = 253
_LENGTH = struct.Struct("!I")
_PID = struct.Struct("!q")


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _serve_child(
    spawn: socket.socket, events: socket.socket, wake: tuple[int, int], settings: bytes
) -> None:
    """In the forked child: become the worker (never returns)."""
    code = 1
    try:
        spawn.close()
        events.close()
        for fd in wake:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from edgestate.node.workers.main import run

        run(pickle.loads(settings))
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _spawn(spawn: socket.socket, events: socket.socket, wake: tuple[int, int]) -> None:
    header, fds, _, _ = socket.recv_fds(spawn, _LENGTH.size, MAX_FDS)
    if not header:
        raise EOFError
    (size,) = _LENGTH.unpack(header)
    if size > MAX_REQUEST or len(fds) < 2:
        raise EOFError  # not the node talking: stop
    settings = pickle.loads(_recv_exactly(spawn, size))
    # The API listeners, then the link (forkserver.spawn's order).
    settings = dataclasses.replace(settings, listen_fds=tuple(fds[:-1]), link_fd=fds[-1])
    pid = os.fork()
    if pid == 0:
        _serve_child(spawn, events, wake, pickle.dumps(settings))
    for fd in fds:
        os.close(fd)
    spawn.sendall(_PID.pack(pid))


def _reap(events: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        events.sendall(f"{pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def main() -> None:
    """Import a worker's modules, then fork one worker per request until the node leaves."""
    spawn = socket.socket(fileno=int(sys.argv[1]))
    events = socket.socket(fileno=int(sys.argv[2]))
    import aiohttp.web  # noqa: F401
    import lmdb  # noqa: F401
    import msgpack  # noqa: F401
    import pycrdt  # noqa: F401
    import wasmtime  # noqa: F401

    import edgestate.node.workers.main
    import edgestate.node.workers.worker  # noqa: F401

    if threading.active_count() != 1:  # an import started a thread: forking is unsafe
        raise SystemExit("edgestate zygote: a thread is running after the imports")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    selector = selectors.DefaultSelector()
    selector.register(spawn, selectors.EVENT_READ, "spawn")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    spawn.sendall(_PID.pack(os.getpid()))  # ready
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "wake":
                    os.read(wake_r, 512)
                    _reap(events)
                else:
                    _spawn(spawn, events, (wake_r, wake_w))
    except (EOFError, ConnectionError):
        pass  # the node is gone, or closed us


if __name__ == "__main__":
    main()
