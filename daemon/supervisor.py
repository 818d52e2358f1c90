"""The long-lived nursery that owns every piece of work that outlives a request.

A request never spawns into its own nursery what must survive it: it asks the
supervisor (``spawn``), which runs the task in the daemon-wide nursery under a
cancel scope of its own (per-task deadline), counts it by name, refuses it past
the cap, and logs (never propagates) its failure, so that one broken task
cannot take down the others or the daemon.

Drain: ``drain(deadline)`` sets one absolute deadline for every task, those
already running and those spawned later, and returns once no task is left (at
the latest at the deadline, when the rest are cancelled).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

logger = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.by_name: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self._drain_deadline = math.inf
        self._scopes: set[trio.CancelScope] = set()
        self._changed = trio.Event()
        self.spawned = 0
        self.refused = 0
        self.failed = 0
        self.timed_out = 0

    @property
    def count(self) -> int:
        return len(self._scopes)

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
    ) -> bool:
        """Start ``fn(*args)`` in the background; False (and a warning) past the cap.

        The task is cancelled at ``deadline`` (absolute, trio clock) or at the
        drain deadline, whichever comes first. ``Cancelled`` at the deadline is
        the normal end of an overdue task; any other exception is logged.
        """
        if self._nursery is None:
            raise RuntimeError("supervisor is not running")
        if self.count >= self.max_tasks:
            self.refused += 1
            logger.warning(
                "Background task %s refused: %d of %d background tasks running",
                name,
                self.count,
                self.max_tasks,
            )
            return False
        scope = trio.CancelScope(deadline=min(deadline, self._drain_deadline))
        self._scopes.add(scope)
        self.by_name[name] += 1
        self.spawned += 1
        self._nursery.start_soon(self._run, name, scope, fn, args, name=f"background:{name}")
        return True

    async def _run(
        self,
        name: str,
        scope: trio.CancelScope,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
    ) -> None:
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
            self._scopes.discard(scope)
            self.by_name[name] -= 1
            if not self.by_name[name]:
                del self.by_name[name]
            self._changed.set()
            self._changed = trio.Event()

    async def wait_idle(self) -> None:
        """Return once no background task is running."""
        while self._scopes:
            await self._changed.wait()

    def set_drain_deadline(self, deadline: float) -> None:
        """Every task, running or spawned from now on, ends by ``deadline``."""
        self._drain_deadline = min(self._drain_deadline, deadline)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self._drain_deadline)
