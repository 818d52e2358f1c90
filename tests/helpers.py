"""Test-side pieces shared by several test modules."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import msgspec
import trio

from daemon.analysis import RaceManager
from daemon.config import Config
from daemon.framing import LineReader
from daemon.protocol import Handler, Method, NoParams, Params
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


class SubtractParams(Params, frozen=True):
    minuend: int
    subtrahend: int


class NumbersParams(Params, frozen=True):
    a: int = 0
    b: int = 0
    c: int = 0
    d: int = 0
    e: int = 0


def register_spec_methods(service: Service) -> None:
    """The methods of the JSON-RPC 2.0 specification's section 7 examples."""

    async def subtract(params: SubtractParams) -> int:
        return params.minuend - params.subtrahend

    async def sum_(params: NumbersParams) -> int:
        return params.a + params.b + params.c + params.d + params.e

    async def get_data(params: NoParams) -> list[str | int]:
        return ["hello", 5]

    async def ignore(params: NumbersParams) -> None:
        return None

    methods: list[tuple[str, type[Params], Any, Handler]] = [
        ("subtract", SubtractParams, int, subtract),
        ("sum", NumbersParams, int, sum_),
        ("get_data", NoParams, list[str | int], get_data),
        ("update", NumbersParams, None, ignore),
        ("notify_hello", NumbersParams, None, ignore),
        ("notify_sum", NumbersParams, None, ignore),
    ]
    for name, params, result, handler in methods:
        service.register(Method(name, params, result, handler, "JSON-RPC 2.0 spec example"))


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


class LoopHold(trio.abc.Instrument):
    """The longest the loop ran without looking at I/O, in this thread's CPU
    time (what the daemon's tasks held, not what the OS took meanwhile)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._since: float | None = None

    def after_io_wait(self, timeout: float) -> None:
        self._since = time.thread_time()

    def before_io_wait(self, timeout: float) -> None:
        if self._since is not None:
            self.longest = max(self.longest, time.thread_time() - self._since)
