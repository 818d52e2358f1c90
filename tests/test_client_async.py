"""clients/async_client.py under asyncio and under trio, against a live daemon
(issue 13, point 7): typed results, one connection reused, concurrent calls
pipelined on it, error codes as exceptions; and its generated types."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from clients.async_client import (
    SEND_GRACE,
    AnalyzeResult,
    AsyncClient,
    BadInput,
    ConnectionClosed,
    Core,
    InvalidParams,
    MergeStepObject,
    MethodNotFound,
    Overloaded,
    _AsyncioConnection,
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


# The one command that rewrites the generated TypedDicts of the client (run it
# after changing a Struct that a method's result or error.data is built from).
REGENERATE = (
    "CTXD_REGENERATE=1 .venv/bin/python -m pytest -q tests/test_client_async.py -k typed_results"
)


def _blocks(text: str) -> dict[str, str]:
    """The generated section of ``text``, by class (and ``RESULTS``)."""
    section = text[text.index(GENERATED_BEGIN) : text.index(GENERATED_END)]
    blocks: dict[str, str] = {}
    for block in section.split("\n\n\n")[1:]:
        head = block.split("(", 1)[0].split(":", 1)[0].split()
        blocks[head[-1] if head else block] = block
    return blocks


def check_typed_results(document: dict[str, Any]) -> None:
    """Fail, naming the types that changed and the command, when the client's
    generated section is not what ``document`` makes; with CTXD_REGENERATE=1,
    rewrite it."""
    expected = regenerated(document)
    if os.environ.get("CTXD_REGENERATE") == "1":
        CLIENT.write_text(expected)
    current = CLIENT.read_text()
    if current == expected:
        return
    have, want = _blocks(current), _blocks(expected)
    changed = sorted(n for n in have.keys() | want.keys() if have.get(n) != want.get(n))
    raise AssertionError(
        "clients/async_client.py's generated types are stale (a result or error Struct "
        f"changed): {', '.join(changed) or 'formatting'} differ. Regenerate them, from "
        f"/work/main's root:\n    {REGENERATE}\nand commit clients/async_client.py."
    )


def test_the_typed_results_match_the_daemons_document(make_config: ConfigFactory) -> None:
    """The TypedDicts are the document's components: a field added to a
    result Struct fails here (and in tests/test_openrpc.py) until
    ``REGENERATE`` rewrites them."""
    check_typed_results(daemon_document(make_config()))
    assert AnalyzeResult.__required_keys__ == {"result", "provenance", "pending"}
    assert {"participants", "layout", "bubbles", "conversation"} <= (
        MergeStepObject.__required_keys__
    )


def test_a_stale_type_is_named_with_the_command_that_regenerates_it(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = daemon_document(make_config())
    fleet = document["components"]["schemas"]["FleetStatus"]
    fleet["properties"] = fleet["properties"] | {"new_figure": {"type": "integer"}}
    monkeypatch.delenv("CTXD_REGENERATE", raising=False)
    with pytest.raises(AssertionError) as caught:
        check_typed_results(document)
    message = str(caught.value)
    assert "FleetStatus" in message.split(" differ")[0]
    assert REGENERATE in message


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


# ------------------------------------------- cancellation (cold review) ---


def test_under_trio_a_call_cancelled_before_it_is_sent_leaves_the_others_alone(
    daemon: Daemon,
) -> None:
    """A deadline that has already passed cancels the call before its line
    goes out: the call in flight on the same connection still gets its answer
    (it got ConnectionClosed: the cancel was taken for one mid-line)."""

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with AsyncClient(daemon.socket_path) as ctxd:
            await ctxd.health()

            async def slow() -> None:
                try:
                    seen["slow"] = await ctxd.call("sleep", {"seconds": 0.5, "tag": "slow"})
                except Exception as exc:  # what it got is the finding
                    seen["slow"] = repr(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await trio.sleep(0.1)  # slow was sent and waits for its answer
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await ctxd.health()
                seen["cancelled"] = scope.cancelled_caught
            seen["connections"] = (await ctxd.status())["connections"]
        return seen

    seen = trio.run(main)
    assert seen["cancelled"] is True
    assert seen["slow"]["tag"] == "slow", seen
    assert seen["connections"] == 1  # the same connection all along


def test_under_trio_one_of_many_calls_cancelled_while_it_waits_to_send(daemon: Daemon) -> None:
    """50 calls queue for their turn to send; one cancelled meanwhile leaves
    the 50 their answers."""

    async def main() -> list[Any]:
        out: list[Any] = []
        async with AsyncClient(daemon.socket_path) as ctxd:
            await ctxd.health()

            async def one(i: int) -> None:
                try:
                    out.append(await ctxd.call("sleep", {"seconds": 0.3, "tag": str(i)}))
                except Exception as exc:
                    out.append(repr(exc))

            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, i)
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await ctxd.call("health")
        return out

    out = trio.run(main)
    assert sorted(int(o["tag"]) for o in out if isinstance(o, dict)) == list(range(50)), out[:3]


def test_under_asyncio_a_call_cancelled_while_its_line_drains_leaves_the_others_alone(
    daemon: Daemon,
) -> None:
    """asyncio buffers the whole line at ``write``: cancelled in ``drain``
    (a line bigger than the socket takes at once), the line still goes out
    whole, so the connection and the call in flight on it are unharmed."""

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with AsyncClient(daemon.socket_path) as ctxd:
            await ctxd.health()
            slow = asyncio.create_task(ctxd.call("sleep", {"seconds": 0.5, "tag": "slow"}))
            await asyncio.sleep(0.1)
            big = asyncio.create_task(ctxd.call("sleep", {"seconds": 0, "tag": "x" * 4_000_000}))
            await asyncio.sleep(0)  # it wrote its line and waits in drain
            link = ctxd._link
            assert link is not None
            assert isinstance(link.conn, _AsyncioConnection)
            seen["buffered"] = link.conn.writer.transport.get_write_buffer_size()
            big.cancel()
            try:
                await big
            except asyncio.CancelledError:
                seen["big"] = "cancelled"
            seen["slow"] = (await slow)["tag"]
            seen["connections"] = (await ctxd.status())["connections"]
        return seen

    seen = asyncio.run(main())
    assert seen["buffered"] > 0  # the cancel came during drain
    assert seen["big"] == "cancelled"
    assert seen["slow"] == "slow"
    assert seen["connections"] == 1


# -------------------------------------- a daemon that ends the connection ---


Handler = Callable[[int, dict[str, Any], trio.SocketStream], Awaitable[bool]]


async def serve_lines(
    path: str, answer: Handler, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """A fake daemon on ``path``: ``answer(connection number, request, stream)``
    for each request line; it returns False to close the connection."""
    connections = 0

    async def handler(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        mine = connections
        buffer = b""
        async with stream:
            while data := await stream.receive_some(65536):
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not await answer(mine, json.loads(line), stream):
                        return

    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen()
    await trio.serve_listeners(handler, [trio.SocketListener(sock)], task_status=task_status)


async def reply(stream: trio.SocketStream, message: dict[str, Any]) -> None:
    await stream.send_all(json.dumps({"jsonrpc": "2.0"} | message).encode() + b"\n")


def test_a_connection_lost_mid_call_fails_that_call_and_the_next_reconnects(
    short_tmp: Path,
) -> None:
    path = str(short_tmp / "s.sock")

    async def answer(connection: int, request: dict[str, Any], stream: trio.SocketStream) -> bool:
        if connection == 1 and request["method"] == "slow":
            return False  # closes mid-call
        await reply(stream, {"id": request["id"], "result": {"c": connection}})
        return True

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_lines, path, answer)
            async with AsyncClient(path) as ctxd:
                seen["first"] = await ctxd.call("x")
                with pytest.raises(ConnectionClosed):
                    await ctxd.call("slow")
                seen["next"] = await ctxd.call("x")
            nursery.cancel_scope.cancel()
        return seen

    assert trio.run(main) == {"first": {"c": 1}, "next": {"c": 2}}


def test_an_error_with_no_id_is_the_reason_only_when_the_connection_ends_on_it(
    short_tmp: Path,
) -> None:
    """-32005 then the end: the waiting call gets Overloaded. A -32700 the
    daemon went on after is not why the connection ended later: that call
    gets ConnectionClosed, not ParseError."""
    path = str(short_tmp / "s.sock")

    async def answer(connection: int, request: dict[str, Any], stream: trio.SocketStream) -> bool:
        if connection == 1:  # the daemon's connection limit
            await reply(stream, {"id": None, "error": {"code": -32005, "message": "full"}})
            return False
        if request["method"] == "garbled":  # a line it could not parse, answered; it goes on
            await reply(stream, {"id": None, "error": {"code": -32700, "message": "parse"}})
            await reply(stream, {"id": request["id"], "result": "went on"})
            return True
        if request["method"] == "end":
            return False  # ends, for a reason of its own
        await reply(stream, {"id": request["id"], "result": "ok"})
        return True

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_lines, path, answer)
            async with AsyncClient(path) as ctxd:
                try:
                    await ctxd.call("x")
                except Overloaded as exc:
                    seen["first"] = exc.code
                seen["garbled"] = await ctxd.call("garbled")
                seen["ok"] = await ctxd.call("x")
                try:
                    await ctxd.call("end")
                except ConnectionClosed as exc:
                    seen["end"] = type(exc).__name__
            nursery.cancel_scope.cancel()
        return seen

    seen = trio.run(main)
    assert seen == {"first": -32005, "garbled": "went on", "ok": "ok", "end": "ConnectionClosed"}


def test_the_example_goes_on_when_the_daemon_drops_the_connection(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon restarts mid-call (its first connection ends on the first
    request): the watcher says so, reads that screenshot again on a new
    connection, and goes on with the next one (it ended on ConnectionClosed)."""
    spec = importlib.util.spec_from_file_location(
        "watch_screenshots", ROOT / "examples" / "watch_screenshots.py"
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = str(short_tmp / "s.sock")
    folder = short_tmp / "shots"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    answer = {
        "result": {"conversation": [{"speaker": "user", "text": "hi"}]},
        "provenance": {"strategy": "s", "model": "m", "cached": False},
    }

    async def serve(connection: int, request: dict[str, Any], stream: trio.SocketStream) -> bool:
        if connection == 1:
            return False  # the daemon restarts mid-call
        await reply(stream, {"id": request["id"], "result": answer})
        return True

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_lines, path, serve)
            async with example.AsyncClient(path) as ctxd, trio.open_nursery() as inner:

                def spawn(fn: Any, name: str) -> None:
                    inner.start_soon(fn, name)

                inner.start_soon(example.watch, ctxd, folder, "c", 0.05, spawn, trio.sleep)
                await trio.sleep(0.5)
                (folder / "b.png").write_bytes(b"y")
                await trio.sleep(0.5)
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()

    trio.run(main)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("== a.png  connection to ")
    assert lines[0].endswith("closed; tried again at the next look")
    assert lines[1:] == [
        "== a.png  [s | m | fresh]",
        "  user: hi",
        "== b.png  [s | m | fresh]",
        "  user: hi",
    ]


