"""The long-lived nursery that owns every piece of work that outlives a request.

A request never spawns into its own nursery what must survive it: it asks the
supervisor (``spawn``), which runs the task in the daemon-wide nursery under a
cancel scope of its own (per-task deadline), counts it by name, refuses it past
the cap, and logs (never propagates) its failure, so that one broken task
cannot take down the others or the daemon.

Two kinds of task share the nursery. *Background* tasks (``spawn``) count
against ``max_tasks`` and by name in ``status.background``. *Attached* tasks
(``spawn(..., background=False)``, the legs of a race while a request still
waits for it) do not; ``adopt`` turns one into a background task when the
request has its answer, refusing past the cap.

Drain: ``set_drain_deadline(deadline)`` sets one absolute deadline for every
task, those already running and those spawned later; ``wait_idle`` returns
once no task of either kind is left.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

logger = logging.getLogger(__name__)


class TaskHandle:
    """A task of the supervisor: its name, its cancel scope, whether it counts."""

    __slots__ = ("background", "name", "scope")

    def __init__(self, name: str, scope: trio.CancelScope, background: bool) -> None:
        self.name = name
        self.scope = scope
        self.background = background


class Supervisor:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.by_name: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self._drain_deadline = math.inf
        self._tasks: set[TaskHandle] = set()
        self._changed = trio.Event()
        self.spawned = 0
        self.refused = 0
        self.failed = 0
        self.timed_out = 0

    @property
    def count(self) -> int:
        """Background tasks running (attached ones not included)."""
        return sum(self.by_name.values())

    @property
    def drain_deadline(self) -> float | None:
        return None if self._drain_deadline == math.inf else self._drain_deadline

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the background nursery and keep it open until cancelled.

        Cancelling this task cancels every background task with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def spawn(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        deadline: float = math.inf,
        background: bool = True,
    ) -> TaskHandle | None:
        """Start ``fn(*args)``; None (and a warning) when a background task
        would pass the cap.

        The task is cancelled at ``deadline`` (absolute, trio clock; it may be
        moved later through the handle's scope) or at the drain deadline,
        whichever comes first. ``Cancelled`` at a deadline is the normal end
        of an overdue task; any other exception is logged.
        """
        if self._nursery is None:
            raise RuntimeError("supervisor is not running")
        if background and not self._room(name):
            return None
        handle = TaskHandle(
            name, trio.CancelScope(deadline=min(deadline, self._drain_deadline)), background
        )
        self._tasks.add(handle)
        if background:
            self.by_name[name] += 1
        self.spawned += 1
        self._nursery.start_soon(self._run, handle, fn, args, name=f"supervisor:{name}")
        return handle

    def adopt(self, handle: TaskHandle) -> bool:
        """Make an attached task a background task; False past the cap."""
        if handle.background or handle not in self._tasks:
            return handle.background
        if not self._room(handle.name):
            return False
        handle.background = True
        self.by_name[handle.name] += 1
        return True

    def set_deadline(self, handle: TaskHandle, deadline: float) -> None:
        """Move a task's deadline (never past the drain deadline)."""
        handle.scope.deadline = min(deadline, self._drain_deadline)

    def _room(self, name: str) -> bool:
        if self.count < self.max_tasks:
            return True
        self.refused += 1
        logger.warning(
            "Background task %s refused: %d of %d background tasks running",
            name,
            self.count,
            self.max_tasks,
        )
        return False

    async def _run(
        self, handle: TaskHandle, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        name, scope = handle.name, handle.scope
        finished = False
        try:
            with scope:
                await fn(*args)
                finished = True
            if scope.cancelled_caught:
                self.timed_out += 1
        except Exception:
            finished = True
            self.failed += 1
            logger.exception("Background task %s failed", name)
        finally:
            # Cancelled by its own scope or by the whole nursery: either way,
            # at the drain deadline it is worth a line in the log.
            if not finished and trio.current_time() >= self._drain_deadline:
                logger.warning("Background task %s cancelled at the drain deadline", name)
            self._tasks.discard(handle)
            if handle.background:
                self.by_name[name] -= 1
                if not self.by_name[name]:
                    del self.by_name[name]
            self._changed.set()
            self._changed = trio.Event()

    async def wait_idle(self) -> None:
        """Return once no task of either kind is running."""
        while self._tasks:
            await self._changed.wait()

    def set_drain_deadline(self, deadline: float) -> None:
        """Every task, running or spawned from now on, ends by ``deadline``."""
        self._drain_deadline = min(self._drain_deadline, deadline)
        for handle in self._tasks:
            handle.scope.deadline = min(handle.scope.deadline, self._drain_deadline)
