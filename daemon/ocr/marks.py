"""Marks drawn in a chat screenshot: icons, avatars, dots; no I/O.

The pixels half of ``daemon/ocr/layout.py`` that looks at what is drawn
rather than at regions of one colour (``daemon/ocr/pixels.py``): a voice
note's waveform or speaker arcs, a typing indicator's dots, a file card's
icon, an avatar left of a thread's row or initials on one, and what is
drawn at a thread's column. Sizes in dp, 1 dp = width / 360 px. Runs in
the OCR worker (NumPy and OpenCV, the ``ocr`` extra).
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from daemon.ocr import pixels as px
from daemon.ocr.pixels import RGB, Box, Image


def avatar_left(image: Image, box: Box, column: float, paper: RGB) -> bool:
    """A square avatar starts left of a thread's name row (Slack-like): in
    the strip between the screen's edge and the messages' column, the paper
    just above the row's top and mostly not the paper from its top down (the
    text row under a name is still beside the avatar, but not at its top; a
    follow-up's row has nothing there)."""
    dp = image.shape[1] / 360
    x1, x2 = max(0, round(column - 40 * dp)), max(0, round(column - 10 * dp))

    def off(top: float, bottom: float) -> float:
        y1, y2 = max(0, round(top)), min(image.shape[0], round(bottom))
        if x2 - x1 < 4 or y2 - y1 < 2:
            return 0.0
        region = image[y1:y2, x1:x2].astype(np.int16)
        return float((np.abs(region - np.array(paper, np.int16)).max(axis=2) > 24).mean())

    above = off(box[1] - 10 * dp, box[1] - 5 * dp)
    return above < 0.25 and off(box[1] + 2 * dp, box[1] + 14 * dp) >= 0.5


def voice_icon(image: Image, box: Box, colour: RGB) -> bool:
    """A voice note's icon in the bubble ``box`` of ``colour``: a waveform
    (at least 10 thin bars side by side on one middle line, at a steady
    pitch, of differing heights: text has letters of a few heights, wider
    ones and gaps between words) or a speaker's arcs (2 or more curves on
    one middle line, each taller than the one before it, close together:
    digits and brackets in a text are as tall as each other), at one end
    of the bubble."""
    x1, y1, x2, y2 = box
    dp = image.shape[1] / 360
    crop = image[max(0, y1) : y2, max(0, x1) : x2].astype(np.int16)
    if crop.size == 0:
        return False
    mask = (np.abs(crop - np.array(colour, np.int16)).max(axis=2) > 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    parts = [tuple(int(v) for v in stats[i][:5]) for i in range(1, n) if stats[i][4] >= 2]
    return _waveform(parts, dp) or _arcs(parts, dp, crop.shape[1])


def _waveform(parts: list[tuple[int, ...]], dp: float) -> bool:
    bars = sorted((p for p in parts if p[2] <= 4 * dp and p[3] >= p[2]), key=lambda p: p[0])
    for anchor in bars:
        middle = anchor[1] + anchor[3] / 2
        line = [b for b in bars if abs(b[1] + b[3] / 2 - middle) <= 2 * dp]  # one middle line
        if len(line) < 10:
            continue
        steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(line))
        typical = steps[len(steps) // 2]
        steady = sum(1 for s in steps if abs(s - typical) <= max(1.0, 0.25 * typical))
        heights = [b[3] for b in line]
        if typical <= 8 * dp and steady >= 0.8 * len(steps) and max(heights) >= 2 * min(heights):
            return True
    return False


def _arcs(parts: list[tuple[int, ...]], dp: float, width: int) -> bool:
    curves = sorted(
        (p for p in parts if p[3] >= 5 * dp and p[2] <= 0.6 * p[3] and p[4] <= 0.6 * p[2] * p[3]),
        key=lambda p: p[0],
    )  # thin and curved: a stroke fills a small share of its box (a letter's stem fills it)
    for i, first in enumerate(curves):
        for grows in (True, False):
            chain = [first]
            for part in curves[i + 1 :]:
                last = chain[-1]
                centred = abs((part[1] + part[3] / 2) - (last[1] + last[3] / 2)) <= 2 * dp
                taller = part[3] >= 1.25 * last[3] if grows else last[3] >= 1.25 * part[3]
                if centred and taller and part[0] - (last[0] + last[2]) <= 6 * dp:
                    chain.append(part)
            end = min(chain[0][0], width - chain[-1][0] - chain[-1][2])
            if len(chain) >= 2 and end <= 40 * dp:  # the icon is at the bubble's end
                return True
    return False


def ink_blobs(image: Image, region: Box, paper: RGB) -> list[Box]:
    """Boxes of what is drawn on the paper in ``region`` (text, an emoji,
    a card), parts closer than 2 dp joined. Worked out at 360 to 719 px
    wide (1 or 2 px a dp), boxes given at full size."""
    height, width = image.shape[:2]
    x1, y1 = max(0, round(region[0])), max(0, round(region[1]))
    x2, y2 = min(width, round(region[2])), min(height, round(region[3]))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return []
    f = max(1, width // 360)
    band = image[y1:y2:f, x1:x2:f].astype(np.int16)
    mask = (np.abs(band - np.array(paper, np.int16)).max(axis=2) > 40).astype(np.uint8)
    k = max(3, round(2 * width / 360 / f) | 1)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    pad = k // 2
    out = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i][:4])
        out.append(
            (
                x1 + (x + pad) * f,
                y1 + (y + pad) * f,
                min(x2, x1 + (x + w - pad) * f),
                min(y2, y1 + (y + h - pad) * f),
            )
        )
    return out


