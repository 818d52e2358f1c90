#!/usr/bin/env python3
"""Watch a folder of chat screenshots; print each conversation as it arrives.

    python3 examples/watch_screenshots.py FOLDER [--socket PATH] [--conversation ID]
                                                 [--interval SECONDS] [--trio]

An app of a few lines on clients/async_client.py (standard library only): it
runs under asyncio, or under trio with ``--trio`` (then trio must be
installed). The folder must lie inside the daemon's ``inputs.allowed_dirs``.

A screenshot counts once it has kept its size for one poll (``--interval``,
default 0.5 s): save it elsewhere and rename it in, as screenshot tools do, and
it is taken at once. Names starting with a dot are skipped. The screenshots
there at the start are read too. Each is analyzed as soon as it counts, all
over one connection at once, and printed when its answer comes; one whose
call is cut off (the daemon restarts, or is not there yet) is said so and
tried again at the next look, on a new connection::

    == shot.png  [multimodal | google/gemini-3.1-flash-lite | fresh]
      talker: 真的假的
      user: 真的

The socket: ``--socket``, else ``$CTXD_SOCKET``, else ``var/ctxd.sock``.
Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clients.async_client import AnalyzeResult, AsyncClient, ConnectionClosed, RpcError
else:  # run as a script: the client sits in ../clients
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
    from async_client import AsyncClient, ConnectionClosed, RpcError

IMAGES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}

Spawn = Callable[[Callable[..., Awaitable[None]], str], None]


class Folder:
    """The screenshots of a folder that have kept their size since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sizes: dict[str, int] = {}
        self._taken: set[str] = set()

    def arrived(self) -> list[str]:
        sizes = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGES:
                    continue
                if entry.is_file():
                    sizes[name] = entry.stat().st_size
        ready = [
            name
            for name, size in sorted(sizes.items())
            if name not in self._taken and self._sizes.get(name) == size
        ]
        self._taken.update(ready)
        self._sizes = sizes
        return ready

    def again(self, name: str) -> None:
        """Take ``name`` again at the next look (its call did not get through)."""
        self._taken.discard(name)


def render(name: str, answer: AnalyzeResult) -> str:
    where = answer["provenance"]
    origin = "cached" if where["cached"] else "fresh"
    lines = [f"== {name}  [{where['strategy']} | {where['model']} | {origin}]"]
    lines += [f"  {m['speaker']}: {m['text']}" for m in answer["result"]["conversation"]]
    return "\n".join(lines)


async def watch(
    ctxd: AsyncClient,
    folder: Path,
    conversation: str,
    interval: float,
    spawn: Spawn,
    sleep: Callable[[float], Awaitable[Any]],
) -> None:
    """Poll ``folder`` forever; each new screenshot is analyzed in a task of its own."""

    async def show(name: str) -> None:
        try:
            answer = await ctxd.analyze(conversation, path=str(folder / name))
        except RpcError as exc:
            reason = exc.data.get("reason", "") if isinstance(exc.data, dict) else ""
            print(f"== {name}  error {exc.code}: {exc.message} {reason}".rstrip(), flush=True)
            return
        except ConnectionClosed as exc:  # the daemon restarts, say: the next call reconnects
            print(f"== {name}  {exc}; tried again at the next look", flush=True)
            screenshots.again(name)
            return
        print(render(name, answer), flush=True)

    screenshots = Folder(folder)
    while True:
        for name in screenshots.arrived():
            spawn(show, name)
        await sleep(interval)


async def run_asyncio(args: argparse.Namespace) -> None:
    import asyncio

    async with AsyncClient(args.socket) as ctxd, asyncio.TaskGroup() as tasks:

        def spawn(fn: Callable[..., Awaitable[None]], name: str) -> None:
            tasks.create_task(fn(name))  # type: ignore[arg-type]

        await watch(ctxd, args.folder, args.conversation, args.interval, spawn, asyncio.sleep)


async def run_trio(args: argparse.Namespace) -> None:
    import trio

    async with AsyncClient(args.socket) as ctxd, trio.open_nursery() as nursery:

        def spawn(fn: Callable[..., Awaitable[None]], name: str) -> None:
            nursery.start_soon(fn, name)

        await watch(ctxd, args.folder, args.conversation, args.interval, spawn, trio.sleep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print each chat screenshot's conversation.")
    parser.add_argument("folder", type=Path, help="the folder to watch")
    parser.add_argument(
        "--socket",
        default=os.environ.get("CTXD_SOCKET", "var/ctxd.sock"),
        help="the daemon's socket (default: $CTXD_SOCKET, else var/ctxd.sock)",
    )
    parser.add_argument("--conversation", help="conversation id (default: the folder's name)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    parser.add_argument("--trio", action="store_true", help="run under trio, not asyncio")
    args = parser.parse_args(argv)
    args.folder = args.folder.resolve()
    args.conversation = args.conversation or args.folder.name
    try:
        if args.trio:
            import trio

            trio.run(run_trio, args)
        else:
            import asyncio

            asyncio.run(run_asyncio(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
