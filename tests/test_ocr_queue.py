"""The local_ocr queue under a burst (issue 13, point 4), in virtual time: at
most ``max_queue`` jobs wait for a worker (``overloaded`` past it), and a job
that cannot get a worker in time to finish within the strategy's timeout ends
early with ``queued``, its position and expected wait, never as a plain
``timeout`` that a caller cannot tell from a slow inference."""

from __future__ import annotations

import base64
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from jsonschema import Draft7Validator

from clients.async_client import AllStrategiesFailed, AsyncClient
from daemon.config import StrategyConfig, load_config
from daemon.errors import StrategyError
from daemon.ocr.pool import SAY_MARGIN, LocalOcr, QueueError
from daemon.providers import ImageInput
from tests.live import daemon_document
from tests.process import Daemon

IMAGE = ImageInput("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode())


class FakeWorker:
    """Answers each job after ``seconds`` of (virtual) time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.process = SimpleNamespace(poll=lambda: None, pid=0, returncode=None)
        self.idle_watch = None

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(self.seconds)
        return {"step": "{}"}

    async def kill(self) -> None:
        pass


def engine(seconds: float, *, workers: int = 1, max_queue: int = 16) -> LocalOcr:
    strategy = StrategyConfig(
        name="local", kind="local_ocr", model="ocr", workers=workers, max_queue=max_queue
    )
    ocr = LocalOcr(strategy, command=["unused"])

    async def spawn() -> FakeWorker:
        return FakeWorker(seconds)

    ocr._spawn = spawn  # type: ignore[method-assign,assignment]
    return ocr


async def burst(
    ocr: LocalOcr,
    jobs: int,
    timeout: float,  # noqa: ASYNC109 - the strategy's timeout, applied as the race does
    *,
    together: bool = False,
) -> list[tuple[float, str]]:
    """``jobs`` calls, each under the strategy's timeout as the race sets it
    (in this order, or ``together``: in one scheduling batch, as a burst of
    requests on a socket arrives); when and how each ended. The figures of
    each QueueError go in ``FIGURES`` by index."""
    strategy = msgspec.structs.replace(ocr.strategy, timeout=timeout)
    ended: list[tuple[float, str]] = [(0.0, "")] * jobs
    FIGURES.clear()

    async def one(i: int) -> None:
        try:
            with trio.fail_after(strategy.timeout):
                await ocr.complete(strategy, IMAGE)
            ended[i] = (trio.current_time(), "ok")
        except trio.TooSlowError:
            ended[i] = (trio.current_time(), "timeout")
        except StrategyError as exc:
            ended[i] = (round(trio.current_time(), 3), f"{exc.kind}: {exc.detail}")
            if isinstance(exc, QueueError):
                FIGURES[i] = exc.figures

    async with trio.open_nursery() as nursery:
        for i in range(jobs):
            nursery.start_soon(one, i)
            if not together:
                await trio.testing.wait_all_tasks_blocked()  # arrive in this order
    return ended


FIGURES: dict[int, dict[str, float]] = {}


async def test_past_max_queue_a_job_is_overloaded_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ocr = engine(2.0, max_queue=3)
    ended = await burst(ocr, 6, timeout=30)
    assert [e[1] for e in ended[:4]] == ["ok"] * 4  # one reading, three waiting
    assert [e[0] for e in ended[:4]] == [2, 4, 6, 8]
    for when, what in ended[4:]:
        assert when == 0
        assert what == (
            "overloaded: the OCR queue is full: 3 jobs wait for 1 worker(s) (max_queue 3)"
        )


async def test_a_job_that_cannot_finish_in_time_says_queued_with_position_and_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ocr = engine(2.0)
    ocr.inference_s = 2.0  # as measured
    ended = await burst(ocr, 5, timeout=5)
    assert ended[0] == (2, "ok")
    assert ended[1] == (4, "ok")  # position 1: 2 s wait + 2 s reading fits 5 s
    for when, what in ended[2:]:  # each behind the one waiting (those refused do not wait)
        assert when == 0  # known at once: no point waiting
        assert what.startswith("queued: position 2 in the OCR queue (1 worker(s) busy)")
        assert "expected wait 4.0s + 2.0s to read" in what
        assert "could not finish within the 5s timeout" in what
    assert "timeout" not in {e[1] for e in ended}


async def test_a_wrong_first_guess_is_corrected_and_a_late_read_says_it_waited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first guess (1 s an inference) is wrong here (3 s). The second job
    gets the worker at 3 s, after 3 s in the queue, and its 5 s are up while
    it reads: ``queued``, with how long it waited and read, not a plain
    ``timeout``. The third, waiting, gives up as soon as the 3 s are
    measured (it could no longer finish), not at the 1 s guess's 4 s."""
    ocr = engine(3.0)
    assert ocr.inference_s == 1.0
    ended = await burst(ocr, 3, timeout=5)
    assert ended[0] == (3, "ok")
    assert ended[1][0] == 5 - SAY_MARGIN  # it says why itself, just before the race's timeout
    assert ended[1][1].startswith("queued: waited 3.0s for an OCR worker, read for 2.0s")
    assert ended[1][1].endswith("no answer within the 5s timeout")
    assert FIGURES[1] == {"waited_s": 3.0, "read_s": 1.95}
    assert ended[2][0] == 3  # when the first inference was measured
    assert ended[2][1].startswith("queued: position 1 in the OCR queue")
    assert "no worker came free in time to finish within the 5s timeout" in ended[2][1]
    assert FIGURES[2] == {"position": 1, "expected_wait_s": 3.0}
    assert ocr.inference_s == 3.0  # measured now


async def test_a_job_that_had_its_worker_and_was_slow_is_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ocr = engine(10.0)
    ended = await burst(ocr, 1, timeout=5)
    assert ended == [
        (
            5 - SAY_MARGIN,
            "timeout: waited 0.0s for an OCR worker, read for 5.0s: "
            "no answer within the 5s timeout",
        )
    ]
    assert FIGURES[0] == {"waited_s": 0.0, "read_s": 5 - SAY_MARGIN}
    assert ocr.inference_s == 5 - SAY_MARGIN  # at least that: the next guess


async def test_a_simultaneous_burst_gets_max_queue_waiting_places(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """All six arrive in one batch (the cold review's case: the job that took
    the free worker was still counted as waiting, so only two could wait)."""
    ocr = engine(2.0, max_queue=3)
    ended = await burst(ocr, 6, timeout=30, together=True)
    assert sorted(e for e in ended if e[1] == "ok") == [(2, "ok"), (4, "ok"), (6, "ok"), (8, "ok")]
    refused = [i for i, e in enumerate(ended) if e[1] != "ok"]
    for i in refused:
        assert ended[i] == (
            0,
            "overloaded: the OCR queue is full: 3 jobs wait for 1 worker(s) (max_queue 3)",
        )
        assert FIGURES[i] == {"waiting": 3, "max_queue": 3}


async def test_positions_in_a_simultaneous_burst_count_only_the_jobs_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ocr = engine(2.0)
    ocr.inference_s = 2.0  # as measured
    ended = await burst(ocr, 5, timeout=5, together=True)
    assert sorted(e for e in ended if e[1] == "ok") == [(2, "ok"), (4, "ok")]
    queued = [i for i, e in enumerate(ended) if e[1] != "ok"]
    assert len(queued) == 3
    for i in queued:
        assert ended[i][0] == 0
        assert ended[i][1].startswith("queued: position 2 in the OCR queue")
        assert FIGURES[i] == {"position": 2, "expected_wait_s": 4.0}


async def test_the_queue_is_first_come_first_served_across_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ocr = engine(1.0, workers=2)
    ended = await burst(ocr, 6, timeout=60)
    assert [e for e in ended] == [(1, "ok"), (1, "ok"), (2, "ok"), (2, "ok"), (3, "ok"), (3, "ok")]
    assert ocr.expected_wait(3) == 2.0  # two workers: the third waits two inferences


def test_max_queue_is_a_local_ocr_key(make_config: Any) -> None:
    from daemon.errors import ConfigError

    config = make_config(strategies=[{"name": "local", "kind": "local_ocr", "max_queue": 4}])
    assert config.strategies[0].max_queue == 4
    with pytest.raises(ConfigError, match=re.escape("strategies[0].max_queue")):
        make_config(strategies=[{"name": "m", "provider": "fake", "model": "x", "max_queue": 4}])


def test_a_caller_reads_the_queue_figures_in_the_error(short_tmp: Path) -> None:
    """A live daemon, one OCR worker (tests.fake_ocr_worker, 3 s a job),
    ``max_queue`` 1, three screenshots at once: one is read, one waits, one is
    refused, and -32001's ``data.strategies.local`` says ``overloaded`` with
    ``waiting`` and ``max_queue`` as numbers, as the document describes."""
    shots = short_tmp / "shots"
    shots.mkdir()
    paths = []
    for i in range(3):
        path = shots / f"{i}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * 64)
        paths.append(str(path))
    local = {"name": "local", "kind": "local_ocr", "rank": 0, "timeout": 30}
    local |= {"workers": 1, "max_queue": 1}
    daemon = Daemon(
        short_tmp,
        env={"CTXD_TEST_OCR_WORKER": f"{sys.executable} -m tests.fake_ocr_worker --delay 3"},
        strategies=[local],
        inputs={"allowed_dirs": [str(shots)]},
    ).start()
    for _ in range(200):  # its worker started (meanwhile the start holds it)
        if "OCR worker" in daemon.log() and "ready" in daemon.log():
            break
        time.sleep(0.05)

    async def main() -> list[Any]:
        ended: list[Any] = []
        async with AsyncClient(daemon.socket_path) as ctxd:

            async def one(path: str) -> None:
                try:
                    await ctxd.analyze(f"q{path[-5]}", path=path)
                    ended.append("ok")
                except AllStrategiesFailed as exc:
                    ended.append(exc.data)

            async with trio.open_nursery() as nursery:
                for path in paths:
                    nursery.start_soon(one, path)
        return ended

    try:
        ended = trio.run(main)
    finally:
        daemon.stop()
    # (testd's own test methods have results no schema describes: the document
    # of the daemon's methods, as rpc.discover gives it, is built here.)
    document = daemon_document(load_config(daemon.config_path))
    assert ended.count("ok") == 2, ended
    (data,) = [e for e in ended if e != "ok"]
    local_failure = data["strategies"]["local"]
    assert local_failure["error"] == "overloaded"
    assert (local_failure["waiting"], local_failure["max_queue"]) == (1, 1)
    schema = {"$ref": "#/components/schemas/AllStrategiesFailedData"}
    root = {"allOf": [schema], "components": document["components"]}
    assert list(Draft7Validator(root).iter_errors(data)) == []
    failure = document["components"]["schemas"]["StrategyFailure"]["properties"]
    assert failure["waiting"]["type"] == "integer"


async def test_another_deadline_stays_a_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only the strategy's own timeout is said as ``queued``/``timeout``: a
    caller's shorter deadline (a lost race, the drain) cancels as it comes."""
    ocr = engine(10.0)
    strategy = msgspec.structs.replace(ocr.strategy, timeout=30)
    with trio.move_on_after(3) as scope:
        await ocr.complete(strategy, IMAGE)
    assert scope.cancelled_caught
    assert trio.current_time() == 3
