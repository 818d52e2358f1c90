"""``python -m daemon`` / ``ctxd``: argv and env, logging, ``trio.run``, exit codes.

Order at start: config → store → socket. Exit status: 0 after a drain (or a
second signal), 78 (EX_CONFIG) when the configuration cannot be used or the
store was written by a newer ctxd, 1 when the daemon cannot serve or crashes.

SIGTERM and SIGINT are never left to their default actions: from the first
line of ``main`` a latch keeps them (a list, no work in the handler), the App
takes them over while it runs and counts those that came before (a stop
requested during the start wins: the daemon never serves), and after
``trio.run`` the latch keeps whatever comes while the store closes. So no
signal kills the daemon before its socket is removed and its store closed,
and no KeyboardInterrupt is ever raised.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

import trio

from daemon import __version__
from daemon.app import App
from daemon.config import Config, load_config
from daemon.errors import ConfigError, SchemaError, ServerError, StoreError
from daemon.logs import setup_logging
from daemon.store import Store

EX_OK = 0
EX_CRASH = 1
EX_CONFIG = 78
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

logger = logging.getLogger("daemon")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctxd", description="ctxd: the chat-context daemon")
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=os.environ.get("CTXD_CONFIG", "config.yaml"),
        help="configuration file (default: $CTXD_CONFIG, then ./config.yaml)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="load and check the configuration, then exit (0 good, 78 bad)",
    )
    parser.add_argument("--version", action="version", version=f"ctxd {__version__}")
    return parser.parse_args(argv)


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards the hard one: each connection is an
    fd, and systemd's default soft limit (1024) is below max_connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        logger.info("Raised the open-file limit from %d to %d", soft, target)
    elif soft != resource.RLIM_INFINITY and soft < wanted:
        logger.warning("open-file limit %d is below the %d ctxd may need", soft, wanted)


@contextlib.contextmanager
def latched_stop_signals() -> Iterator[list[int]]:
    """While inside, SIGTERM and SIGINT are appended to the list yielded (for
    the App to act on) instead of taking their default actions."""
    received: list[int] = []

    def keep(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, keep) for signum in STOP_SIGNALS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None, *, prepare: Callable[[App], None] | None = None) -> int:
    """Run the daemon; returns the exit status. ``prepare`` may add methods to
    the App before it serves (the test suite's daemon uses it)."""
    args = parse_args(argv)
    with latched_stop_signals() as early_signals:
        return _run(args, early_signals, prepare)


def _run(
    args: argparse.Namespace,
    early_signals: list[int],
    prepare: Callable[[App], None] | None,
) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ctxd: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.check_config:
        print(f"ctxd: {args.config}: ok")
        return EX_OK
    # Lines go out from a writer thread; closing it at the very end writes
    # every line logged (docs/operations.md, "Logs").
    with contextlib.closing(
        setup_logging(
            config.logging.level, config.logging.format, config.secrets(), background=True
        )
    ):
        return _start(config, early_signals, prepare)


def _start(config: Config, early_signals: list[int], prepare: Callable[[App], None] | None) -> int:
    # connections (each with its hang-up watch, an epoll fd) + their
    # rejections, provider pools, LMDB, the log, spare
    wanted = (
        config.socket.max_connections * 3
        + sum(p.max_connections for p in config.providers.values())
        + 256
    )
    raise_fd_limit(wanted)
    try:
        store = Store.open(config.store, config.rank_of())
    except SchemaError as exc:
        logger.error("cannot open the store: %s", exc)
        return EX_CONFIG
    except StoreError as exc:
        logger.error("cannot open the store: %s", exc)
        return EX_CRASH
    try:
        return _serve(App(config, store, early_signals), prepare)
    finally:
        store.close()


def _serve(app: App, prepare: Callable[[App], None] | None) -> int:
    if prepare is not None:
        prepare(app)
    try:
        trio.run(app.run)
    except ServerError as exc:
        logger.error("cannot start: %s", exc)
        return EX_CRASH
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        logger.critical("ctxd crashed", exc_info=True)
        return EX_CRASH
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
