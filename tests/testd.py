"""The real daemon plus the test-only methods of tests/helpers.py.

    python -m tests.testd --config PATH

Process-level tests use it to have slow requests and background tasks of a
test-only kind in a real process with real signals; ``CTXD_TEST_OCR_WORKER``
replaces the command of local_ocr workers.
"""

from __future__ import annotations

import os
import shlex
import sys

from daemon.__main__ import main
from daemon.app import App
from tests.helpers import register_spec_methods, register_test_methods


def prepare(app: App) -> None:
    register_test_methods(app.service)
    register_spec_methods(app.service)
    worker = os.environ.get("CTXD_TEST_OCR_WORKER")
    if worker:  # a fake OCR worker (tests/fake_ocr_worker.py) for local_ocr strategies
        for engine in app.local.values():
            engine.command = shlex.split(worker)
            engine.available = True


if __name__ == "__main__":
    sys.exit(main(prepare=prepare))
