"""The real daemon plus the test-only methods of tests/helpers.py.

    python -m tests.testd --config PATH

Process-level tests use it to have slow requests and background tasks of a
test-only kind in a real process with real signals.
"""

from __future__ import annotations

import sys

from daemon.__main__ import main
from daemon.app import App
from tests.helpers import register_spec_methods, register_test_methods


def prepare(app: App) -> None:
    register_test_methods(app.service)
    register_spec_methods(app.service)


if __name__ == "__main__":
    sys.exit(main(prepare=prepare))
