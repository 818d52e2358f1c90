"""The ``local_ocr`` strategy: PP-OCR on this host, in killable worker processes.

``LocalOcr.complete`` has the shape of ``Provider.complete``, so the race
treats it like any other strategy: its answer is MergeStep JSON text that
``daemon.extract`` validates exactly as a model's.

Why processes and not threads (measured with ``bench/ocr_bench.py``): an
inference is ~0.5 s of CPU in ONNX Runtime, NumPy and OpenCV. In a thread
it would share the GIL with the event loop for its Python parts, and a
thread cannot be stopped: a lost race or the drain deadline would have to
wait for it. A worker process is killed (SIGKILL) the moment its answer is
no longer wanted, runs at nice 10 so that the event loop wins the CPU, and
keeps the models' memory out of the daemon.

Pool: at most ``workers`` inferences at once (config ``strategies[].workers``,
default 1); each runs in its own process. Processes are started at daemon
start (``run`` warms them, in the background: it does not delay ``READY=1``)
and reused; one killed or dead is replaced at the next inference. An idle
worker that dies (the OOM killer, an operator's ``kill``) is reaped at once
by a task that ``run`` keeps per idle worker, logged, and dropped; in any
case a worker is checked before it is handed a job, so a dead one is never
asked. The models load once per process, when it starts.

Errors: no ``ocr`` extra installed → ``not_configured``; a URL input (ctxd
never fetches URLs) → ``not_configured``; an image the worker cannot decode
→ ``invalid_output``; a worker that dies mid-inference → ``connection``,
with its exit status and the last line it wrote to stderr (a Python
exception, say). The queue (``max_queue`` jobs waiting for a worker, first
come first served; the strategy's timeout covers the wait): full →
``overloaded``; no worker in time to finish, or the time spent mostly
waiting → ``queued``; read for most of the time → ``timeout``. These raise
``QueueError``, whose figures (position, expected wait, waited and read
seconds) -32001's ``data.strategies.<name>`` carries.

One process, its frames and its stderr: ``daemon/ocr/process.py``.
Cancellation (the strategy's timeout, a higher-ranked result, the drain
deadline) kills the worker at once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
from typing import TYPE_CHECKING, Final

import trio

from daemon.errors import StrategyError, StrategyErrorKind
from daemon.ocr.process import Worker, WorkerDied, worker_command
from daemon.providers import Completion

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from daemon.config import StrategyConfig
    from daemon.providers import ImageInput

logger = logging.getLogger(__name__)

MAX_QUEUE: Final = 16  # jobs that may wait for a worker (config ``max_queue``)
FIRST_GUESS: Final = 1.0  # seconds an inference is expected to take until one is measured
SAY_MARGIN: Final = 0.05  # a job ends this long before its deadline, to say why itself


def ocr_available() -> bool:
    """Whether the ``ocr`` extra (rapidocr-onnxruntime) is installed."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


class QueueError(StrategyError):
    """A failure of the OCR queue, with figures a program can read: -32001's
    ``data.strategies.<name>`` carries them next to ``error`` and ``detail``
    (``position``, ``expected_wait_s``; ``waiting``, ``max_queue``;
    ``waited_s``, ``read_s``)."""

    def __init__(self, kind: StrategyErrorKind, detail: str, **figures: float) -> None:
        super().__init__(kind, detail)
        self.figures = figures