def test_under_trio_a_call_cancelled_mid_line_still_sends_it_whole(daemon: Daemon) -> None:
    """Cancelled while its 4 MB line is going out: the line is finished
    (shielded), so the call in flight and the connection are unharmed."""

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with AsyncClient(daemon.socket_path) as ctxd:
            await ctxd.health()
            async with trio.open_nursery() as nursery:

                async def slow() -> None:
                    seen["slow"] = (await ctxd.call("sleep", {"seconds": 0.5, "tag": "s"}))["tag"]

                nursery.start_soon(slow)
                await trio.sleep(0.1)
                with trio.move_on_after(0.001) as scope:  # well before 4 MB are through
                    await ctxd.call("sleep", {"seconds": 0, "tag": "x" * 4_000_000})
                seen["cancelled"] = scope.cancelled_caught
            seen["connections"] = (await ctxd.status())["connections"]
        return seen

    assert trio.run(main) == {"cancelled": True, "slow": "s", "connections": 1}


def test_under_trio_a_daemon_that_reads_nothing_is_given_up_after_the_grace(
    short_tmp: Path,
) -> None:
    """The shielded send is bounded: a daemon that takes none of a line for
    SEND_GRACE seconds closes the connection, and the call says why."""
    path = str(short_tmp / "s.sock")

    async def main() -> str:
        sock = trio.socket.socket(trio.socket.AF_UNIX)
        await sock.bind(path)
        sock.listen()  # accepts (the kernel does), never reads
        async with AsyncClient(path) as ctxd:
            try:
                with trio.fail_after(60):  # virtual: without the bound it would wait for ever
                    await ctxd.call("sleep", {"tag": "x" * 4_000_000})
            except ConnectionClosed as exc:
                return str(exc)
            finally:
                sock.close()
        return "answered"

    clock = trio.testing.MockClock(autojump_threshold=0.01)
    said = trio.run(main, clock=clock)
    assert said.endswith(f"the daemon took no request for {SEND_GRACE:g}s"), said
