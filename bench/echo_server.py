"""A bare trio line server on a Unix socket: the yardstick for ctxd.

    python bench/echo_server.py PATH [REPLY_FILE]

It frames lines like ctxd (one receive buffer per connection, split on
``\\n``) and answers each line: with the bytes of REPLY_FILE (one line; the
benches put ctxd's own reply to the same request there, so both servers
write the same bytes), or, without it, with the line itself. The cost of
trio plus the socket with no JSON, no dispatch, no accounting.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import trio


async def handle(reply: bytes | None, stream: trio.SocketStream) -> None:
    buf = bytearray()
    async with stream:
        while data := await stream.receive_some(65536):
            buf += data
            end = buf.rfind(b"\n")
            if end < 0:
                continue
            if reply is None:
                await stream.send_all(bytes(buf[: end + 1]))
            else:
                await stream.send_all(reply * buf.count(b"\n", 0, end + 1))
            del buf[: end + 1]


async def main(path: str, reply: bytes | None) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(512)
    listener = trio.SocketListener(sock)
    await trio.serve_listeners(functools.partial(handle, reply), [listener])


if __name__ == "__main__":
    reply = Path(sys.argv[2]).read_bytes() if len(sys.argv) > 2 else None
    if reply is not None and (not reply.endswith(b"\n") or reply.count(b"\n") != 1):
        raise SystemExit("the reply file must hold one line ending in a newline")
    trio.run(main, sys.argv[1], reply)
