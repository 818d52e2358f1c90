"""Shared fixtures: short socket directories and configs written to disk."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

from daemon.config import Config, load_config
from daemon.logs import setup_logging
from daemon.store import Store

ConfigFactory = Callable[..., Config]
StoreFactory = Callable[[Config], Store]


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """The daemon's log lines (SPEC form, INFO and up) written while the test runs."""
    out = io.StringIO()
    handler = setup_logging("INFO", "text", [], out)
    yield out
    logging.getLogger("daemon").removeHandler(handler)
    logging.getLogger("daemon").propagate = True


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: sun_path holds 107 bytes, pytest's are long."""
    path = Path(tempfile.mkdtemp(prefix="ctxd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config_data(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A minimal valid config under ``root``, with ``sections`` merged on top."""
    data: dict[str, Any] = {
        "socket": {"path": str(root / "ctxd.sock")},
        "store": {"path": str(root / "store")},
        "providers": {
            "fake": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "CTXD_TEST_KEY"}
        },
        "strategies": [
            {"name": "multimodal", "provider": "fake", "model": "fast-model", "rank": 1},
            {"name": "premium", "provider": "fake", "model": "slow-model", "rank": 2},
        ],
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **values}
        else:
            data[name] = values
    return data


def write_config(root: Path, **sections: dict[str, Any]) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config_data(root, **sections)))
    return path


@pytest.fixture
def make_config(short_tmp: Path) -> ConfigFactory:
    def make(**sections: dict[str, Any]) -> Config:
        return load_config(write_config(short_tmp, **sections))

    return make


@pytest.fixture
def open_store() -> Iterator[StoreFactory]:
    """Open the store a config names; every store opened is closed after the test."""
    opened: list[Store] = []

    def open_(config: Config) -> Store:
        store = Store.open(config.store, config.rank_of())
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


# Hypothesis: a bounded run in `make test`, a long one in `make fuzz`.
settings.register_profile("default", max_examples=300, deadline=None, derandomize=False)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
