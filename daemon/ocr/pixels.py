"""What the pixels of a chat screenshot say, around the boxes of its text; no I/O.

The image half of ``daemon/ocr/layout.py`` (which reads the text half): the
region of one colour around a line (a bubble, a pill, a quote's box), the
regions that are not wallpaper (photos, emoji-only bubbles), and the tests
that tell a whole bubble from one a bar cuts. Sizes in dp, 1 dp = width / 360 px.
Runs in the OCR worker (NumPy and OpenCV, the ``ocr`` extra).
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]
Image = npt.NDArray[np.uint8]
RGB = tuple[int, int, int]

FILL_TOLERANCE: Final = 10  # per channel, from the seed's colour
FLOAT_TOLERANCE: Final = 3  # per channel, from the neighbouring pixel
SEED_OFFSET: Final = 4  # px outside the line's box
HOLD_DP: Final = 1.5  # an engine's box may stick out of its bubble by this (a loose box's edge)
INK_SATURATION: Final = 60  # a coloured name, not black, grey or white text


def contains(outer: Box, inner: Box, slack: int) -> bool:
    return (
        outer[0] - slack <= inner[0]
        and outer[1] - slack <= inner[1]
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def hold_slack(width: int) -> int:
    """How far (px) a line's box may stick out of the region that holds it:
    the engine's boxes are loose by a few pixels ('22"' next to its bubble's
    edge), 1.5 dp, at least 2 px."""
    return max(2, round(HOLD_DP * width / 360))


def seeds(box: Box, width: int, height: int) -> list[tuple[int, int]]:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    points = [
        (x1 - SEED_OFFSET, cy),
        (x2 + SEED_OFFSET, cy),
        (cx, y1 - SEED_OFFSET),
        (cx, y2 + SEED_OFFSET),
    ]
    return [(x, y) for x, y in points if 0 <= x < width and 0 <= y < height]


def pixel(image: Image, x: int, y: int) -> RGB:
    r, g, b = (int(v) for v in image[y, x])
    return (r, g, b)


class Fills:
    """The region of one colour around each text line of one screenshot.

    One fill per line floods the whole wallpaper whenever a seed lands on it,
    and a screenshot has dozens of lines on one wallpaper: a seed inside a
    region an earlier fill of the same kind found to be the background (or a
    bar) is not filled again. That is exact, not a guess: a floating fill's
    region is the same from any of its pixels (a neighbour's difference is
    symmetric), a fixed-range fill's from any of its pixels of the seed's
    colour. (A 720x1280 shot's layout: 48.5 -> 37 ms, the same steps.)"""

    def __init__(self, image: Image) -> None:
        self.image = image
        # a background's flood: its kind, its seed's colour (fixed range), its mask
        self._floods: list[tuple[int, RGB | None, Image]] = []

    def _flooded(self, mode: int, colour: RGB | None, seed: tuple[int, int]) -> bool:
        x, y = seed
        return any(m == mode and c == colour and mask[y + 1, x + 1] for m, c, mask in self._floods)

    def around(self, box: Box) -> tuple[Box, RGB] | None:
        """The region of one colour around ``box`` (a text line's) and that
        colour, if it is a bubble.

        First a floating fill (each pixel close to its neighbour), which
        follows a bubble whose colour fades from top to bottom; then a fill
        close to the seed's own colour, which holds on noisy (JPEG) flat
        bubbles. Strokes thinner than 2 dp are cut off the region (``body``):
        a patterned wallpaper's lines in the bubble's colour would join two
        bubbles."""
        image = self.image
        height, width = image.shape[:2]
        for mode, tolerance in ((0, FLOAT_TOLERANCE), (cv2.FLOODFILL_FIXED_RANGE, FILL_TOLERANCE)):
            flags = 4 | cv2.FLOODFILL_MASK_ONLY | mode | (255 << 8)
            for seed in seeds(box, width, height):
                colour = pixel(image, *seed) if mode else None
                if self._flooded(mode, colour, seed):
                    break  # the background again: as below
                mask = np.zeros((height + 2, width + 2), np.uint8)
                diff = (tolerance,) * 3
                _, _, _, (x, y, w, h) = cv2.floodFill(
                    image, mask, seed, (0, 0, 0), diff, diff, flags
                )
                whole = w >= 0.9 * width or h >= 0.8 * height
                if not whole:
                    part = body(mask[1:-1, 1:-1], (x, y, w, h), seed, width)
                    if part is None:
                        continue
                    x, y, w, h = part
                region = (x, y, x + w, y + h)
                if w >= 0.9 * width or h >= 0.8 * height:
                    if whole:
                        self._floods.append((mode, colour, mask))
                    break  # the background (or a bar): this line is not in a bubble of this kind
                if contains(region, box, slack=hold_slack(width)):
                    return region, pixel(image, seed[0], seed[1])
        return None


def body(
    mask: Image, rect: tuple[int, int, int, int], seed: tuple[int, int], width: int
) -> tuple[int, int, int, int] | None:
    """The filled region without its strokes thinner than 2 dp: the rect of
    the part that holds the seed (None if the seed was on such a stroke)."""
    x, y, w, h = rect
    k = max(3, round(2 * width / 360) | 1)
    crop = cv2.morphologyEx(
        mask[y : y + h, x : x + w],
        cv2.MORPH_OPEN,
        cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)),
    )
    _, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=4)
    sx, sy = seed[0] - x, seed[1] - y
    label = int(labels[sy, sx]) if 0 <= sy < h and 0 <= sx < w else 0
    if label == 0:
        return None
    bx, by, bw, bh = (int(v) for v in stats[label][:4])
    return x + bx, y + by, bw, bh


