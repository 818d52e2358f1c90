"""The OCR engine's lines of every committed screenshot, cached for the quality test.

    .venv/bin/python -m tests.ocr_lines            # how many shots the cache covers
    .venv/bin/python -m tests.ocr_lines --write    # read every shot again, write the cache

tests/test_ocr_quality.py scores the local strategy on ~94 screenshots
(tests/data/chats and tests/data/apps). Almost all of its time is the
engine (PP-OCR, rapidocr-onnxruntime), which changes only when the engine
or what feeds it changes; what changes from commit to commit is the layout
that turns the engine's lines and the pixels into a MergeStep
(``ocr_worker.answer``). tests/data/ocr_lines.json holds the engine's raw
output per shot (``run_engine``: ``[[quad, text, score], ...]``, quads at
the engine's scale, nothing of the layout), each under a key:

    sha256(the PNG's bytes + fingerprint())

where the fingerprint is the versions of the engine and of the libraries
between the bytes and it (rapidocr-onnxruntime, onnxruntime, OpenCV, NumPy,
Pillow) and the code of the worker's steps before the engine
(``ocr_worker.decode_image``, ``ocr_scale``, ``ocr_input`` with
``DETECTOR_MIN_SIDE``, ``run_engine``, ``Reader.__init__``; docstrings and
comments aside). A shot whose key does not match (a new or redrawn PNG, an
upgrade, a change to the preprocessing) is read by the real engine instead,
slowly and correctly, and the test prints the command above. The lines are
kept exactly: integer coordinates as integers, scores as the engine's
floats (JSON round-trips them bit for bit).

The engine runs in the daemon's own worker processes (``local_ocr.Worker``,
``local_ocr.worker_command``: the same command, threads and priority),
asked for its lines with ``"engine_lines": true``. tests/test_ocr_lines.py
runs it on one shot per app and proves the cache equal to what it reads now.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import inspect
import json
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from daemon.ocr import worker as ocr_worker
from daemon.ocr.process import Worker, worker_command
from tests.ocr_eval import APPS, DATA, cases

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

CACHE: Final = Path(__file__).resolve().parent / "data" / "ocr_lines.json"
WRITE: Final = ".venv/bin/python -m tests.ocr_lines --write"
WORKERS: Final = 2  # the quality test's pool: two workers of one thread on two cores
# Everything between a PNG's bytes and the engine's output.
VERSIONS: Final = ("rapidocr-onnxruntime", "onnxruntime", "numpy", "pillow")
PREPROCESSING: Final[tuple[Callable[..., Any], ...]] = (
    ocr_worker.decode_image,
    ocr_worker.detector_pixels,
    ocr_worker.ocr_scale,
    ocr_worker.ocr_input,
    ocr_worker.run_engine,
    ocr_worker.Reader.__init__,
)

EngineLine = list[Any]  # [[x1, y1, ..., x4, y4], text, score]: a quad flattened


def shots() -> list[Path]:
    """Every screenshot the quality test reads, in its order."""
    return [png for data in (DATA, APPS) for png, _ in cases(data)]


def shot_name(png: Path) -> str:
    """The shot's name in the cache: its path under tests/data."""
    return png.resolve().relative_to(DATA.parent).as_posix()


def _code(function: Callable[..., Any]) -> str:
    """The function's code without its docstring and comments."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def fingerprint() -> dict[str, str]:
    """What decides the engine's output besides the PNG: versions, and a
    hash of the preprocessing's code and parameters."""
    import cv2

    found = {name: metadata.version(name) for name in VERSIONS}
    found["opencv"] = str(cv2.__version__)
    code = "\n".join(_code(function) for function in PREPROCESSING)
    code += f"\nDETECTOR_MIN_SIDE = {ocr_worker.DETECTOR_MIN_SIDE}"
    code += f"\nMAX_PIXELS = {ocr_worker.MAX_PIXELS}"
    code += f"\nPHONE_ASPECT = {ocr_worker.PHONE_ASPECT}"
    code += f"\nMAX_READ_PIXELS = {ocr_worker.MAX_READ_PIXELS}"
    found["preprocessing"] = hashlib.sha256(code.encode()).hexdigest()[:16]
    return found


def shot_key(data: bytes, prints: dict[str, str]) -> str:
    """The key of a PNG's engine lines: its bytes and the fingerprint."""
    digest = hashlib.sha256(data)
    digest.update(json.dumps(prints, sort_keys=True).encode())
    return digest.hexdigest()


