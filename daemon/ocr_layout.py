"""OCR text lines + the screenshot's pixels → a MergeStep; no I/O.

Runs inside the OCR worker process (``daemon/ocr_worker.py``), which has
NumPy and OpenCV from the ``ocr`` extra; the daemon itself never imports it.

How a chat screenshot is read:

1. **Bubbles from pixels.** For each text line, the region of one colour
   around it is flood-filled from a few seed points just outside the line's
   box (left, right, above, below): first following small steps from pixel
   to pixel (a bubble whose colour fades), then staying close to the seed's
   colour (a flat bubble with JPEG noise). A fill whose bounding box contains the
   line and spans neither the whole width nor most of the height is the
   line's bubble; every other line found inside that box belongs to the same
   bubble, so multi-line bubbles stay whole and two bubbles never merge, how
   ever close they sit. A fill that covers the chat background (a timestamp,
   the title) is not a bubble.
2. **Chrome, and text in no bubble.** Text outside every bubble found is
   chrome when it is in the top band (84 dp, 1 dp = width / 360: status and
   title bars), centred (timestamps, system notes) or small print (lower
   than 0.8 of the typical bubble text: receipts, names); the title is the
   line centred in the top band, the talker's name. Any other text outside
   the bubbles found (a bubble no fill could follow, or an app that draws
   text on the background) is grouped into bubbles by gap and alignment.
3. **Side and speaker.** A bubble is on the side it is nearer to; the app's
   own user is on ``user_side`` (right in every mainstream app), the talker
   on the other.
4. **Text.** A bubble's lines are read top to bottom, pieces of one row left
   to right, joined with a space between two Latin words and with nothing
   next to CJK text.

The result is a plain dict in the MergeStep shape; the daemon validates it
with the same code as a model's answer (``daemon.extract``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

Side = Literal["left", "right"]
Box = tuple[int, int, int, int]
Image = npt.NDArray[np.uint8]

TOP_BAND_DP: Final = 84  # status bar + title bar
FILL_TOLERANCE: Final = 10  # per channel, from the seed's colour
FLOAT_TOLERANCE: Final = 3  # per channel, from the neighbouring pixel
SEED_OFFSET: Final = 4  # px outside the line's box
SMALL_PRINT: Final = 0.8  # a loose line lower than this share of bubble text is chrome
_UNREAD = re.compile(r"\s*[(（]\d+[)）]\s*$")


@dataclass(frozen=True, slots=True)
class Line:
    box: Box
    text: str
    score: float

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass(slots=True)
class Bubble:
    box: Box
    lines: list[Line] = field(default_factory=list)


def lines_from_ocr(result: list[Any] | None) -> list[Line]:
    """RapidOCR's ``[[quad, text, score], ...]`` → axis-aligned lines."""
    lines = []
    for quad, text, score in result or ():
        text = str(text).strip()
        if not text:
            continue
        xs = [float(p[0]) for p in quad]
        ys = [float(p[1]) for p in quad]
        box = (round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys)))
        lines.append(Line(box=box, text=text, score=float(score)))
    return lines


