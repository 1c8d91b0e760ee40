"""A stand-in invocation worker that dies mid-handoff (tests/node/test_yjs_handoff.py).

    python yjs_handoff_child.py HANDOFF_SOCKET

Listens on 127.0.0.1 (its port on stdout), accepts one client, reads its
request head, sends the socket to the node's handoff socket the way a worker
does (``edgestate.node.workers.handoff``) and is SIGKILLed before it reads the
node's answer: the moment a real worker could die with the connection in flight.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from edgestate.node.workers.handoff import handoff_message


def main() -> None:
    listen = socket.create_server(("127.0.0.1", 0))
    print(listen.getsockname()[1], flush=True)
    client, _ = listen.accept()
    client.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk:
            sys.exit("the client left before its request head")
        head += chunk
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.connect(sys.argv[1])
    socket.send_fds(link, [handoff_message(head)], [client.fileno()])
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