def _number(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def canonical(result: Iterable[Any] | None) -> list[EngineLine]:
    """The engine's ``[[quad, text, score], ...]`` as the cache keeps it,
    losing nothing: a quad flattened, whole coordinates as integers."""
    return [
        [[_number(v) for point in quad for v in point], str(text), float(score)]
        for quad, text, score in result or ()
    ]


def engine_result(lines: Sequence[EngineLine]) -> list[Any]:
    """Cached lines back in the engine's shape (``ocr_worker.answer`` reads it)."""
    return [[[quad[i : i + 2] for i in range(0, 8, 2)], text, score] for quad, text, score in lines]


class Cache:
    """tests/data/ocr_lines.json: the lines of each shot under its key."""

    def __init__(self, path: Path = CACHE) -> None:
        self.path = path
        self.prints = fingerprint()
        self.written: dict[str, str] = {}  # the fingerprint the file was written with
        self.entries: dict[str, tuple[str, list[EngineLine]]] = {}
        if path.exists():
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.written = loaded["fingerprint"]
            for name, entry in loaded["shots"].items():
                self.entries[name] = (entry["key"], entry["lines"])

    def lines(self, png: Path, data: bytes) -> list[EngineLine] | None:
        """The shot's cached lines if its key matches, else None."""
        key, lines = self.entries.get(shot_name(png), ("", []))
        return lines if key == shot_key(data, self.prints) else None

    def why_stale(self) -> str:
        """What differs from the fingerprint the cache was written with."""
        changed = [
            f"{name} {self.written.get(name)} -> {value}"
            for name, value in self.prints.items()
            if self.written.get(name) != value
        ]
        return ", ".join(changed) or "new or changed screenshots"

    def write(self, lines: dict[Path, list[EngineLine]]) -> None:
        """The cache for exactly these shots, one line of JSON per shot."""
        rows = []
        for png in sorted(lines, key=shot_name):
            entry = {"key": shot_key(png.read_bytes(), self.prints), "lines": lines[png]}
            row = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
            rows.append(f"{json.dumps(shot_name(png))}:{row}")
        prints = json.dumps(self.prints, sort_keys=True)
        text = '{"fingerprint":' + prints + ',\n"shots":{\n' + ",\n".join(rows) + "\n}}\n"
        self.path.write_text(text, encoding="utf-8")


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def read_with_engine(
    pngs: Sequence[Path], workers: int = WORKERS
) -> dict[Path, dict[str, Any]]:
    """The worker's reply to each shot, with the engine's lines
    (``engine_lines``, canonical): ``workers`` worker processes started as
    the daemon starts them, killed at the end (or when cancelled)."""
    replies: dict[Path, dict[str, Any]] = {}
    send, receive = trio.open_memory_channel[Path](len(pngs))
    for png in pngs:
        send.send_nowait(png)
    send.close()

    async def work() -> None:
        worker, _ = await Worker.start(worker_command(workers))
        try:
            async for png in receive:
                request = {"image_url": data_url(png.read_bytes()), "engine_lines": True}
                reply = await worker.ask({**request, "user_side": "right"})
                reply["engine_lines"] = canonical(reply.get("engine_lines"))
                replies[png] = reply
        finally:
            await worker.kill()

    async with trio.open_nursery() as nursery:
        for _ in range(min(workers, len(pngs))):
            nursery.start_soon(work)
    return replies


def engine_lines(pngs: Sequence[Path], cache: Cache | None = None) -> dict[Path, list[EngineLine]]:
    """Each shot's engine lines: from the cache where the key matches, else
    read by the engine now (and the command that refreshes the cache printed)."""
    cache = cache or Cache()
    out: dict[Path, list[EngineLine]] = {}
    missing = []
    for png in pngs:
        found = cache.lines(png, png.read_bytes())
        if found is None:
            missing.append(png)
        else:
            out[png] = found
    if missing:
        print(
            f"\n{len(missing)} of {len(pngs)} screenshots are not in {CACHE.name} under their "
            f"key ({cache.why_stale()}): the OCR engine reads them now. Refresh it: {WRITE}"
        )
        for png, reply in trio.run(read_with_engine, missing).items():
            out[png] = reply["engine_lines"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ocr_lines", description=__doc__)
    parser.add_argument("--write", action="store_true", help="read every shot, write the cache")
    args = parser.parse_args(argv)
    cache = Cache()
    pngs = shots()
    stale = [png for png in pngs if cache.lines(png, png.read_bytes()) is None]
    print(f"{CACHE}: {len(pngs) - len(stale)} of {len(pngs)} screenshots under their key")
    if not args.write:
        return 1 if stale else 0
    replies = trio.run(read_with_engine, pngs)
    cache.write({png: reply["engine_lines"] for png, reply in replies.items()})
    print(f"wrote {len(replies)} screenshots' engine lines to {CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
