"""The test daemon (``tests/testd.py``) with a hold on the store's commits.

    CTXD_TEST_HOLD_WRITES=PATH python -m tests.testd_lifecycle --config CONFIG

While the file PATH exists, the store's writer thread waits before each
commit (after touching ``PATH.entered``), as on a disk that stalls: the
process tests of the lifecycle use it to have a commit in progress when the
drain ends and a second signal comes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from daemon.__main__ import main
from daemon.app import App
from daemon.store.lmdb import _Append
from tests import testd


def prepare(app: App) -> None:
    testd.prepare(app)
    hold = os.environ.get("CTXD_TEST_HOLD_WRITES")
    if not hold:
        return
    write = app.store._write

    def held(batch: list[_Append]) -> list[int]:
        Path(f"{hold}.entered").touch()
        while os.path.exists(hold):
            time.sleep(0.01)
        return write(batch)

    app.store._write = held  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main(prepare=prepare))
