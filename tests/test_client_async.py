"""clients/async_client.py under asyncio and under trio, against a live daemon
(issue 13, point 7): typed results, one connection reused, concurrent calls
pipelined on it, error codes as exceptions; and its generated types."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from clients.async_client import (
    AnalyzeResult,
    AsyncClient,
    BadInput,
    ConnectionClosed,
    Core,
    InvalidParams,
    MergeStepObject,
    MethodNotFound,
    error_from,
)
from daemon.openrpc import GENERATED_BEGIN, GENERATED_END, python_types
from tests.conftest import ConfigFactory
from tests.fake_provider import FakeProvider, Script
from tests.live import daemon_document
from tests.process import ROOT, Daemon

CLIENT = ROOT / "clients" / "async_client.py"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


def regenerated(document: dict[str, Any]) -> str:
    """clients/async_client.py with its generated section made anew (and ruff-formatted)."""
    text = CLIENT.read_text()
    head = text[: text.index(GENERATED_BEGIN)]
    tail = text[text.index(GENERATED_END) + len(GENERATED_END) + 1 :]
    ruff = Path(sys.executable).parent / "ruff"
    formatted = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(CLIENT), "-"],
        input=head + python_types(document) + tail,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return formatted.stdout


def test_the_typed_results_match_the_daemons_document(make_config: ConfigFactory) -> None:
    """The TypedDicts are the document's components: a field added to a
    result Struct fails here until ``CTXD_REGENERATE=1`` rewrites them."""
    expected = regenerated(daemon_document(make_config()))
    if os.environ.get("CTXD_REGENERATE") == "1":
        CLIENT.write_text(expected)
    assert CLIENT.read_text() == expected, "run: CTXD_REGENERATE=1 pytest " + __file__
    assert AnalyzeResult.__required_keys__ == {"result", "provenance", "pending"}
    assert {"participants", "layout", "bubbles", "conversation"} <= (
        MergeStepObject.__required_keys__
    )


def test_the_core_matches_responses_by_id_and_maps_error_codes() -> None:
    core = Core()
    first, line = core.request("health")
    second, _ = core.request("status", {"x": 1})
    assert line == b'{"jsonrpc":"2.0","method":"health","id":1}\n'
    assert (first, second) == (1, 2)
    part = b'{"jsonrpc":"2.0","result":{"ok":true},"id":2}\n{"jsonrpc":"2.0","er'
    assert core.receive(part) == [{"jsonrpc": "2.0", "result": {"ok": True}, "id": 2}]
    rest = b'ror":{"code":-32003,"message":"no","data":{"reason":"not_found"}},"id":1}\n'
    (response,) = core.receive(rest)
    error = error_from(response["error"])
    assert isinstance(error, BadInput)
    assert (error.code, error.data) == (-32003, {"reason": "not_found"})
    assert type(error_from({"code": -1, "message": "odd"})).__name__ == "RpcError"


# ------------------------------------------------------- a live daemon ---


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with FakeProvider({"fast-model": Script(latency=0.05), "slow-model": Script(0.2)}) as fake:
        shots = short_tmp / "shots"
        shots.mkdir()
        process = Daemon(
            short_tmp,
            env={"CTXD_TEST_KEY": "sk-test"},
            providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY"}},
            inputs={"allowed_dirs": [str(shots)]},
            llm={"premium_cache_timeout": 10, "request_timeout": 20},
        )
        process.start()
        try:
            yield process
        finally:
            process.stop()


Gather = Callable[..., Awaitable[list[Any]]]


async def scenario(path: str, shot: str, gather: Gather, cancel_after: Any) -> dict[str, Any]:
    """Everything the client promises, whatever runs it; returns what it saw."""
    seen: dict[str, Any] = {}
    async with AsyncClient(path) as ctxd:
        health = await ctxd.health()
        seen["health"] = health["state"]
        relative = os.path.relpath(shot)  # resolved against this process's directory
        answer: AnalyzeResult = await ctxd.analyze("conv-async", path=relative)
        seen["speakers"] = [m["speaker"] for m in answer["result"]["conversation"]]
        seen["strategy"] = answer["provenance"]["strategy"]
        order: list[str] = []

        async def sleep(seconds: float, tag: str) -> Any:
            result = await ctxd.call("sleep", {"seconds": seconds, "tag": tag})
            order.append(tag)
            return result

        async def status_meanwhile() -> Any:
            return await ctxd.status()

        slow, fast, status = await gather(
            sleep(1.0, "slow"), sleep(0.05, "fast"), status_meanwhile()
        )
        seen["order"] = order
        seen["answered_at"] = (fast["done_at"], slow["done_at"])
        seen["connections"] = status["connections"]
        try:
            await ctxd.analyze("conv-async", path="/etc/passwd")
        except BadInput as exc:
            seen["bad_input"] = (exc.code, exc.data["reason"], exc.data["field"])
        try:
            await ctxd.call("no.such.method")
        except MethodNotFound as exc:
            seen["not_found"] = exc.code
        try:
            await ctxd.call("events.list", {"session_id": 5})
        except InvalidParams as exc:
            seen["invalid"] = (exc.data["reason"], exc.data["field"])
        # a call given up while it waits: the connection goes on serving
        seen["gave_up"] = await cancel_after(0.2, ctxd.call("sleep", {"seconds": 30}))
        seen["after"] = (await ctxd.health())["ok"]
        seen["connections_at_end"] = (await ctxd.status())["connections"]
        events = await ctxd.events_list("conv-async")
        seen["events"] = len(events["events"])
    try:
        async with AsyncClient(path + ".nobody") as nobody:
            await nobody.health()
    except ConnectionClosed:
        seen["unreachable"] = True
    return seen


def check(seen: dict[str, Any]) -> None:
    assert seen["health"] == "serving"
    assert seen["speakers"] == ["talker", "user"]
    assert seen["strategy"] == "multimodal"
    assert seen["order"] == ["fast", "slow"]  # answered as they finished, matched by id
    assert seen["answered_at"][0] < seen["answered_at"][1]
    assert seen["connections"] == 1  # three calls at once, one connection
    assert seen["bad_input"] == (-32003, "outside_allowed_dirs", "image.path")
    assert seen["not_found"] == -32601
    assert seen["invalid"] == ("invalid_value", "session_id")
    assert seen["gave_up"] is True
    assert seen["after"] is True
    assert seen["connections_at_end"] == 1
    assert seen["events"] >= 1
    assert seen["unreachable"] is True


def test_under_asyncio(daemon: Daemon, short_tmp: Path) -> None:
    shot = short_tmp / "shots" / "a.png"
    shot.write_bytes(PNG + b"asyncio")

    async def gather(*calls: Awaitable[Any]) -> list[Any]:
        return list(await asyncio.gather(*calls))

    async def cancel_after(seconds: float, call: Awaitable[Any]) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await call
        except TimeoutError:
            return True
        return False

    check(asyncio.run(scenario(daemon.socket_path, str(shot), gather, cancel_after)))


def test_under_trio(daemon: Daemon, short_tmp: Path) -> None:
    shot = short_tmp / "shots" / "t.png"
    shot.write_bytes(PNG + b"trio")

    async def gather(*calls: Awaitable[Any]) -> list[Any]:
        results: list[Any] = [None] * len(calls)

        async def one(i: int, call: Awaitable[Any]) -> None:
            results[i] = await call

        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(one, i, call)
        return results

    async def cancel_after(seconds: float, call: Awaitable[Any]) -> bool:
        with trio.move_on_after(seconds) as scope:
            await call
        return scope.cancelled_caught

    check(trio.run(scenario, daemon.socket_path, str(shot), gather, cancel_after))


# ---------------------------------------------------- the example app ---


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_the_example_prints_each_conversation_as_it_arrives(
    daemon: Daemon, short_tmp: Path, library: str
) -> None:
    """examples/watch_screenshots.py: a screenshot there at the start and two
    that arrive later are each printed once, with their conversation."""
    folder = short_tmp / "shots" / library
    folder.mkdir()
    (folder / "first.png").write_bytes(PNG + b"first" + library.encode())
    command = [
        sys.executable,
        str(ROOT / "examples" / "watch_screenshots.py"),
        str(folder),
        "--socket",
        daemon.socket_path,
        "--interval",
        "0.05",
        "--conversation",
        f"watch-{library}",
    ]
    if library == "trio":
        command.append("--trio")
    env = {k: v for k, v in os.environ.items() if k != "CTXD_SOCKET"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=short_tmp)
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline()]
        assert lines[0].startswith("== first.png"), lines
        for name in ("second.png", "third.png"):
            (folder / f".{name}").write_bytes(PNG + name.encode() + library.encode())
            os.rename(folder / f".{name}", folder / name)  # arrives whole
        while sum(line.startswith("== ") for line in lines) < 3:
            line = proc.stdout.readline()
            assert line, lines
            lines.append(line)
        while len(lines) < 9:  # each conversation has two messages
            lines.append(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    headers = sorted(line.split()[1] for line in lines if line.startswith("== "))
    assert headers == ["first.png", "second.png", "third.png"]
    assert sum("talker: 真的假的" in line for line in lines) == 3
    assert sum("user: 真的" in line for line in lines) == 3
