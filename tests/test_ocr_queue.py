"""The local_ocr queue under a burst (issue 13, point 4), in virtual time: at
most ``max_queue`` jobs wait for a worker (``overloaded`` past it), and a job
that cannot get a worker in time to finish within the strategy's timeout ends
early with ``queued``, its position and expected wait, never as a plain
``timeout`` that a caller cannot tell from a slow inference."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from daemon.config import StrategyConfig
from daemon.errors import StrategyError
from daemon.local_ocr import LocalOcr
from daemon.providers import ImageInput

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


async def burst(ocr: LocalOcr, jobs: int, timeout: float) -> list[tuple[float, str]]:  # noqa: ASYNC109
    """``jobs`` calls at once, each under the strategy's timeout as the race
    sets it; when and how each ended."""
    strategy = msgspec.structs.replace(ocr.strategy, timeout=timeout)
    ended: list[tuple[float, str]] = [(0.0, "")] * jobs

    async def one(i: int) -> None:
        try:
            with trio.fail_after(strategy.timeout):
                await ocr.complete(strategy, IMAGE)
            ended[i] = (trio.current_time(), "ok")
        except trio.TooSlowError:
            ended[i] = (trio.current_time(), "timeout")
        except StrategyError as exc:
            ended[i] = (trio.current_time(), f"{exc.kind}: {exc.detail}")

    async with trio.open_nursery() as nursery:
        for i in range(jobs):
            nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()  # arrive in this order
    return ended


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


async def test_an_optimistic_guess_still_ends_queued_before_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first guess (1 s an inference) is wrong here (3 s): the second job
    gets the worker at 3 s and is slow (``timeout`` at 5 s, rightly); the
    third, still waiting at 4 s, when even a free worker could not finish
    within the timeout, ends ``queued``: the two cases differ."""
    ocr = engine(3.0)
    assert ocr.inference_s == 1.0
    ended = await burst(ocr, 3, timeout=5)
    assert ended[0] == (3, "ok")
    assert ended[1] == (5, "timeout")
    assert ended[2][0] == 4  # the 5 s timeout less the 1 s guess
    assert ended[2][1].startswith("queued: position 1 in the OCR queue")
    assert "no worker came free in time to finish within the 5s timeout" in ended[2][1]
    assert ocr.inference_s == 3.0  # measured now


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
