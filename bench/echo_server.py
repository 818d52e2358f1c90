"""A bare trio newline-echo server on a Unix socket: the yardstick for ctxd.

    python bench/echo_server.py PATH

It frames lines like ctxd (one receive buffer per connection, split on
``\\n``) and sends each line straight back: the cost of trio plus the socket
with no JSON, no dispatch, no accounting.
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio


async def handle(stream: trio.SocketStream) -> None:
    buf = bytearray()
    async with stream:
        while data := await stream.receive_some(65536):
            buf += data
            end = buf.rfind(b"\n")
            if end >= 0:
                await stream.send_all(bytes(buf[: end + 1]))
                del buf[: end + 1]


async def main(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(512)
    listener = trio.SocketListener(sock)
    await trio.serve_listeners(handle, [listener])


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
