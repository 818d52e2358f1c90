"""Test-side pieces shared by several test modules."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import trio

from daemon.analysis import RaceManager
from daemon.config import Config
from daemon.framing import LineReader
from daemon.protocol import Method, Params
from daemon.service import Service
from daemon.stats import Stats
from daemon.store import Store
from daemon.supervisor import Supervisor

logger = logging.getLogger("daemon.tests")


class SleepParams(Params, frozen=True):
    seconds: float
    tag: str = ""


class SleepResult(msgspec.Struct, frozen=True):
    tag: str
    done_at: float


def register_test_methods(service: Service, finished: list[str] | None = None) -> None:
    """``sleep`` (a slow request), ``boom`` (a handler bug), ``unencodable``,
    and ``background`` (a test-only kind of background task, whose tag is
    appended to ``finished`` and logged when it completes)."""
    done = finished if finished is not None else []

    async def sleep(params: SleepParams) -> SleepResult:
        await trio.sleep(params.seconds)
        return SleepResult(params.tag, trio.current_time())

    async def boom(params: SleepParams) -> SleepResult:
        raise RuntimeError("a bug in a handler")

    async def unencodable(params: SleepParams) -> object:
        return object()

    async def background(params: SleepParams) -> SleepResult:
        async def work() -> None:
            await trio.sleep(params.seconds)
            done.append(params.tag)
            logger.info("test background task %s finished", params.tag)

        service.supervisor.spawn(f"test-{params.tag}", work)
        return SleepResult(params.tag, trio.current_time())

    handlers = [
        ("sleep", sleep),
        ("boom", boom),
        ("unencodable", unencodable),
        ("background", background),
    ]
    for name, handler in handlers:
        service.register(Method(name, SleepParams, SleepResult, handler, "test method"))


def make_service(config: Config, store: Store) -> Service:
    supervisor = Supervisor(config.llm.max_background_tasks)
    races = RaceManager(config, store, supervisor, {}, Stats(config.strategies))
    service = Service(config, supervisor, store, races)
    service.state = "serving"
    register_test_methods(service)
    return service


class Peer:
    """The client end: write lines, read response lines as JSON."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, 1 << 30)

    async def send(self, message: Any) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self.stream.send_all(data + b"\n")

    async def receive(self) -> Any:
        line = await self.reader.receive_line()
        return None if line is None else json.loads(line)

    async def call(self, method: str, params: Any = None, id: Any = 1) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.receive()
