"""A live daemon in the test's own trio run: the real App on a real Unix
socket, its strategies served by ``tests.fake_provider.FakeProvider`` on
127.0.0.1, and raw lines in and out (``RawPeer``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio

from daemon import __version__
from daemon.analysis import RaceManager
from daemon.app import App
from daemon.config import Config, load_config
from daemon.framing import LineReader
from daemon.openrpc import openrpc_document
from daemon.service import Service
from daemon.stats import Stats
from daemon.store import Store
from daemon.supervisor import Supervisor
from tests.conftest import write_config
from tests.fake_provider import FakeProvider, Script
from tests.helpers import register_test_methods

FAST, SLOW = "fast-model", "slow-model"
BROKEN = "BROKEN"  # in an image URL: both fake models answer something that is not JSON
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
KEY_ENV = "CTXD_TEST_KEY"


def daemon_document(config: Config) -> dict[str, Any]:
    """The document of the daemon's own methods (no test methods)."""
    store = Store.open(config.store, config.rank_of())
    try:
        supervisor = Supervisor(8)
        races = RaceManager(config, store, supervisor, {}, Stats(config.strategies))
        service = Service(config, supervisor, store, races)
        methods = sorted(service.methods.values(), key=lambda m: m.name)
        return openrpc_document(methods, __version__)
    finally:
        store.close()


@contextmanager
def fake_models(fast: float = 0.05, slow: float = 0.3) -> Iterator[FakeProvider]:
    scripts = {
        FAST: Script(latency=fast, invalid_if=BROKEN),
        SLOW: Script(latency=slow, invalid_if=BROKEN),
    }
    with FakeProvider(scripts) as server:
        yield server


def live_config(root: Path, fake: FakeProvider, **sections: Any) -> Config:
    """A config whose two strategies call ``fake``; screenshots go in ``root/shots``."""
    shots = root / "shots"
    shots.mkdir(exist_ok=True)
    defaults: dict[str, Any] = {
        "providers": {"fake": {"base_url": fake.base_url, "api_key_env": KEY_ENV}},
        "inputs": {"allowed_dirs": [str(shots)]},
        "llm": {"premium_cache_timeout": 10, "request_timeout": 20},
    }
    return load_config(write_config(root, **{**defaults, **sections}))


def screenshot(config: Config, name: str, salt: bytes = b"") -> str:
    path = Path(config.inputs.allowed_dirs[0]) / name
    path.write_bytes(PNG + salt)
    return str(path)


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[App]:
    """The daemon (with the test methods of tests/helpers.py) serving until exit."""
    store = Store.open(config.store, config.rank_of())
    try:
        app = App(config, store)
        register_test_methods(app.service)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: app.run(handle_signals=False, task_status=task_status)
            )
            yield app
            nursery.cancel_scope.cancel(reason="the test is done")
    finally:
        store.close()


class RawPeer:
    """One connection: raw lines out, decoded lines in."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, 1 << 30)
        self._ids = 0

    @classmethod
    async def open(cls, config: Config) -> RawPeer:
        return cls(await trio.open_unix_socket(config.socket.path))

    async def send_line(self, line: bytes) -> None:
        await self.stream.send_all(line + b"\n")

    async def receive(self) -> Any:
        line = await self.reader.receive_line()
        return None if line is None else json.loads(line)

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """The whole response object of one request."""
        self._ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._ids}
        if params is not None:
            message["params"] = params
        await self.send_line(json.dumps(message).encode())
        response: dict[str, Any] = await self.receive()
        assert response["id"] == self._ids, response
        return response

    async def aclose(self) -> None:
        await self.stream.aclose()
