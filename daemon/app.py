"""The composition root and the drain sequence.

Shape of the running daemon::

    writer                      store.run_writer: stops only after root has ended
    root
    ├── supervisor.serve        background nursery (work that outlives requests)
    ├── _hold_nursery           the connection handlers' nursery
    ├── server.serve            the accept loop (its own task, so it can stop alone)
    ├── LocalOcr.warm           starts the OCR workers of local_ocr strategies
    └── _watch_signals          SIGTERM / SIGINT → drain; a second one → cancel all

Drain (first signal, or ``request_drain()``): state ``draining``; the accept
loop is cancelled (listener closed, no new connections); requests already
started finish while new ones on open connections get -32000; one absolute
deadline, signal time + ``shutdown.drain_timeout``, is set on the connection
handlers and on the supervisor, so whatever still runs then is cancelled
together. Once no request and no background task is left (or at the deadline)
the root is cancelled; the store's writer stops once the root has ended (so a
result a cancelled task still holds is committed), the providers' clients are
closed (shielded, 5 s at most) and the socket file removed, whatever ended the
run, and idle OCR workers are stopped. ``__main__`` closes the store after ``trio.run`` returns.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import trio

from daemon import __version__, systemd
from daemon.analysis import RaceManager
from daemon.errors import ServerError
from daemon.local_ocr import LocalOcr
from daemon.providers import Provider
from daemon.server import BoundSocket, UnixServer, bind_unix
from daemon.service import Service
from daemon.stats import Stats
from daemon.supervisor import Supervisor

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.store import Store

logger = logging.getLogger(__name__)


async def _hold_nursery(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


class App:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.supervisor = Supervisor(config.llm.max_background_tasks)
        self.providers = {
            name: Provider.from_config(name, provider)
            for name, provider in config.providers.items()
        }
        self.local = {s.name: LocalOcr(s) for s in config.strategies if s.kind == "local_ocr"}
        self.races = RaceManager(
            config,
            store,
            self.supervisor,
            dict(self.providers),
            Stats(config.strategies),
            local=dict(self.local),
        )
        self.service = Service(config, self.supervisor, store, self.races)
        self._drain_requested = trio.Event()
        self._root: trio.Nursery | None = None

    def request_drain(self) -> None:
        """Start the drain (idempotent); what SIGTERM and SIGINT do.

        From this call on, new requests get -32000 (ShuttingDown)."""
        if self.service.state == "serving":
            self.service.state = "draining"
        if not self._drain_requested.is_set():
            systemd.notify("STOPPING=1\nSTATUS=draining")
        self._drain_requested.set()

    async def _report_drain(self) -> None:
        """Tell systemd (``STATUS=``) what the drain still waits for, each second."""
        while True:
            systemd.notify(
                f"STATUS=draining: {self.service.in_flight} requests, "
                f"{self.supervisor.count} background tasks"
            )
            await trio.sleep(1)

    def cancel_all(self) -> None:
        """Cancel everything at once; what a second signal does."""
        if self._root is not None:
            self._root.cancel_scope.cancel(reason="second signal")

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until drained; return normally after a drain or a second signal.

        The socket comes from systemd when it passed one (``LISTEN_FDS``);
        then it is never bound, chmod-ed or unlinked here. Raises ServerError
        before serving if the socket cannot be had."""
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
        try:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            server = UnixServer(listener, self.service, sock_config)
            # The store's writer outlives the root: a task cancelled at the
            # drain deadline may still be storing a result it holds (shielded),
            # and that commit must happen now, not after a grace period.
            async with trio.open_nursery() as writer:
                await writer.start(self.store.run_writer)
                await self._serve(server, where, bool(activated), handle_signals, task_status)
                writer.cancel_scope.cancel(reason="every task has ended")
        finally:
            self._root = None
            with trio.move_on_after(5, shield=True):
                for provider in self.providers.values():
                    await provider.aclose()
                for engine in self.local.values():
                    await engine.aclose()
            if bound is not None:
                bound.close()
            else:
                sock.close()  # our copy of the fd; systemd keeps its own
            logger.info("ctxd stopped")

    async def _serve(
        self,
        server: UnixServer,
        where: str,
        from_systemd: bool,
        handle_signals: bool,
        task_status: trio.TaskStatus[None],
    ) -> None:
        async with trio.open_nursery() as root:
            self._root = root
            if handle_signals:
                await root.start(self._watch_signals)
            await root.start(self.supervisor.serve)
            handlers: trio.Nursery = await root.start(_hold_nursery)
            accept_scope = trio.CancelScope()
            await root.start(self._accept, accept_scope, server, handlers)
            self.service.state = "serving"
            origin = " (from systemd)" if from_systemd else ""
            logger.info("ctxd %s serving on %s%s", __version__, where, origin)
            interval = systemd.watchdog_interval()
            if interval is not None:
                root.start_soon(systemd.watchdog, interval)
            for engine in self.local.values():
                root.start_soon(engine.warm)  # models load now, READY does not wait
            task_status.started()
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
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._drain_requested.is_set():
                    logger.info("%s received: draining", name)
                    self.request_drain()
                else:
                    logger.warning("%s received again: cancelling everything now", name)
                    self.cancel_all()
