"""npm tools for the tests, pinned, installed once into a cache outside the repo.

    bin_dir = npm_tools()  # .../node_modules/.bin with tsc and open-rpc-typings

Node and npm are on this project's machines: without them the test fails
with a message saying so (it never skips). The packages come from the npm
registry by name and version, into ``$CTXD_NPM_CACHE`` (default
``~/.cache/ctxd-npm/<hash of the pins>``); nothing is written to the repo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PINS = {
    "typescript": "5.9.3",
    "@open-rpc/typings": "1.13.1",
}


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not on PATH: the OpenRPC checks need node and npm (node 20 is on this "
            "project's machines; apt-get install nodejs npm)"
        )
    return path


def npm_tools() -> Path:
    """The ``node_modules/.bin`` directory holding the pinned tools."""
    _need("node")
    npm = _need("npm")
    digest = hashlib.sha256(json.dumps(PINS, sort_keys=True).encode()).hexdigest()[:12]
    default = Path.home() / ".cache" / "ctxd-npm" / digest
    root = Path(os.environ.get("CTXD_NPM_CACHE", default))
    bin_dir = root / "node_modules" / ".bin"
    done = root / ".installed"
    if done.exists():
        return bin_dir
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps({"private": True, "dependencies": PINS}))
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"npm install of {PINS} failed:\n{result.stdout}\n{result.stderr}")
    done.touch()
    return bin_dir
