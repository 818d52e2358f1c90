"""``python -m daemon`` / ``ctxd``: argv and env, logging, ``trio.run``, exit codes.

Order at start: config → store → socket. Exit status: 0 after a drain (or a
second signal), 78 (EX_CONFIG) when the configuration cannot be used or the
store was written by a newer ctxd, 1 when the daemon cannot serve or crashes.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Callable, Sequence

import trio

from daemon import __version__
from daemon.app import App
from daemon.config import load_config
from daemon.errors import ConfigError, SchemaError, ServerError, StoreError
from daemon.logs import setup_logging
from daemon.store import Store

EX_OK = 0
EX_CRASH = 1
EX_CONFIG = 78

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


def main(argv: Sequence[str] | None = None, *, prepare: Callable[[App], None] | None = None) -> int:
    """Run the daemon; returns the exit status. ``prepare`` may add methods to
    the App before it serves (the test suite's daemon uses it)."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ctxd: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.check_config:
        print(f"ctxd: {args.config}: ok")
        return EX_OK
    setup_logging(config.logging.level, config.logging.format, config.secrets())
    # connections + their rejections, provider pools, LMDB, the log, spare
    wanted = (
        config.socket.max_connections * 2
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
        return _serve(App(config, store), prepare)
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
