"""The composition root and the drain sequence.

Shape of the running daemon::

    signal receiver             SIGTERM / SIGINT, open from the first line of run to the last
    watcher                     _watch_signals: first signal → drain, second → cancel all
    writer                      store.run_writer: stops only after root has ended
                                spend.run: saves the spend figures, once more at the end
                                fleet.run: publishes the store's outbox, probes the server
    root
    ├── supervisor.serve        background nursery (work that outlives requests)
    ├── _hold_nursery           the connection handlers' nursery
    ├── server.serve            the accept loop (its own task, so it can stop alone)
    ├── LocalOcr.run            starts the OCR workers of local_ocr strategies, reaps dead idle ones
    ├── check_models            the configured model ids against each provider's list, once
    └── MetricsServer.serve     GET /metrics on metrics.listen, when configured (to the end)

Drain (first signal, or ``request_drain()``): state ``draining``; the accept
loop is cancelled (listener closed, no new connections); requests already
started finish while new ones on open connections get -32000; one absolute
deadline, signal time + ``shutdown.drain_timeout``, is set on the connection
handlers and on the supervisor, so whatever still runs then is cancelled
together. Once no request and no background task is left (or at the deadline)
the root is cancelled; the store's writer stops once the root has ended (so a
result a cancelled task still holds is committed), the providers' clients are
closed and idle OCR workers stopped (shielded, 5 s at most), the socket file
removed, whatever ended the run. ``__main__`` closes the store after
``trio.run`` returns.

A drain requested before the daemon serves (a signal during the start) wins:
it never enters ``serving`` and never sends ``READY=1``.

Second signal (``cancel_all``): the root is cancelled at once, wherever the
drain is, and so is the closing of providers and OCR workers; a commit the
writer has begun still completes (its thread cannot be abandoned, and the
store is closed after it); the socket file is still removed and the store
still closed; exit 0. Signals are received until ``run`` returns, so none
falls back to its default action (``__main__`` latches them outside).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

import trio

from daemon import __version__, systemd
from daemon.analysis import RaceManager
from daemon.errors import ServerError
from daemon.metrics import MetricsServer
from daemon.model_list import check_models
from daemon.ocr.pool import LocalOcr
from daemon.providers import Provider
from daemon.server import BoundSocket, UnixServer, bind_unix
from daemon.service import Service
from daemon.spend import Spend
from daemon.stats import Stats
from daemon.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from daemon.config import Config
    from daemon.store import Store
    from daemon.store.fleet import Fleet

logger = logging.getLogger(__name__)


async def _hold_nursery(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


class App:
    def __init__(
        self, config: Config, store: Store, early_signals: list[int] | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.supervisor = Supervisor(config.llm.max_background_tasks)
        self.providers = {
            name: Provider.from_config(name, provider)
            for name, provider in config.providers.items()
        }
        self.local = {s.name: LocalOcr(s) for s in config.strategies if s.kind == "local_ocr"}
        self.spend = Spend(config.strategies)
        self.spend.load(store)  # today's and this month's figures survive a restart
        ledgers = {name: p.ledger for name, p in self.providers.items()}
        self.races = RaceManager(
            config,
            store,
            self.supervisor,
            dict(self.providers),
            Stats(config.strategies, ledgers, spend=self.spend),
            local=dict(self.local),
        )
        # Fleet mode (docs/fleet.md): from here on each commit feeds the outbox.
        self.fleet: Fleet | None = None
        if config.fleet is not None:  # imported here: coredis costs ~0.4 s to import
            from daemon.store.fleet import Fleet

            self.fleet = Fleet(config.fleet, store, config.rank_of())
        self.races.fleet = self.fleet
        self.service = Service(config, self.supervisor, store, self.races)
        self._drain_requested = trio.Event()
        self._root: trio.Nursery | None = None
        self._cleanup: trio.CancelScope | None = None
        self._stop_now = False  # a second signal came
        # Signals received before ``run`` took them over (``__main__``'s latch).
        self._early_signals = early_signals if early_signals is not None else []

    def request_drain(self) -> None:
        """Start the drain (idempotent); what SIGTERM and SIGINT do.

        From this call on, new requests get -32000 (ShuttingDown). Called
        before the daemon serves, it wins: the daemon never serves and never
        sends ``READY=1``."""
        if self._drain_requested.is_set():
            return
        self.service.state = "draining"
        systemd.notify("STOPPING=1\nSTATUS=draining")
        self._drain_requested.set()

    def leave_out_unconfigured(self) -> dict[str, str]:
        """The strategies that can never run as configured (an API key
        variable that is unset, a local_ocr strategy without the ocr extra):
        said once, here, and left out of races and upgrades; ``status`` shows
        them ``not_configured``. A start with the key set takes them back."""
        why: dict[str, str] = {}
        for strategy in self.config.strategies:
            engine = self.local.get(strategy.name)
            provider = self.config.providers.get(strategy.provider or "")
            if strategy.kind == "local_ocr" and engine is not None and not engine.available:
                why[strategy.name] = "the ocr extra is not installed (pip install '.[ocr]')"
            elif (env := provider.api_key_env if provider else None) and env not in os.environ:
                why[strategy.name] = f"{env} is not set"
        for name, reason in why.items():
            logger.warning(
                "%s: not_configured (%s): left out of races and upgrades until a start "
                "where it is configured",
                name,
                reason,
            )
        self.races.leave_out(why)
        return why

    async def _report_drain(self) -> None:
        """Tell systemd (``STATUS=``) what the drain still waits for, each second."""
        while True:
            systemd.notify(
                f"STATUS=draining: {self.service.in_flight} requests, "
                f"{self.supervisor.count} background tasks"
            )
            await trio.sleep(1)

    def cancel_all(self) -> None:
        """Stop at once; what a second signal does (idempotent).

        Requests and background tasks are cancelled now (a commit the store's
        writer has begun still completes), the closing of provider
        connections and OCR workers stops waiting; the socket is still
        removed and the store still closed."""
        self._stop_now = True
        self._drain_requested.set()  # at once, even before serving
        if self._root is not None:
            self._root.cancel_scope.cancel(reason="second signal")
        if self._cleanup is not None:
            self._cleanup.cancel(reason="second signal")

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until drained; return normally after a drain or a second signal.

        With ``handle_signals``, SIGTERM and SIGINT are received from the first
        line to the last (the closing steps included) and those that came
        before (``early_signals``) count as received now. The socket comes
        from systemd when it passed one (``LISTEN_FDS``); then it is never
        bound, chmod-ed or unlinked here. Raises ServerError before serving
        if the socket cannot be had."""
        self.leave_out_unconfigured()
        receiver = (
            trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
            if handle_signals
            else contextlib.nullcontext(None)
        )
        with receiver as signals:
            sock_config = self.config.socket
            activated = systemd.listen_fds()
            if len(activated) > 1:
                raise ServerError(f"systemd passed {len(activated)} sockets; ctxd serves one")
            bound: BoundSocket | None = None
            if activated:
                sock = activated[0]
            else:
                bound = bind_unix(sock_config.path, sock_config.file_mode)
                sock = bound.sock
            where = sock.getsockname() or sock_config.path
            async with trio.open_nursery() as watcher:
                if signals is not None:
                    await watcher.start(self._watch_signals, signals)
                try:
                    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                    server = UnixServer(listener, self.service, sock_config)
                    # The store's writer outlives the root: a task cancelled at the
                    # drain deadline may still be storing a result it holds (shielded),
                    # and that commit must happen now, not after a grace period.
                    async with trio.open_nursery() as writer:
                        await writer.start(self.store.run_writer)
                        # Spend figures: saved a second after each change, and
                        # once more when the writer stops (daemon/spend.py).
                        await writer.start(self.spend.run, self.store)
                        if self.fleet is not None:  # publishes what the writer commits
                            await writer.start(self.fleet.run)
                        await self._serve(server, where, bool(activated), task_status)
                        writer.cancel_scope.cancel(reason="every task has ended")
                finally:
                    self._root = None
                    await self._close_clients()
                    if bound is not None:
                        bound.close()
                    else:
                        sock.close()  # our copy of the fd; systemd keeps its own
                    logger.info("ctxd stopped")
                    watcher.cancel_scope.cancel(reason="stopped")

    async def _close_clients(self) -> None:
        """Close the providers' connections and stop the idle OCR workers:
        shielded, 5 s at most, cut short by a second signal."""
        with trio.CancelScope(shield=True) as self._cleanup:
            if self._stop_now:
                self._cleanup.cancel(reason="second signal")
            with trio.move_on_after(5):
                for provider in self.providers.values():
                    await provider.aclose()
                for engine in self.local.values():
                    await engine.aclose()
        self._cleanup = None

    async def _serve(
        self,
        server: UnixServer,
        where: str,
        from_systemd: bool,
        task_status: trio.TaskStatus[None],
    ) -> None:
        async with trio.open_nursery() as root:
            self._root = root
            if self._stop_now:
                root.cancel_scope.cancel(reason="second signal")
            await root.start(self.supervisor.serve)
            handlers: trio.Nursery = await root.start(_hold_nursery)
            accept_scope = trio.CancelScope()
            await root.start(self._accept, accept_scope, server, handlers)
            if self.config.metrics is not None:  # Prometheus; raises ServerError if unbound
                await root.start(MetricsServer(self.config.metrics, self.service).serve)
            interval = systemd.watchdog_interval()
            if interval is not None:
                root.start_soon(systemd.watchdog, interval)
            for engine in self.local.values():
                root.start_soon(engine.run)  # models load now, READY does not wait
            # configured model ids against the providers' lists; logs, never waits
            root.start_soon(check_models, dict(self.providers), list(self.config.strategies))
            task_status.started()
            if self._drain_requested.is_set():  # a signal during the start wins
                logger.info("Stop requested during the start: draining without serving")
            else:
                self.service.state = "serving"
                origin = " (from systemd)" if from_systemd else ""
                logger.info("ctxd %s serving on %s%s", __version__, where, origin)
                systemd.notify(f"READY=1\nSTATUS=serving on {where}\nMAINPID={os.getpid()}")
            await self._drain_requested.wait()
            root.start_soon(self._report_drain)
            await self._drain(accept_scope, handlers)
            root.cancel_scope.cancel(reason="drained")

    @staticmethod
    async def _accept(
        scope: trio.CancelScope,
        server: UnixServer,
        handlers: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await server.serve(handlers, task_status=task_status)

    async def _drain(self, accept_scope: trio.CancelScope, handlers: trio.Nursery) -> None:
        timeout = self.config.shutdown.drain_timeout
        deadline = trio.current_time() + timeout
        accept_scope.cancel(reason="draining")
        handlers.cancel_scope.deadline = deadline
        self.supervisor.set_drain_deadline(deadline)
        logger.info(
            "Draining: %d requests in flight, %d background tasks, deadline in %gs",
            self.service.in_flight,
            self.supervisor.count,
            timeout,
        )
        with trio.move_on_at(deadline):
            await self.service.wait_all_answered()
            await self.supervisor.wait_idle()
            logger.info("Drained: every request and background task finished")
            return
        logger.warning("Drain deadline reached after %gs: cancelling whatever still runs", timeout)

    async def _watch_signals(
        self,
        signals: AsyncIterator[int],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """First signal: drain. Second: cancel everything at once. Later ones:
        logged, nothing more to do. Signals that came before the receiver
        opened (``early_signals``, kept by ``__main__``) count first."""
        task_status.started()
        for signum in self._early_signals:
            self._on_signal(signum)
        self._early_signals.clear()
        async for signum in signals:
            self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._drain_requested.is_set():
            logger.info("%s received: draining", name)
            self.request_drain()
        elif not self._stop_now:
            logger.warning("%s received again: cancelling everything now", name)
            self.cancel_all()
        else:
            logger.warning("%s received again: already stopping", name)
