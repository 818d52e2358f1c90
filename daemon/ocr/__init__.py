"""The local OCR strategy: a screenshot read on this host, no model called.

Two halves, in two processes:

* the daemon's, on trio: ``pool.py`` (:class:`~daemon.ocr.pool.LocalOcr`),
  the pool of worker processes of a ``local_ocr`` strategy, its queue and
  its limits; ``process.py``, one worker process seen from the daemon (its
  start, its frames, its stderr, its death); the race reaches the pool
  through ``daemon.app``;
* the worker's (``python -m daemon.ocr.worker``): ``worker.py`` runs the
  PP-OCR engine and speaks the frame protocol; ``layout.py`` turns the
  engine's lines and the pixels into a MergeStep, stage by stage, each
  stage a module of its own that its docstring names.

The arrows point one way: ``pool`` imports ``process``, which imports
``worker`` for the frame protocol's constants only; the worker's half
imports neither trio nor the daemon's modules. This ``__init__`` imports
nothing, so that the worker process does not pay for the daemon's half.
"""