def _contains(outer: Box, inner: Box, slack: int) -> bool:
    return (
        outer[0] - slack <= inner[0]
        and outer[1] - slack <= inner[1]
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def _seeds(box: Box, width: int, height: int) -> list[tuple[int, int]]:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    points = [
        (x1 - SEED_OFFSET, cy),
        (x2 + SEED_OFFSET, cy),
        (cx, y1 - SEED_OFFSET),
        (cx, y2 + SEED_OFFSET),
    ]
    return [(x, y) for x, y in points if 0 <= x < width and 0 <= y < height]


def find_bubble(image: Image, line: Line) -> Box | None:
    """The box of the region of one colour around ``line``, if it is a bubble.

    First a floating fill (each pixel close to its neighbour), which follows
    a bubble whose colour fades from top to bottom; then a fill close to the
    seed's own colour, which holds on noisy (JPEG) flat bubbles."""
    height, width = image.shape[:2]
    for mode, tolerance in ((0, FLOAT_TOLERANCE), (cv2.FLOODFILL_FIXED_RANGE, FILL_TOLERANCE)):
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | mode | (255 << 8)
        for seed in _seeds(line.box, width, height):
            mask = np.zeros((height + 2, width + 2), np.uint8)
            diff = (tolerance,) * 3
            _, _, _, (x, y, w, h) = cv2.floodFill(image, mask, seed, (0, 0, 0), diff, diff, flags)
            box = (x, y, x + w, y + h)
            if w >= 0.9 * width or h >= 0.8 * height:
                break  # the background (or a bar): this line is not in a bubble of this kind
            if _contains(box, line.box, slack=2):
                return box
    return None


def _join(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if text and _latin(text[-1]) and _latin(part[0]):
            text += " "
        text += part
    return text


def _latin(char: str) -> bool:
    return char.isascii() and not char.isspace()


def bubble_text(lines: list[Line]) -> str:
    """Rows top to bottom, pieces of a row left to right."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: ln.cy):
        if rows and abs(line.cy - rows[-1][0].cy) < 0.5 * max(line.height, 1):
            rows[-1].append(line)
        else:
            rows.append([line])
    return _join([_join([ln.text for ln in sorted(row, key=lambda ln: ln.box[0])]) for row in rows])


def _group_by_gap(lines: list[Line]) -> list[Bubble]:
    """Fallback without bubble backgrounds: consecutive lines close together
    and aligned on one edge make one bubble, padded by half a line."""
    bubbles: list[Bubble] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1], ln.box[0])):
        h = max(line.height, 1)
        if bubbles:
            last = bubbles[-1].lines[-1]
            near = line.box[1] - last.box[3] < 0.6 * h
            aligned = abs(line.box[0] - last.box[0]) < h or abs(line.box[2] - last.box[2]) < h
            if near and aligned:
                bubbles[-1].lines.append(line)
                continue
        bubbles.append(Bubble(box=line.box, lines=[line]))
    for bubble in bubbles:  # build_step clips the padded box to the image
        pad = max(ln.height for ln in bubble.lines) // 2
        bubble.box = (
            min(ln.box[0] for ln in bubble.lines) - pad,
            min(ln.box[1] for ln in bubble.lines) - pad,
            max(ln.box[2] for ln in bubble.lines) + pad,
            max(ln.box[3] for ln in bubble.lines) + pad,
        )
    return bubbles


def _title(lines: list[Line], width: int) -> str | None:
    """The talker's name: the line nearest the centre of the top band."""
    top = TOP_BAND_DP * width / 360
    candidates = [
        ln
        for ln in lines
        if ln.cy < top and abs(ln.cx - width / 2) < 0.12 * width and ln.cy > 0.3 * top
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda ln: abs(ln.cx - width / 2))
    return _UNREAD.sub("", best.text) or None


def clip(lines: list[Line], width: int, height: int) -> list[Line]:
    """Boxes cut to the image; a line with nothing left of its box is dropped
    (an engine's box may stick out of the image, or be a point)."""
    out = []
    for line in lines:
        x1, y1, x2, y2 = line.box
        box = (max(0, x1), max(0, y1), min(width, x2), min(height, y2))
        if box[0] < box[2] and box[1] < box[3]:
            out.append(Line(box=box, text=line.text, score=line.score))
    return out


def build_step(image: Image, lines: list[Line], user_side: Side = "right") -> dict[str, Any]:
    """A MergeStep-shaped dict from the screenshot (RGB, H×W×3) and its lines.

    Every bubble box lies inside the image and is not empty, whatever boxes
    the engine gave."""
    height, width = image.shape[:2]
    image = np.array(image, dtype=np.uint8, order="C")  # OpenCV wants it writable
    lines = clip(lines, width, height)
    bubbles: list[Bubble] = []
    loose: list[Line] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1], ln.box[0])):
        home = next((b for b in bubbles if _contains(b.box, line.box, slack=2)), None)
        if home is None:
            box = find_bubble(image, line)
            if box is not None:
                home = Bubble(box=box)
                bubbles.append(home)
        if home is None:
            loose.append(line)
        else:
            home.lines.append(line)
    talker = _title(loose, width)
    # Text outside every bubble found: chrome (the bars, timestamps, small
    # print), or messages in bubbles no fill could find, grouped by layout.
    top = TOP_BAND_DP * width / 360
    body = [ln for ln in loose if ln.cy >= top and not _centred(ln, width)]
    bubbled = sorted(ln.height for b in bubbles for ln in b.lines)
    if bubbled:
        typical = bubbled[len(bubbled) // 2]
        body = [ln for ln in body if ln.height >= SMALL_PRINT * typical]
    bubbles += _group_by_gap(body)
    talker_side: Side = "left" if user_side == "right" else "right"
    out = []
    for bubble in sorted(bubbles, key=lambda b: (b.box[1], b.box[0])):
        x1, y1, x2, y2 = bubble.box
        side: Side = "left" if x1 < width - x2 else "right"
        out.append(
            {
                "speaker": "user" if side == user_side else "talker",
                "side": side,
                "bbox": [max(0, x1), max(0, y1), min(width, x2), min(height, y2)],
                "text": bubble_text(bubble.lines),
            }
        )
    layout = {user_side: "user", talker_side: "talker"}
    return {
        "participants": {"user": None, "talker": talker},
        "layout": {"left": layout["left"], "right": layout["right"]},
        "bubbles": out,
        "summary": None,
    }


def _centred(line: Line, width: int) -> bool:
    """Timestamps and system notes sit in the middle, away from both edges."""
    left, right = line.box[0], width - line.box[2]
    return abs(left - right) < 0.08 * width and min(left, right) > 0.2 * width