def cut(image: Image, box: Box) -> bool:
    """A bubble the header or the input bar cuts: its top (or bottom) row is
    in the colour of its middle right up to both corners; a whole bubble's
    corners are round (a tail squares one corner, not two). A run of 2 dp
    at each corner, so that a wallpaper's stroke that touches one does not
    count; the corners match the middle within half of how far the box's
    colour is from the paper beside it (at most 12)."""
    x1, y1, x2, y2 = box
    run = max(2, round(2 * image.shape[1] / 360))
    if x2 - x1 < 4 * run or y2 - y1 < 8:
        return False
    cx = (x1 + x2) // 2
    width = image.shape[1]
    for y in (y1 + 1, y2 - 2):  # a row inside the anti-aliased edge
        middle = np.array(pixel(image, cx, y), np.int32)
        row = image[y].astype(np.int32)
        ends = np.concatenate([row[x1 : x1 + run], row[x2 - run : x2]])
        # What is outside a round corner must differ from the box by more than
        # the tolerance: a box in almost the paper's colour gets a finer one.
        beside = row[x1 - 2] if x1 >= 2 else row[min(width - 1, x2 + 1)]
        tolerance = max(2, min(12, int(np.abs(beside - middle).max()) // 2))
        if int(np.abs(ends - middle).max()) <= tolerance:
            return True
    return False


def on_bar(image: Image, box: Box, paper: RGB) -> bool:
    """A bubble that ends on a bar (the header, the input bar): the row just
    past its top or bottom is one colour across the whole width, not the
    paper's, and the bubble's corners at that end are not round (a whole
    bubble may sit right on the input bar: its round corners show it whole)."""
    for y, inner in ((box[1] - 2, box[1] + 1), (box[3] + 1, box[3] - 2)):
        if bar_row(image, y, paper) and not round_end(image, box, inner):
            return True
    return False


def round_end(image: Image, box: Box, y: int) -> bool:
    """The bubble in ``box`` narrows at row ``y`` (just inside its top or
    bottom edge) against the row 6 dp further in: a round end. A bar's cut
    leaves it as wide as its middle at both corners; a tail at one corner
    does not matter (each corner of the bubble's colour in the row is
    compared, not the box)."""
    x1, x2 = box[0], box[2]
    dp = image.shape[1] / 360
    if not 0 <= y < image.shape[0] or x2 - x1 < 8 * dp:
        return False
    y_in = y + round(6 * dp) if y - box[1] < box[3] - y else y - round(6 * dp)
    if not box[1] <= y_in < box[3]:
        return False
    colour = np.array(pixel(image, (x1 + x2) // 2, y), np.int32)

    def extent(row: int) -> tuple[int, int]:
        same = np.flatnonzero(np.abs(image[row, x1:x2].astype(np.int32) - colour).max(axis=1) <= 12)
        return (int(same[0]), int(same[-1])) if len(same) else (0, -1)

    (left, right), (left_in, right_in) = extent(y), extent(y_in)
    # Either corner: a tail at one bottom corner (Telegram, iMessage) squares
    # that one, the other is still round.
    return bool(left > left_in + 2 * dp or right < right_in - 2 * dp)


def inside(image: Image, box: Box, paper: RGB) -> bool:
    """A region inside another one, not on the chat's background: above it
    and to one side of it, one colour that is not the paper (a quote whose
    bubble a bar hides)."""
    width = image.shape[1]
    gap = max(2, round(2 * width / 360))
    x, y = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    if box[1] - gap < 0:
        return False
    above = pixel(image, x, box[1] - gap)
    if not differs(above, paper, 16):
        return False
    sides = [(box[0] - gap, y), (box[2] + gap, y)]
    return any(0 <= sx < width and not differs(pixel(image, sx, sy), above, 8) for sx, sy in sides)


def ink(image: Image, box: Box, paper: RGB) -> RGB:
    """The colour of the text in ``box``: the pixels farthest from ``paper``."""
    x1, y1, x2, y2 = box
    patch = image[y1:y2:2, x1:x2:2].reshape(-1, 3).astype(np.int16)  # every 4th pixel will do
    if patch.size == 0:
        return paper
    distance = np.abs(patch - np.array(paper, np.int16)).sum(axis=1)
    cut = len(distance) * 92 // 100
    far = patch[distance >= np.partition(distance, cut)[cut]]
    r, g, b = (int(v) for v in far.mean(axis=0))
    return (r, g, b)


def saturated(colour: RGB) -> bool:
    return max(colour) - min(colour) >= INK_SATURATION


def differs(a: RGB, b: RGB, tolerance: int) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) > tolerance


def paper(image: Image, top: int, bottom: int) -> RGB:
    """The chat's background: the most common colour at its two edges."""
    width = image.shape[1]
    band = image[max(0, top) : max(top + 1, bottom)]
    edges = np.concatenate([band[:, min(1, width - 1)], band[:, max(0, width - 2)]])
    if edges.size == 0:
        return (0, 0, 0)
    bins = edges // 8
    _, inverse, counts = np.unique(bins, axis=0, return_inverse=True, return_counts=True)
    common = edges[inverse.reshape(-1) == counts.argmax()].mean(axis=0)
    r, g, b = (round(float(v)) for v in common)
    return (r, g, b)


def blobs(image: Image, top: int, bottom: int, paper: RGB) -> list[Box]:
    """The whole regions of ``regions``."""
    return regions(image, top, bottom, paper)[0]


def regions(image: Image, top: int, bottom: int, paper: RGB) -> tuple[list[Box], list[Box]]:
    """Regions of the chat that are not wallpaper, thin strokes (text,
    doodles) removed, filling a third of their box at least (a sticker's
    drawing with its confetti may fill under half): the whole ones, and
    those a bar cuts. A region is cut only where a bar is: at the band's
    top or bottom (the header, the input bar, the screen's edge) unless that
    end is round, or with a straight end on a bar: within a bar's padding
    (16 dp) of the band's end, or right on a bar's edge (``on_bar``'s row);
    a straight end elsewhere is a wide photo with small corners, or a
    square picture. Worked out at 360 to 719 px wide (1 or 2 px a dp), boxes
    given at full size."""
    height, width = image.shape[:2]
    top, bottom = max(0, top), min(height, bottom)
    if bottom - top < 8:
        return [], []
    f = max(1, width // 360)
    dp = width / 360 / f
    band = image[top:bottom:f, ::f]
    diff = np.abs(band.astype(np.int16) - np.array(paper, np.int16)).max(axis=2)
    mask = (diff > 14).astype(np.uint8)
    k = max(3, round(3 * dp) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    out: list[Box] = []
    cut: list[Box] = []
    rows, columns = mask.shape
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if w < 36 * dp or h < 24 * dp or w >= 0.9 * columns or area < 0.35 * w * h:
            continue
        ends = (labels[[y, y + h - 1], x : x + w] == i).mean(axis=1)
        box = (x * f, y * f + top, min(width, (x + w) * f), min(height, (y + h) * f + top))
        if y <= 1 or y + h >= rows - 1:  # at the band's end: cut, unless its end is round
            end, inner = (0, box[1] + 1) if y <= 1 else (1, box[3] - 2)
            if ends[end] < 0.9 or not round_end(image, box, inner):
                cut.append(box)  # (a picture right on the input bar is whole)
                continue
        straight = [e for e, share in zip((box[1] - 1, box[3]), ends, strict=True) if share >= 0.99]
        pad = 16 * width / 360  # a bar's padding around its field or title (a bar on the wallpaper)
        if any(e < top + pad or e > bottom - pad for e in straight) or any(
            bar_row(image, y_out, paper) for e in straight for y_out in (e, e - 1, e + 1)
        ):
            cut.append(box)  # a straight end on a bar's edge
            continue
        out.append(box)
    return out, cut


def bar_row(image: Image, y: int, paper: RGB) -> bool:
    """Row ``y`` is a bar's: one colour across the whole width, not the paper's."""
    if not 0 <= y < image.shape[0]:
        return False
    row = image[y].astype(np.int16)
    flat = int((row.max(axis=0) - row.min(axis=0)).max()) <= 6
    return flat and differs(pixel(image, 0, y), paper, 6)


def picture(image: Image, box: Box, paper: RGB | None = None) -> str:
    """``photo`` or ``sticker``: a photo's content runs to its edges (a jump
    of colour down the middle half of its side, 5 dp in, with little of the
    chat's ``paper`` there), an emoji or a sticker sits in a bubble's even
    padding (a gradient bubble changes, but never jumps) or on the paper,
    which shows beside its outline (iMessage's bubble-less stickers)."""
    inset = max(2, round(5 * image.shape[1] / 360))
    x1, y1, x2, y2 = box
    if x2 - x1 <= 2 * inset or y2 - y1 <= 2 * inset:
        return "sticker"
    quarter = (y2 - y1) // 4  # the middle half: away from round corners
    for x in (x1 + inset, x2 - inset - 1):
        column = image[y1 + quarter : y2 - quarter, x].astype(np.int32)
        if len(column) < 2 or int(np.abs(np.diff(column, axis=0)).max()) <= 30:
            continue
        if paper is None:
            return "photo"
        papered = (np.abs(column - np.array(paper, np.int32)).max(axis=1) <= 12).mean()
        if papered < 0.2:
            return "photo"
    return "sticker"


def overlap(a: Box, b: Box) -> float:
    """The share of ``a`` that ``b`` covers."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ix * iy / area if area else 0.0


def bar_edge(image: Image, box: Box, paper: RGB) -> bool:
    """A bar's edge right at the top or bottom of ``box`` (a text row the
    header or the input bar cuts): a row 1 to 3 px past it is one colour
    across the whole width, and not the paper's."""
    ys = (box[1] - 1, box[1] - 2, box[1] - 3, box[3], box[3] + 1, box[3] + 2)
    return any(bar_row(image, y, paper) for y in ys)