class LocalOcr:
    """The pool of OCR workers of one ``local_ocr`` strategy."""

    def __init__(self, strategy: StrategyConfig, command: list[str] | None = None) -> None:
        self.strategy = strategy
        self.workers = strategy.workers or 1
        self.command = command or worker_command(self.workers)
        self.user_side = strategy.user_side or "right"
        self.engine: str | None = None
        self.available = command is not None or ocr_available()
        self._limiter = trio.CapacityLimiter(self.workers)
        self._idle: list[Worker] = []
        self._closed = False
        self.max_queue = MAX_QUEUE if strategy.max_queue is None else strategy.max_queue
        # Jobs that wait for a worker, in arrival order: the scope of each
        # one's wait and its deadline (a new measure moves its give-up time).
        self._queue: dict[object, tuple[trio.CancelScope, float]] = {}
        self.inference_s = FIRST_GUESS  # moving average of the inferences measured
        self._measured = False
        self._watchers: trio.Nursery | None = None  # while ``run`` runs

    async def run(self) -> None:
        """Start the workers (``warm``), then, until cancelled, reap and drop
        any idle worker that dies. A task of the daemon's root."""
        async with trio.open_nursery() as nursery:
            self._watchers = nursery
            try:
                for worker in self._idle:
                    nursery.start_soon(self._watch_idle, worker)
                await self.warm()
                await trio.sleep_forever()
            finally:
                self._watchers = None

    async def _watch_idle(self, worker: Worker) -> None:
        """Wait (and so reap) an idle worker's exit; cancelled when it is
        handed a job or the pool stops."""
        with trio.CancelScope() as scope:
            worker.idle_watch = scope
            await worker.process.wait()
            if worker in self._idle:
                self._idle.remove(worker)
                await self._bury(worker)

    async def _bury(self, worker: Worker) -> None:
        """A worker that died while idle: its last words, logged; its pipes, closed."""
        await worker.kill()  # already dead: reaps, reads stderr to its end, closes
        why = f"status {worker.process.returncode}"
        if worker.last_stderr_line:
            why += f": {worker.last_stderr_line[:200]}"
        logger.warning(
            "%s: idle OCR worker %d exited (%s); the next inference starts a new one",
            self.strategy.name,
            worker.process.pid,
            why,
        )

    async def _take_idle(self) -> Worker | None:
        """An idle worker that is still alive, or None. Dead ones met on the
        way are reaped, logged and dropped."""
        while self._idle:
            worker = self._idle.pop()
            if worker.idle_watch is not None:
                worker.idle_watch.cancel(reason="handed a job")
                worker.idle_watch = None
            if worker.process.poll() is None:
                return worker
            await self._bury(worker)
        return None

    async def warm(self) -> None:
        """Start every worker now, so the first inference does not pay the
        model load. Failures are logged; ``complete`` tries again."""
        if not self.available:  # not_configured: the App said so at start, once
            return
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._warm_one)

    async def _warm_one(self) -> None:
        async with self._limiter:
            try:
                worker = await self._spawn()
            except StrategyError as error:
                logger.warning("%s: %s", self.strategy.name, error.detail)
                return
            await self._release(worker, healthy=True)

    async def _spawn(self) -> Worker:
        try:
            worker, self.engine = await Worker.start(self.command)
        except (OSError, WorkerDied) as exc:
            raise StrategyError("connection", f"OCR worker could not start: {exc}") from None
        logger.info(
            "%s: OCR worker %d ready (%s)", self.strategy.name, worker.process.pid, self.engine
        )
        return worker

    async def _release(self, worker: Worker, *, healthy: bool) -> None:
        """Back to the idle workers, or killed: when it failed, was cancelled,
        or the pool closed meanwhile (a worker nobody holds must not live on)."""
        if healthy and not self._closed:
            self._idle.append(worker)
            if self._watchers is not None:
                self._watchers.start_soon(self._watch_idle, worker)
        else:
            await worker.kill()

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        """The MergeStep JSON text of the screenshot, read on this host.

        Raises StrategyError; the caller bounds the time, and cancellation
        kills the worker doing the inference."""
        if not self.available:
            raise StrategyError(
                "not_configured", "the ocr extra is not installed (pip install '.[ocr]')"
            )
        if not image.url.startswith("data:"):
            raise StrategyError(
                "not_configured", "local_ocr reads path and data inputs; ctxd never fetches a URL"
            )
        if self._closed:
            raise StrategyError("cancelled", "the daemon is stopping")
        # The strategy's timeout, which the race starts right before this call:
        # the job ends SAY_MARGIN before it, to say whether it was queued or
        # slow. Any other deadline or cancel (a lost race, a request's
        # deadline, the drain) stays a cancellation, as it comes.
        arrived = trio.current_time()
        limit = arrived + strategy.timeout
        async with self._worker_turn(strategy, limit):
            got = trio.current_time()
            worker = await self._take_idle() or await self._spawn()
            healthy = False
            try:
                with trio.move_on_at(limit - SAY_MARGIN) as reading:
                    started = trio.current_time()
                    reply = await worker.ask({"image_url": image.url, "user_side": self.user_side})
                    healthy = True
                    self._measure(trio.current_time() - started)
            except WorkerDied as exc:
                raise StrategyError("connection", f"OCR worker {exc}") from None
            finally:
                await self._release(worker, healthy=healthy)
            if reading.cancelled_caught:
                raise self._too_late(strategy, got - arrived, trio.current_time() - got)
        if "error" in reply:
            raise StrategyError("invalid_output", str(reply["error"]))
        text = str(reply.get("step", ""))  # anything else fails validation, as a model's would
        dropped = reply.get("dropped_lines")
        return Completion(
            text=text,
            served_model=self.engine,
            usage=None,
            attempts=1,
            dropped_lines=dropped if isinstance(dropped, int) else None,
        )

    def expected_wait(self, position: int) -> float:
        """Seconds until the job at ``position`` (1: next) gets a worker, every
        worker busy with a whole inference still to go (the worst case)."""
        return math.ceil(position / self.workers) * self.inference_s

    def _measure(self, seconds: float) -> None:
        self.inference_s = seconds if not self._measured else 0.8 * self.inference_s + 0.2 * seconds
        self._measured = True
        self._move_give_ups()

    def _at_least(self, seconds: float) -> None:
        """An inference cut short after ``seconds``: it takes at least that."""
        if seconds > self.inference_s:
            self.inference_s = seconds
            self._move_give_ups()

    def _give_up(self, limit: float) -> float:
        """Past this, even a worker free at once would not finish by ``limit``."""
        return limit - SAY_MARGIN - self.inference_s

    def _move_give_ups(self) -> None:
        """An inference was measured (its worker comes free now): each waiting
        job's give-up time moves with the estimate (a first guess that was too
        short must not leave a job waiting for a worker it can no longer use),
        and one that cannot finish in time even if every job ahead of it took
        no more than one inference a worker gives up now."""
        now = trio.current_time()
        for position, turn in enumerate(self._waiting(), 1):
            scope, limit = self._queue[turn]
            give_up = self._give_up(limit)
            if now + self.expected_wait(position - 1) > give_up:
                give_up = now
            scope.deadline = give_up

    def _waiting(self) -> list[object]:
        """The jobs still waiting (one handed a worker leaves the queue when it runs)."""
        holders = self._limiter.statistics().borrowers
        return [turn for turn in self._queue if turn not in holders]

    def _queued(self, strategy: StrategyConfig, position: int, why: str) -> QueueError:
        wait = self.expected_wait(position)
        return QueueError(
            "queued",
            f"position {position} in the OCR queue ({self.workers} worker(s) busy), expected "
            f"wait {wait:.1f}s + {self.inference_s:.1f}s to read: {why} the "
            f"{strategy.timeout:g}s timeout",
            position=position,
            expected_wait_s=round(wait, 3),
        )

    def _too_late(self, strategy: StrategyConfig, waited: float, read: float) -> QueueError:
        """Its time ran out while it read: ``queued`` when it had waited for
        its worker longer than it read (the queue took the time), else
        ``timeout`` (slow)."""
        self._at_least(read)
        return QueueError(
            "queued" if waited > read else "timeout",
            f"waited {waited:.1f}s for an OCR worker, read for {read:.1f}s: no answer "
            f"within the {strategy.timeout:g}s timeout",
            waited_s=round(waited, 3),
            read_s=round(read, 3),
        )

    @contextlib.asynccontextmanager
    async def _worker_turn(self, strategy: StrategyConfig, limit: float) -> AsyncIterator[None]:
        """A worker's turn, first come first served. The strategy's timeout
        covers the wait for it: a job that cannot get a worker in time to
        finish by ``limit`` ends early with ``queued`` (at once when the
        expected wait says so, else when the time is up), and one that finds
        ``max_queue`` jobs waiting ends at once with ``overloaded``."""
        limiter = self._limiter
        turn = object()
        try:
            # A free worker: taken at once, never counted as waiting. (trio
            # hands a freed worker to the first waiter: none is free while
            # one waits, so nobody is overtaken.)
            limiter.acquire_on_behalf_of_nowait(turn)
        except trio.WouldBlock:
            await self._wait_for_turn(strategy, limit, turn)
        else:
            try:
                await trio.lowlevel.checkpoint()
            except BaseException:
                limiter.release_on_behalf_of(turn)
                raise
        try:
            yield
        finally:
            limiter.release_on_behalf_of(turn)

    async def _wait_for_turn(self, strategy: StrategyConfig, limit: float, turn: object) -> None:
        waiting = len(self._waiting())
        if waiting >= self.max_queue:
            raise QueueError(
                "overloaded",
                f"the OCR queue is full: {waiting} jobs wait for "
                f"{self.workers} worker(s) (max_queue {self.max_queue})",
                waiting=waiting,
                max_queue=self.max_queue,
            )
        position = waiting + 1
        if trio.current_time() + self.expected_wait(position) > self._give_up(limit):
            raise self._queued(strategy, position, "it could not finish within")
        scope = trio.CancelScope(deadline=self._give_up(limit))
        self._queue[turn] = (scope, limit)
        try:
            with scope:
                await self._limiter.acquire_on_behalf_of(turn)
            if turn not in self._limiter.statistics().borrowers:
                position = self._waiting().index(turn) + 1
                why = "no worker came free in time to finish within"
                raise self._queued(strategy, position, why)
        finally:
            del self._queue[turn]

    async def aclose(self) -> None:
        """Stop every idle worker (a busy one is killed by its cancellation)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            if worker.idle_watch is not None:
                worker.idle_watch.cancel(reason="the pool is closing")
            await worker.kill()
