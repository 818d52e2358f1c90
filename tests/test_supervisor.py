"""The background nursery: cap, deadlines, failure containment, drain."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from daemon.supervisor import Supervisor


async def test_cap_counts_and_names(autojump_clock: trio.testing.MockClock, caplog) -> None:
    supervisor = Supervisor(max_tasks=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        assert supervisor.spawn("premium", trio.sleep, 10)
        assert supervisor.spawn("premium", trio.sleep, 20)
        assert not supervisor.spawn("other", trio.sleep, 1)
        assert "Background task other refused: 2 of 2" in caplog.text
        assert supervisor.count == 2
        assert dict(supervisor.by_name) == {"premium": 2}
        await trio.sleep(15)
        assert dict(supervisor.by_name) == {"premium": 1}
        assert supervisor.spawn("other", trio.sleep, 1)
        await supervisor.wait_idle()
        assert trio.current_time() == 20
        assert supervisor.count == 0
        assert dict(supervisor.by_name) == {}
        nursery.cancel_scope.cancel()
    assert supervisor.refused == 1


async def test_per_task_deadline(autojump_clock: trio.testing.MockClock) -> None:
    supervisor = Supervisor(max_tasks=8)
    finished = []

    async def work(seconds: float) -> None:
        await trio.sleep(seconds)
        finished.append(seconds)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        supervisor.spawn("a", work, 5, deadline=trio.current_time() + 30)
        supervisor.spawn("b", work, 50, deadline=trio.current_time() + 30)
        await supervisor.wait_idle()
        assert trio.current_time() == 30
        nursery.cancel_scope.cancel()
    assert finished == [5]
    assert supervisor.timed_out == 1


async def test_failure_is_logged_and_contained(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(max_tasks=8)
    survivor_done = trio.Event()

    async def broken() -> None:
        raise ValueError("broken background task")

    async def survivor() -> None:
        await trio.sleep(0.01)
        survivor_done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        supervisor.spawn("survivor", survivor)
        supervisor.spawn("broken", broken)
        await supervisor.wait_idle()
        nursery.cancel_scope.cancel()
    assert survivor_done.is_set()
    assert supervisor.failed == 1
    record = next(r for r in caplog.records if "broken failed" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


async def test_drain_deadline_applies_to_running_and_later_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    supervisor = Supervisor(max_tasks=8)
    ended: dict[str, float] = {}

    async def work(name: str, seconds: float) -> None:
        try:
            await trio.sleep(seconds)
        finally:
            ended[name] = trio.current_time()

    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        supervisor.spawn("quick", work, "quick", 5)
        supervisor.spawn("slow", work, "slow", 100)
        supervisor.set_drain_deadline(30)
        supervisor.spawn("late", work, "late", 100, deadline=60)
        assert supervisor.drain_deadline == 30
        await supervisor.wait_idle()
        nursery.cancel_scope.cancel()
    assert ended == {"quick": 5, "slow": 30, "late": 30}


async def test_spawn_before_serve_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        Supervisor(1).spawn("x", trio.sleep, 1)
