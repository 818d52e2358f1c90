"""The local OCR strategy: a screenshot read on this host, no model called.

Two halves, in two processes:

* the daemon's: ``pool.py`` (:class:`~daemon.ocr.pool.LocalOcr`), the
  worker processes of a ``local_ocr`` strategy, its queue and its limits, on
  trio; the race reaches it through ``daemon.app``;
* the worker's (``python -m daemon.ocr.worker``): ``worker.py`` runs the
  PP-OCR engine and speaks the frame protocol; ``layout.py`` turns the
  engine's lines and the pixels into a MergeStep, with ``pixels.py`` (what
  the image says: bubbles, fills, icons), ``words.py`` (what a line's text
  says: a time, a key, a badge) and ``thread.py`` (threads without bubbles,
  Slack-like).

The arrows point one way: ``pool`` imports ``worker`` for the frame
protocol's constants only; the worker's half imports neither trio nor the
daemon's modules. This ``__init__`` imports nothing, so that the worker
process does not pay for the daemon's half.
"""