def icon_left(image: Image, box: Box) -> bool:
    """A file card: a square of saturated colour (the file type's icon)
    14 to 40 dp inside its left edge; a code block has text there, whose
    strokes fill no such square, however coloured."""
    dp = image.shape[1] / 360
    cy = (box[1] + box[3]) // 2
    x1, x2 = round(box[0] + 14 * dp), round(box[0] + 40 * dp)
    y1, y2 = round(cy - 12 * dp), round(cy + 12 * dp)
    patch = image[max(0, y1) : y2, max(0, x1) : x2].astype(np.int16)
    if patch.size == 0:
        return False
    saturated = (patch.max(axis=2) - patch.min(axis=2)) >= px.INK_SATURATION
    return bool(saturated.mean() >= 0.6)  # (the type's label on the icon is white)


def typing_dots(image: Image, box: Box) -> bool:
    """A typing indicator: a small bubble holding three round dots of one
    size, evenly spaced on one middle line (nothing was sent yet)."""
    x1, y1, x2, y2 = box
    dp = image.shape[1] / 360
    if x2 - x1 > 90 * dp or y2 - y1 > 50 * dp or x2 - x1 < 8 or y2 - y1 < 8:
        return False
    crop = image[y1:y2, x1:x2].astype(np.int16)
    ground = np.array(px.pixel(image, (x1 + x2) // 2, y1 + max(2, round(3 * dp))), np.int16)
    mask = (np.abs(crop - ground).max(axis=2) > 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = mask.shape
    dots = [  # not the round ends' corners, which touch the box
        (x, y, w, h)
        for x, y, w, h, area in (tuple(int(v) for v in stats[i][:5]) for i in range(1, n))
        if area >= 4 and x > 0 and y > 0 and x + w < width and y + h < height
    ]
    if len(dots) != 3:
        return False
    sizes = [max(w, h) for _, _, w, h in dots]
    round_ = all(abs(w - h) <= max(2, 0.3 * max(w, h)) for _, _, w, h in dots)
    middles = [y + h / 2 for _, y, _, h in dots]
    xs = sorted(x + w / 2 for x, _, w, _ in dots)
    steps = [b - a for a, b in itertools.pairwise(xs)]
    return (
        round_
        and 2 * dp <= min(sizes)
        and max(sizes) <= 14 * dp
        and max(sizes) <= 1.5 * min(sizes)
        and max(middles) - min(middles) <= 2 * dp
        and abs(steps[0] - steps[1]) <= max(2, 0.25 * max(steps))
    )


def on_patch(image: Image, box: Box) -> bool:
    """Text on a patch of its own colour (avatar initials in their circle),
    not on the bar around it: left and right of the box (2 dp out) is one
    colour, and the bar's (at the screen's right edge, same row) is another."""
    height, width = image.shape[:2]
    gap = max(2, round(2 * width / 360))
    y = (box[1] + box[3]) // 2
    xs = (box[0] - gap, box[2] + gap)
    if not (0 <= y < height and xs[0] >= 0 and xs[1] < width - 2):
        return False
    left, right, bar = (
        px.pixel(image, xs[0], y),
        px.pixel(image, xs[1], y),
        px.pixel(image, width - 2, y),
    )
    return not px.differs(left, right, 16) and px.differs(left, bar, 16)


def word_gaps(image: Image, box: Box, paper: RGB) -> list[float]:
    """Where the gaps between words are in a text line's ``box`` on ``paper``,
    as shares of its inked width: runs of columns with no ink at least 0.2
    of the box's height wide (a space; the gaps between letters are narrower)."""
    x1, y1, x2, y2 = box
    crop = image[max(0, y1) : y2, max(0, x1) : x2].astype(np.int16)
    if crop.size == 0:
        return []
    inked = (np.abs(crop - np.array(paper, np.int16)).max(axis=2) > 40).any(axis=0)
    columns = np.flatnonzero(inked)
    if len(columns) < 2:
        return []
    first, last = int(columns[0]), int(columns[-1])
    steps = np.diff(columns)
    return [
        (int(columns[i]) + int(step) / 2 - first) / (last - first)
        for i, step in enumerate(steps)
        if step - 1 >= 0.2 * (y2 - y1)
    ]


def key_caps_top(image: Image) -> float | None:
    """Where an open keyboard starts, by its key caps, whatever its layout
    (QWERTY, a nine-key pinyin pad, a number pad) and whatever PP-OCR reads
    on them: a band at the screen's bottom holding two rows or more of three
    caps or more, each row's caps of one height, the rows stacked; the caps
    differ from the keyboard's own colour, which shows at the screen's edge
    in their rows. The keyboard starts where that colour ends above the top
    row (its suggestion strip has it too), at most 56 dp higher. One pass of
    connected regions over the bottom half, worked out at 1 or 2 px a dp."""
    height, width = image.shape[:2]
    f = max(1, width // 360)
    dp = width / 360 / f
    start = height // 2
    band = np.ascontiguousarray(image[start::f, ::f])
    if band.shape[0] < 8 or band.shape[1] < 8:
        return None
    # The keyboard's colour, row by row, at the screen's edge (the chat's paper above it).
    edge = np.repeat(band[:, 1:2], band.shape[1], axis=1)
    r, g, b = cv2.split(cv2.absdiff(band, edge))
    apart = (cv2.max(cv2.max(r, g), b) > 14).astype(np.uint8)
    k = max(3, round(3 * dp) | 1)
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    mask = cv2.morphologyEx(apart, cv2.MORPH_OPEN, square)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    caps = [
        (x, y, w, h)
        for x, y, w, h, area in (tuple(int(v) for v in stats[i]) for i in range(1, n))
        if 18 * dp <= w <= 0.45 * band.shape[1] and 28 * dp <= h <= 72 * dp and area >= 0.8 * w * h
    ]
    rows: list[list[tuple[int, int, int, int]]] = []
    for cap in sorted(caps, key=lambda c: (c[1], c[0])):
        row = next((r for r in rows if abs(r[0][1] - cap[1]) <= 2 * dp), None)
        if row is not None and abs(row[0][3] - cap[3]) <= 3 * dp:
            row.append(cap)
        elif row is None:
            rows.append([cap])
    rows = [r for r in rows if len(r) >= 3]
    if not rows:
        return None
    # Stacked up from the lowest row, which sits near the screen's bottom (a
    # nav bar, a home indicator under it).
    stack = [rows[-1]]
    for row in reversed(rows[:-1]):
        if 0 <= stack[-1][0][1] - (row[0][1] + row[0][3]) <= 20 * dp:
            stack.append(row)
    lowest = rows[-1][0]
    if len(stack) < 2 or band.shape[0] - (lowest[1] + lowest[3]) > 110 * dp:
        return None
    top = stack[-1][0][1]
    edges = band[:, 1].astype(np.int16)
    colour = edges[max(0, top - 1)]
    y = top
    while y > 0 and top - y < 56 * dp and int(np.abs(edges[y - 1] - colour).max()) <= 6:
        y -= 1
    return float(start + y * f)


def region_beside(image: Image, box: Box, paper: RGB) -> bool:
    """Something drawn right beside ``box`` on the side away from the
    screen's edge (a bubble beside an avatar, one with no text in it too):
    along the box's middle row, a run of 24 dp not in the ``paper``'s colour
    starts within 24 dp of the box."""
    width = image.shape[1]
    dp = width / 360
    y = (box[1] + box[3]) // 2
    if not 0 <= y < image.shape[0]:
        return False
    row = image[y].astype(np.int16)
    off = np.abs(row - np.array(paper, np.int16)).max(axis=1) > 8
    if box[0] < width - box[2]:  # at the left edge: look right
        strip = off[box[2] : min(width, box[2] + round(48 * dp))]
    else:
        strip = off[max(0, box[0] - round(48 * dp)) : box[0]][::-1]
    run, need = 0, round(24 * dp)
    for i, is_off in enumerate(strip):
        run = run + 1 if is_off else 0
        if run >= need:
            return bool(i - run + 1 <= 24 * dp)
    return False
