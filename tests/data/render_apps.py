"""Render chat screenshots that look like the real apps, with their truth:
the command line of the ``tests/data/render`` package (its docstring says
what is drawn and what the truth holds).

    .venv/bin/python tests/data/render_apps.py     # writes tests/data/apps/
    .venv/bin/python tests/data/render_apps.py --seed N --out DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.data.render.canvas import Canvas, quote_text
from tests.data.render.cli import main, plan

__all__ = ["Canvas", "main", "plan", "quote_text"]

if __name__ == "__main__":
    main()
