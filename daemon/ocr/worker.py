"""The OCR worker process: ``python -m daemon.ocr.worker``.

The daemon (``daemon/ocr/pool.py``) starts one process per concurrent
inference and talks to it over its stdin/stdout with frames: a 4-byte
big-endian length, then a msgpack map. The worker

1. lowers its own CPU priority (nice 10), so that the daemon's event loop
   wins the CPU whenever it has something to do (systemd/ctxd.service allows
   ``setpriority`` for this; where it is denied the worker runs anyway and
   the daemon logs a warning);
2. exits on end of input, and within a second of its parent's death even
   in the middle of an inference;
3. loads the PP-OCR models of ``rapidocr-onnxruntime`` once, then writes
   ``{"ready": true, "engine": "<name version>", "niced": bool}``;
4. reads a portrait phone's screenshot at most 736 px wide, any other
   shape at its full size up to 4.2 megapixels (``ocr_scale``: the
   detector's work falls with the pixels, the text must keep a readable
   size; the layout reads the full pixels with the boxes scaled back), and
   answers each ``{"image_url": "data:<mime>;base64,...", "user_side":
   "left" | "right"}`` (the data URL the daemon holds anyway) with
   ``{"step": <MergeStep JSON text>, "lines": n, "dropped_lines": n, "ms": float}``
   (``dropped_lines``: lines the layout left out because it could not tell
   chrome from a message, ``daemon/ocr/layout.py``) or
   ``{"error": "<what is wrong>"}`` for an image it cannot decode; a request
   with ``"engine_lines": true`` (tests/ocr_lines.py, never the daemon) gets
   the engine's own output too, under that key.

It is killed, not asked, when the daemon no longer wants an answer (a lost
race, the drain deadline): nothing it holds needs to be saved.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import math
import os
import struct
import sys
import threading
import time
import traceback
from importlib import metadata
from typing import IO, Any, Final, Literal

import msgspec

MAX_PIXELS: Final = 40_000_000  # a decompression bomb is refused, not decoded
DETECTOR_MIN_SIDE: Final = 736  # rapidocr's Det.limit_side_len with limit_type "min"
PHONE_ASPECT: Final = 1.5  # a portrait phone is this much taller than wide, at least (16:9 is 1.78)
MAX_READ_PIXELS: Final = 4_200_000  # a shot that is no portrait phone is read at most this large
HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 64 * 1024 * 1024
ENGINE_PACKAGE: Final = "rapidocr-onnxruntime"


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """One job: ``daemon/ocr/pool.py`` sends it; a frame that is not one is
    answered with an error and the worker reads the next."""

    image_url: str  # a base64 data URL
    user_side: Literal["left", "right"] = "right"
    engine_lines: bool = False  # tests/ocr_lines.py: the engine's raw lines too


REQUEST: Final = msgspec.msgpack.Decoder(Request)


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame, or None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def write_frame(stream: IO[bytes], message: dict[str, Any]) -> None:
    data = msgspec.msgpack.encode(message)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def decode_data_url(url: str) -> bytes:
    head, comma, payload = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("the image is not a base64 data URL")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ValueError("the image's base64 is broken") from None


def detector_pixels(width: int, height: int) -> float:
    """The pixels the text detector works on: it scales an image up until its
    shorter side is ``DETECTOR_MIN_SIDE``, so a 1x160 strip would become
    736x117,760 (two minutes of CPU, measured) and is refused instead."""
    scale = max(1.0, DETECTOR_MIN_SIDE / max(1, min(width, height)))
    return width * height * scale * scale


def ocr_scale(width: int, height: int) -> float:
    """The factor the engine reads a screenshot at, never up (the detector
    scales a small one up itself). A portrait phone's shot (height at least
    ``PHONE_ASPECT`` times the width) has its width down to
    ``DETECTOR_MIN_SIDE``: a phone's text is a fixed share of its width, so
    a 1440x2560 shot read at 736x1308 (a quarter of the detector's pixels)
    has its text as large as a 720 px phone's, which PP-OCR reads as well.
    Any other shape (landscape, a tablet, a desktop) says nothing of its
    text's size by its sides: a 2560x1440 desktop at 1x has 13 px text,
    which the phone's factor (0.51) would make unreadable. It is read at
    full size, or down to ``MAX_READ_PIXELS`` when larger (a 5K desktop's
    text is drawn at 2x). The layout reads the full pixels; the boxes are
    scaled back."""
    if height >= PHONE_ASPECT * width:
        return min(1.0, DETECTOR_MIN_SIDE / max(1, width))
    return min(1.0, math.sqrt(MAX_READ_PIXELS / max(1, width * height)))


class ImageError(ValueError):
    """An image the worker does not read; the message says why (the reply's ``error``)."""


# From the screenshot's bytes to the engine's lines: ``decode_image``,
# ``ocr_scale``, ``ocr_input``, ``run_engine`` and ``Reader.__init__``.
# tests/ocr_lines.py fingerprints their code (and the engine's versions):
# the engine lines it caches for the quality test are used only while these
# are unchanged. What comes after the engine is ``answer``.


def decode_image(data: bytes) -> Any:
    """The screenshot as an RGB array (height x width x 3).

    Raises ImageError for bytes that are no image, an image too large to
    decode, or one so narrow that the detector would blow it up (``detector_pixels``)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"image of {width}x{height} pixels is too large to read")
            if detector_pixels(width, height) > MAX_PIXELS:
                raise ImageError(f"image of {width}x{height} pixels is too narrow to read")
            return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image could not be decoded: {exc}") from None


def ocr_input(rgb: Any) -> Any:
    """The BGR array the engine reads (``ocr_scale``; INTER_AREA: no aliasing):
    the whole preprocessing between the decoded screenshot and the engine."""
    import cv2
    import numpy as np

    height, width = rgb.shape[:2]
    scale = ocr_scale(width, height)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if scale >= 1.0:
        return bgr
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def engine_name() -> str:
    return f"{ENGINE_PACKAGE} {metadata.version(ENGINE_PACKAGE)}"


def run_engine(engine: Any, rgb: Any) -> list[Any] | None:
    """The engine's lines of the screenshot, ``[[quad, text, score], ...]``
    with the quads at ``ocr_scale`` (None: no text found). Raises whatever the
    engine raises."""
    result, _ = engine(ocr_input(rgb), use_cls=False)
    return result  # type: ignore[no-any-return]


def is_empty_chat(step: dict[str, Any]) -> bool:
    """A chat with no message in view (just opened, the keyboard up, someone
    typing): the layout found its header, which names who the chat is with.
    Then "nothing there" is the answer, with the names and the count of
    lines left out (an unsent draft, a row a bar cuts: ``dropped_lines``
    tells "nothing" from "not sure"); with no name the layout is not sure it
    is a chat at all and gives no step."""
    names = step.get("participants") or {}
    return bool(names.get("talker") or names.get("group"))


def answer(rgb: Any, result: list[Any] | None, user_side: str) -> dict[str, Any]:
    """Everything after the engine: the layout reads its lines (``run_engine``)
    and the pixels into the worker's reply, without ``ms``: ``{"step",
    "lines", "dropped_lines"}`` (no bubbles in an empty chat: ``is_empty_chat``),
    or ``{"error"}`` when no chat bubble is found.
    tests/test_ocr_quality.py calls it with cached engine lines."""
    from daemon.ocr.layout import lines_from_ocr, read

    height, width = rgb.shape[:2]
    lines = lines_from_ocr(result, ocr_scale(width, height))
    step, dropped = read(rgb, lines, "left" if user_side == "left" else "right")
    if not step["bubbles"] and not is_empty_chat(step):
        # not a chat screenshot, or not one the layout is sure of: let others answer
        return {"error": f"no chat bubble found ({len(lines)} text lines)"}
    return {
        "step": json.dumps(step, ensure_ascii=False),
        "lines": len(lines),
        "dropped_lines": dropped,
    }


class Reader:
    """The OCR engine and the layout, in-process (the worker's whole job)."""

    def __init__(self, threads: int = 0) -> None:
        from rapidocr_onnxruntime import RapidOCR

        # 0: ONNX Runtime's default, one thread per core
        self.engine = RapidOCR(intra_op_num_threads=threads or -1, inter_op_num_threads=1)

    def read(self, data: bytes, user_side: str, *, engine_lines: bool = False) -> dict[str, Any]:
        """The reply to one screenshot (see the module's docstring); with
        ``engine_lines``, also the engine's own output (``run_engine``, ``[]``
        for none) under that key, whatever the layout made of it."""
        started = time.perf_counter()
        try:
            rgb = decode_image(data)
        except ImageError as exc:
            return {"error": str(exc)}
        try:
            result = run_engine(self.engine, rgb)
        except Exception as exc:  # e.g. ResizeImgError on a 5000x5 strip
            detail = str(exc) or type(exc).__name__
            height, width = rgb.shape[:2]
            return {"error": f"the OCR engine cannot read this {width}x{height} image: {detail}"}
        try:
            reply = answer(rgb, result, user_side)
        except Exception as exc:  # a bug in the layout: this screenshot fails, not the worker
            traceback.print_exc()  # to stderr, which the daemon logs
            height, width = rgb.shape[:2]
            return {"error": f"the layout failed on this {width}x{height} image: {exc!r}"}
        if "error" not in reply:
            reply["ms"] = round((time.perf_counter() - started) * 1000, 1)
        if engine_lines:
            reply["engine_lines"] = result or []
        return reply


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    """Exit when the daemon is gone, even in the middle of an inference.

    Not ``PR_SET_PDEATHSIG``: that signal follows the *thread* that forked,
    and trio starts processes from its worker threads, which end after 10 s
    idle; every worker would be killed 10 s after the daemon's last spawn.
    ``parent`` comes from the command line, so a daemon that died before
    this line ran is noticed too."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def lower_priority(increment: int = 10) -> bool:
    """nice +10; False where a seccomp filter forbids it (a worker that runs
    at the daemon's priority still works, the event loop just competes)."""
    try:
        os.nice(increment)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.ocr.worker")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="the daemon's pid")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads")
    args = parser.parse_args(argv)
    _watch_parent(args.parent)
    niced = lower_priority()
    # The frames get their own copy of fd 1; fd 1 itself (and sys.stdout)
    # become stderr, so nothing a library prints, from Python or from C,
    # can corrupt a frame.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    reader = Reader(args.threads)
    write_frame(stdout, {"ready": True, "engine": engine_name(), "niced": niced})
    while (frame := read_frame(stdin)) is not None:
        try:
            request = REQUEST.decode(frame)
            data = decode_data_url(request.image_url)
        except (msgspec.DecodeError, ValueError) as exc:  # ValidationError is a DecodeError
            write_frame(stdout, {"error": f"bad request: {exc}"})
            continue
        if request.engine_lines:  # tests/ocr_lines.py: the engine's output too
            write_frame(stdout, reader.read(data, request.user_side, engine_lines=True))
        else:
            write_frame(stdout, reader.read(data, request.user_side))
    return 0


if __name__ == "__main__":
    sys.exit(main())
