"""OCR text lines + the screenshot's pixels → a MergeStep; no I/O.

Runs inside the OCR worker process (``daemon/ocr/worker.py``), which has
NumPy and OpenCV from the ``ocr`` extra; the daemon itself never imports it.
What the pixels say is ``daemon/ocr/pixels.py``, what a text is
``daemon/ocr/words.py``; this module puts the two together.
Sizes are in dp, 1 dp = width / 360 px (a phone's density-independent unit).

How a chat screenshot is read:

1. **The frame.** The status bar (the top 32 dp), an open keyboard (two or
   more rows of one-character lines, with its suggestion strip above) and
   the input bar above it or above the navigation bar (a placeholder, an
   unsent draft) are never messages. A line in the input bar that could
   still be a message is counted in ``dropped_lines``.
2. **Bubbles from pixels.** For each text line, the region of one colour
   around it is flood-filled from a few seed points just outside the line's
   box: first following small steps from pixel to pixel (a bubble whose
   colour fades), then staying close to the seed's colour (a flat bubble
   with JPEG noise). A fill that contains the line and spans neither the
   whole width nor most of the height is the line's bubble; every other line
   inside it belongs to it, so multi-line bubbles stay whole and two bubbles
   never merge, however close they sit. A line inside a bubble but on
   another colour (a quoted message's tinted box) is filled again: the
   inner box is the quote. A region centred between both edges (a date pill,
   a system line, the encryption notice) is not a bubble.
3. **Pictures.** A region of the chat that differs from the wallpaper
   (thin strokes — text, doodles — removed) and holds no message text is a
   photo (many colours) or an emoji-only bubble (``sticker``); a bubble
   whose only text is a time on a picture (WhatsApp's, Telegram's overlay)
   takes the picture's box. Avatars (small, at an edge) are not bubbles.
4. **Inside a bubble** (``daemon/ocr/words.py`` says what each text is): the
   time at its bottom right and the read ticks after it are ``time``, not
   text, when most bubbles of the screenshot end with one; a first row in a
   colour (WhatsApp's, Telegram's group sender) is ``sender``; a waveform
   and a duration make a ``voice`` bubble with empty text.
5. **Outside the bubbles.** A small line just above a bubble, aligned with
   it, is the group sender (WeChat, LINE, Messenger); a time beside a
   bubble's bottom is its ``time`` (LINE); the header (above the first
   bubble, within 170 dp) gives the name: the tallest line that is not a
   badge, avatar initials, a subtitle ("online", "last seen …") or a time.
   A title with a member count ("周末爬山群(8)"), a subtitle that lists
   members, or senders on bubbles make it a group: ``participants.group``.
   Centred lines (timestamps) and small print are chrome; any other
   message-sized text is grouped into bubbles by gap and alignment.
6. **Side and speaker.** A bubble is on the side it is nearer to; the app's
   own user is on ``user_side`` (right in every mainstream app).

The result is a plain dict in the MergeStep shape (optional fields only
when known) plus ``dropped_lines``; the daemon validates the step with the
same code as a model's answer (``daemon.extract``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np

from daemon.ocr import pixels as px
from daemon.ocr import thread, words
from daemon.ocr.pixels import SEED_OFFSET, Box, Image

Side = Literal["left", "right"]
RGB = tuple[int, int, int]

TOP_BAND_DP: Final = 84  # status bar + title bar, when no bubble says where the chat starts
STATUS_DP: Final = 32  # a line centred higher than this is in the status bar
HEADER_MAX_DP: Final = 170  # the header ends above this
INPUT_DP: Final = 76  # the input bar and the nav bar: the bottom this many dp
INPUT_KB_DP: Final = 44  # the input bar above a keyboard's top
KEY_STRIP_DP: Final = 54  # a keyboard's first key row below its top (the suggestion strip)
NESTED_TOLERANCE: Final = 6  # a line's surround this far from its bubble's colour: a quote box
SMALL_PRINT: Final = 0.8  # a loose line lower than this share of bubble text is chrome


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


@dataclass(slots=True, eq=False)
class Bubble:
    box: Box
    lines: list[Line] = field(default_factory=list)
    colour: RGB | None = None
    parent: Bubble | None = None  # a quote box's bubble
    kind: str = "text"
    sender: str | None = None
    time: str | None = None
    quote: dict[str, Any] | None = None
    text: str = ""

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def lines_from_ocr(result: list[Any] | None, scale: float = 1.0) -> list[Line]:
    """RapidOCR's ``[[quad, text, score], ...]`` → axis-aligned lines; the
    engine read the image at ``scale``: the boxes are given at full size."""
    lines = []
    for quad, text, score in result or ():
        text = str(text).strip()
        if not text:
            continue
        xs = [float(p[0]) / scale for p in quad]
        ys = [float(p[1]) / scale for p in quad]
        box = (round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys)))
        lines.append(Line(box=box, text=text, score=float(score)))
    return lines


def find_bubble(image: Image, line: Line) -> Box | None:
    """The box of the region of one colour around ``line``, if it is a bubble."""
    found = px.fill(image, line.box)
    return None if found is None else found[0]


_join = words.join


_rows = thread.rows_of  # rows top to bottom, pieces of a row left to right


def bubble_text(lines: list[Line]) -> str:
    """Rows top to bottom, pieces of a row left to right."""
    return _join([_join(_pieces(row)) for row in _rows(lines)])


def _pieces(row: list[Line]) -> list[str]:
    """The texts of a row's pieces; where two boxes overlap, what both read
    is kept once ("Thanks!" and "!20:14" over the same "!"), unless the
    second is a whole time ("+1" and "16:42" share no "1")."""
    texts: list[str] = []
    for i, line in enumerate(row):
        text = line.text
        if i and line.box[0] < row[i - 1].box[2] and not words.is_time(text):
            before = texts[-1]
            for n in range(min(3, len(before), len(text) - 1), 0, -1):
                if before.endswith(text[:n]):
                    text = text[n:].lstrip()
                    break
        texts.append(text)
    return texts


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


# --- the frame ----------------------------------------------------------------------------


@dataclass(slots=True)
class Frame:
    """Where the chat is: what is above, below and around it."""

    status: list[Line]
    keys: list[Line]
    inputs: list[Line]
    bottom: float  # the chat ends above this (px)


def _frame(lines: list[Line], width: int, height: int) -> Frame:
    dp = width / 360
    status = [ln for ln in lines if ln.cy < STATUS_DP * dp]
    keys: list[Line] = []
    top = _keyboard_top(lines, width, height)
    if top is not None:
        keys = [ln for ln in lines if ln.cy > top]
        limit = top - INPUT_KB_DP * dp
    else:
        limit = height - INPUT_DP * dp
    taken = {id(ln) for ln in status + keys}
    inputs = [ln for ln in lines if ln.cy > limit and id(ln) not in taken]
    return Frame(status=status, keys=keys, inputs=inputs, bottom=limit)


def _keyboard_top(lines: list[Line], width: int, height: int) -> float | None:
    """Where an open keyboard starts, if there is one: two rows of one-letter
    keys, or its bottom row's keys ("space", "return", "?123") under at least
    one letter key. PP-OCR misses many keys of a dark keyboard, so the
    bottom row alone places it: the bottom row's labels sit 218 dp below the
    keyboard's top (a 44 dp suggestion strip, three rows of 54 dp)."""
    dp = width / 360
    letters = sorted(
        (ln for ln in lines if ln.cy > height / 3 and words.is_key(ln.text)),
        key=lambda ln: ln.cy,
    )
    rows: list[list[Line]] = []
    for line in letters:
        if rows and abs(line.cy - rows[-1][0].cy) < 10 * dp:
            rows[-1].append(line)
        else:
            rows.append([line])
    full = [row for row in rows if len(row) >= 4]
    tops = []
    if len(full) >= 2:
        tops.append(min(ln.box[1] for ln in full[0]) - KEY_STRIP_DP * dp)
    anchors = [ln for ln in lines if ln.cy > height / 2 and words.is_key_label(ln.text)]
    if anchors and letters:
        anchor = min(ln.box[1] for ln in anchors)
        if any(anchor - 230 * dp < ln.box[1] < anchor for ln in letters):
            tops.append(anchor - 218 * dp)
    return min(tops) if tops else None


def _centred(box: Box, width: int) -> bool:
    """Timestamps and system notes on the background: in the middle, away from both edges."""
    left, right = box[0], width - box[2]
    return abs(left - right) < 0.08 * width and min(left, right) > 0.2 * width


def _pill(bubble: Bubble, width: int, typical: float) -> bool:
    """A date pill, a system line, the encryption notice: a region (or its
    text) centred to a few pixels, and short, or in rows centred one by one,
    or in smaller print than the messages. A long message can happen to be
    centred, but not to the pixel with its rows centred or in small print."""
    tolerance = max(4, 0.012 * width)
    left, right = bubble.box[0], width - bubble.box[2]
    boxed = abs(left - right) <= tolerance and min(left, right) >= 0.04 * width
    if not bubble.lines:
        return boxed
    text = (
        min(ln.box[0] for ln in bubble.lines),
        0,
        max(ln.box[2] for ln in bubble.lines),
        0,
    )
    t_left, t_right = text[0], width - text[2]
    short = min(t_left, t_right) > 0.2 * width
    edge = min(left, right) < 0.04 * width and abs(left - right) > 0.2 * width
    if short and (boxed or (abs(t_left - t_right) <= 1.5 * tolerance and not edge)):
        return True  # a pill whose fill leaked into the wallpaper is still centred text
    # (a bubble at one edge whose short text happens to sit mid-screen is no pill)
    if not boxed:
        return False
    rows = _rows(bubble.lines)
    if len(rows) >= 2:
        starts = [row[0].box[0] for row in rows]
        centred = all(
            abs(row[0].box[0] - (width - row[-1].box[2])) <= 2 * tolerance for row in rows
        )
        if centred and max(starts) - min(starts) > rows[0][0].height:
            return True
    heights = sorted(ln.height for ln in bubble.lines)
    return bool(typical) and heights[len(heights) // 2] < 0.9 * typical


def _touching(bubble: Bubble, margin: float) -> bool:
    """Text that touches its bubble's top or bottom: a bar cuts the bubble
    (a whole one has padding around its text)."""
    lines = [ln for ln in bubble.lines if words.split_time(ln.text)[1] is None]
    if not lines:  # a time and its ticks make a taller box than text does
        return False
    top = min(ln.box[1] for ln in lines) - bubble.box[1]
    bottom = bubble.box[3] - max(ln.box[3] for ln in lines)
    return min(top, bottom) < margin


# --- pictures -----------------------------------------------------------------------------


# --- reading ------------------------------------------------------------------------------


def _nested(image: Image, line: Line, home: Bubble, dp: float) -> Bubble | None:
    """The quote box around ``line`` inside ``home``, if the line sits on
    another colour than its bubble's at the same row."""
    x, y = line.box[0] - SEED_OFFSET, int(line.cy)
    ref = home.box[0] + max(2, round(3 * dp))
    if ref >= x or y >= image.shape[0] or x >= image.shape[1]:
        return None
    if not px.differs(px.pixel(image, x, y), px.pixel(image, ref, y), NESTED_TOLERANCE):
        return None
    found = px.fill(image, line.box)
    if found is None:
        return None
    box, colour = found
    inner = (box[2] - box[0]) * (box[3] - box[1])
    if inner >= 0.9 * home.area or not px.contains(home.box, box, slack=2):
        return None
    return Bubble(box=box, colour=colour, parent=home)


def _find_bubbles(image: Image, body: list[Line], dp: float) -> tuple[list[Bubble], list[Line]]:
    bubbles: list[Bubble] = []
    loose: list[Line] = []
    for line in sorted(body, key=lambda ln: (ln.box[1], ln.box[0])):
        homes = [b for b in bubbles if px.contains(b.box, line.box, slack=2)]
        home = min(homes, key=lambda b: b.area) if homes else None
        if home is not None and home.parent is None:
            inner = _nested(image, line, home, dp)
            if inner is not None:
                bubbles.append(inner)
                home = inner
        if home is None:
            found = px.fill(image, line.box)
            if found is not None:
                home = Bubble(box=found[0], colour=found[1])
                bubbles.append(home)
        if home is None:
            loose.append(line)
        else:
            home.lines.append(line)
    still: list[Line] = []
    for line in loose:  # a line read before the bubble around it was found
        homes = [b for b in bubbles if px.contains(b.box, line.box, slack=2)]
        if homes:
            min(homes, key=lambda b: b.area).lines.append(line)
        else:
            still.append(line)
    loose = still
    for bubble in bubbles:  # a box found first (a quote's) inside one found later
        if bubble.parent is None:
            outers = [
                o
                for o in bubbles
                if o is not bubble
                and o.area > bubble.area
                and px.overlap(bubble.box, o.box) >= 0.75
            ]
            if outers:
                outer = bubble.parent = min(outers, key=lambda b: b.area)
                outer.box = (  # a quote at the top may cut a thin rim off its bubble's fill
                    min(outer.box[0], bubble.box[0]),
                    min(outer.box[1], bubble.box[1]),
                    max(outer.box[2], bubble.box[2]),
                    max(outer.box[3], bubble.box[3]),
                )
    return bubbles, loose


def _read_inside(
    image: Image, bubble: Bubble, quotes: list[Bubble]
) -> tuple[list[list[Line]], str | None]:
    """The bubble's rows without its sender's row, and the sender."""
    rows = _rows(bubble.lines)
    sender = None
    if len(rows) > 1 or (rows and quotes):
        paper = bubble.colour or px.pixel(image, bubble.box[0] + 2, bubble.box[1] + 2)
        first = px.ink(image, rows[0][0].box, paper)
        last = px.ink(image, rows[-1][0].box, paper) if len(rows) > 1 else None
        if px.saturated(first) and (last is None or px.differs(first, last, 40)):
            sender = _join([ln.text for ln in rows[0]])
            rows = rows[1:]
    if len(rows) > 1 and words.is_forwarded(_join([ln.text for ln in rows[0]])):
        rows = rows[1:]  # the label over a forwarded message, not its text
    if quotes:
        q_rows = _rows([ln for q in quotes for ln in q.lines])
        texts = [_join([ln.text for ln in row]) for row in q_rows]
        if len(texts) >= 2:
            bubble.quote = {"sender": texts[0], "text": _join(texts[1:])}
        elif texts:
            bubble.quote = {"sender": None, "text": texts[0]}
    return rows, sender


def _names(line: Line, bubble: Bubble, dp: float) -> bool:
    """Whether ``line`` is the group sender's name shown above ``bubble``."""
    return (
        -3 * dp <= bubble.box[1] - line.box[3] <= 10 * dp
        and abs(line.box[0] - bubble.box[0]) <= 14 * dp
        and len(line.text) <= 32
        and not words.is_time(line.text)
    )


def _runs_off(line: Line, bubble: Bubble, bottom: float, dp: float) -> bool:
    """A row the input bar half hides: it starts in ``bubble`` (or a quote's
    box) and its box runs past the bottom the fill found, where the chat
    ends (a whole bubble's padding holds its rows; the bar cut this one)."""
    return (
        bubble.box[3] > bottom - 48 * dp
        and line.box[1] >= bubble.box[1]
        and line.box[3] > bubble.box[3] + 2
        and px.overlap(line.box, bubble.box) > 0.5
    )


def _reaction(box: Box, bubbles: list[Bubble], dp: float) -> bool:
    """A reaction's pill on a bubble's bottom edge (WhatsApp, Messenger): small,
    its top inside the bubble (across the edge), within the bubble's width.
    What starts under the edge is no pill: bare emoji sent 2-3 dp under the
    sender's previous bubble are a message."""
    small = box[3] - box[1] <= 40 * dp and box[2] - box[0] <= 110 * dp
    return small and any(
        b.box[3] - 24 * dp <= box[1] < b.box[3]
        and b.box[0] - 8 * dp <= box[0]
        and box[2] <= b.box[2] + 8 * dp
        for b in bubbles
    )


def _receipt_of(line: Line, bubble: Bubble, dp: float) -> bool:
    """A read receipt's place: beside the bubble, within its height (LINE),
    or just under it at one of its edges (iMessage's "Delivered")."""
    beside = (
        0 <= bubble.box[0] - line.box[2] <= 16 * dp or 0 <= line.box[0] - bubble.box[2] <= 16 * dp
    )
    under = 0 <= line.box[1] - bubble.box[3] <= 16 * dp and (
        abs(line.box[2] - bubble.box[2]) <= 16 * dp or abs(line.box[0] - bubble.box[0]) <= 16 * dp
    )
    return (beside and bubble.box[1] <= line.cy <= bubble.box[3]) or under


def _in_name_column(line: Line, names: list[Line], dp: float) -> bool:
    """A line where the group's senders' names are, in their print, with no
    bubble below it: the name of a bubble a bar hides (or one no fill
    found): not a message, and not sure whose."""
    return len(line.text) <= 32 and any(
        abs(line.box[0] - name.box[0]) <= 4 * dp
        and abs(line.height - name.height) <= 0.2 * name.height
        for name in names
    )


def _named(line: Line, bubbles: list[Bubble], dp: float) -> bool:
    return any(_names(line, b, dp) for b in bubbles)


def _avatar(bubble: Bubble, dp: float) -> bool:
    """An avatar with initials in it, or an unread badge in the header: not a bubble."""
    w, h = bubble.box[2] - bubble.box[0], bubble.box[3] - bubble.box[1]
    if max(w, h) > 56 * dp or not bubble.lines:
        return False
    square = abs(w - h) <= 0.1 * max(w, h)
    header = bubble.box[3] < HEADER_MAX_DP * dp
    if square and header and all(words.is_initials(ln.text) for ln in bubble.lines):
        return True
    edge = bubble.box[0] < 12 * dp or bubble.box[2] > 348 * dp
    text = bubble_text(bubble.lines)
    if square and edge and max(w, h) <= 50 * dp and not any(ch.isalnum() for ch in text):
        return True  # a picture avatar beside the bubbles, a shape in it read as "！"
    texts = [words.header_text(ln.text) for ln in bubble.lines]
    small = max(w, h) <= 30 * dp  # a badge; a bubble saying "3" is taller
    return small and bubble.box[3] < HEADER_MAX_DP * dp and all(words.is_badge(t) for t in texts)


def _name(header: list[Line]) -> tuple[str | None, bool]:
    """The talker's or group's name in the header, and whether it says group."""
    candidates = []
    for ln in header:
        text = words.header_text(ln.text)
        if (
            any(ch.isalpha() for ch in words.name_of(text)[0])  # ".23": a badge, no name
            and not words.is_badge(text)
            and not words.is_initials(text)
            and not words.HAS_TIME.search(text)
            and not words.is_subtitle(text)
            and not words.is_date(text)
            and not words.lists_members(text)
            and any(ch.isalnum() for ch in text)
        ):
            candidates.append((ln, text))
    if not candidates:
        return None, False
    candidates = [c for c in candidates if not c[1].startswith(("(", "（"))] or candidates
    best = max(candidates, key=lambda c: (c[0].height, -c[0].cy))[1]
    name, counted = words.name_of(best)
    return name or None, counted


def read(image: Image, lines: list[Line], user_side: Side = "right") -> tuple[dict[str, Any], int]:
    """A MergeStep-shaped dict from the screenshot (RGB, H×W×3) and its
    lines, and how many lines were left out as uncertain (``dropped_lines``).

    Every bubble box lies inside the image and is not empty, whatever boxes
    the engine gave."""
    height, width = image.shape[:2]
    image = np.array(image, dtype=np.uint8, order="C")  # OpenCV wants it writable
    lines = clip(lines, width, height)
    dp = width / 360
    frame = _frame(lines, width, height)
    framed = {id(ln) for ln in frame.status + frame.keys + frame.inputs}
    dropped = sum(1 for ln in frame.inputs if len(ln.text.strip()) > 1)
    body = [ln for ln in lines if id(ln) not in framed]
    found, loose = _find_bubbles(image, body, dp)
    paper = px.paper(image, round(TOP_BAND_DP * dp), round(frame.bottom))

    def avatar_at(ln: Line) -> bool:  # left of a thread's name row, at its column
        return px.avatar_left(image, ln.box, ln.box[0], paper)

    x0 = thread.column(loose, dp, width, avatar_at)
    if x0 is not None:  # a thread without bubbles (Slack-like)
        # A filled box at the column under a message: a code block (its text is
        # the message's) or a file card (an icon's square at its left). Other
        # text in filled boxes is counted (a date divider's, a reaction's are chrome).
        def text_of(b: Bubble) -> list[Line]:
            return [
                ln
                for ln in b.lines
                if ln.box[0] >= x0 - thread.COLUMN_DP * dp
                and not words.is_date(ln.text)
                and not thread.THREAD_CHROME.match(ln.text.strip())
                and not ln.text.strip().lstrip("+").isdigit()
            ]

        def cut_card(b: Bubble) -> bool:  # square at the chat's end: the bar hides the rest
            return b.box[3] > frame.bottom - 48 * dp and px.cut(image, b.box)

        cards = [
            thread.Card(b.box, text_of(b), px.icon_left(image, b.box), cut_card(b))
            for b in found
            if text_of(b)
            and abs(b.box[0] - x0) <= 2 * thread.COLUMN_DP * dp
            and (b.box[3] - b.box[1] >= 26 * dp or cut_card(b))
        ]
        carded = {id(ln) for card in cards for ln in card.lines}
        boxed = [ln for b in found for ln in text_of(b) if id(ln) not in carded]
        return _thread_step(
            loose,
            x0,
            frame,
            width,
            height,
            user_side,
            dropped + len(boxed),
            avatar_at,
            lambda top, bottom: px.ink_blobs(
                image, (round(x0 - 8 * dp), round(top), width - round(4 * dp), round(bottom)), paper
            ),
            cards,
        )
    heights = sorted(ln.height for b in found for ln in b.lines)
    typical = heights[len(heights) // 2] if heights else 0
    messages = [
        b for b in found if b.parent is None and not _pill(b, width, typical) and not _avatar(b, dp)
    ]
    pictured = {id(b) for b in messages if all(words.is_time(ln.text) for ln in b.lines)}
    inside = [  # a cut bubble's quote (a picture's time overlay is read below)
        b for b in messages if id(b) not in pictured and px.inside(image, b.box, paper)
    ]
    dropped += sum(len(b.lines) for b in inside)
    messages = [b for b in messages if b not in inside]
    # Square corners are a cut only near the chat's ends (some apps draw square bubbles).
    chat_ends = (TOP_BAND_DP * dp, frame.bottom - 24 * dp)
    cut = [
        b
        for b in messages
        if id(b) not in pictured
        and (
            (px.cut(image, b.box) and (b.box[1] < chat_ends[0] or b.box[3] > chat_ends[1]))
            or _touching(b, 2 * dp)
            or px.on_bar(image, b.box, paper)
            or any(
                q.parent is b and q.box[3] >= b.box[3] - dp for q in found
            )  # a quote to the edge
            or any(_runs_off(ln, b, frame.bottom, dp) for ln in loose)
        )
    ]
    dropped += sum(len(b.lines) for b in cut)
    dropped += sum(len(q.lines) for b in cut for q in found if q.parent is b)
    messages = [b for b in messages if b not in cut]
    near_cut = [  # in a cut bubble, or its sender's name above it, or a cut quote's row
        ln
        for ln in loose
        if any(px.overlap(ln.box, b.box) > 0.5 or _names(ln, b, dp) for b in cut)
        or any(_runs_off(ln, b, frame.bottom, dp) for b in found)
    ]
    dropped += len(near_cut)
    loose = [ln for ln in loose if ln not in near_cut]
    quotes = {id(b): [q for q in found if q.parent is b] for b in messages}
    # A short line just above a bubble and aligned with it: its sender
    # (WeChat, LINE, Messenger), even above the first bubble, under the header.
    named: dict[int, str] = {}
    name_lines: list[Line] = []
    for ln in sorted(loose, key=lambda ln: ln.cy):
        if words.is_receipt(ln.text):
            continue  # "Delivered" under a bubble is no sender of the next one
        below = [b for b in messages if id(b) not in named and _names(ln, b, dp)]
        if below:
            named[id(below[0])] = ln.text
            name_lines.append(ln)
    loose = [ln for ln in loose if ln.text not in named.values() or not _named(ln, messages, dp)]
    # The header: loose lines above the first bubble (or the top band).
    first = min((b.box[1] for b in messages), default=height)
    limit = min(first, HEADER_MAX_DP * dp) if messages else TOP_BAND_DP * dp
    header = [ln for ln in loose if ln.cy < limit]
    loose = [ln for ln in loose if ln.cy >= limit]
    name, counted = _name(header)
    # Inside each bubble: sender, quote, rows; then the time at the end.
    rows_of: dict[int, list[list[Line]]] = {}
    for bubble in messages:
        rows, bubble.sender = _read_inside(image, bubble, quotes[id(bubble)])
        bubble.sender = bubble.sender or named.get(id(bubble))
        rows_of[id(bubble)] = rows
    timed = apart = 0
    ends: dict[int, tuple[str, str] | None] = {}
    for bubble in messages:
        rows = rows_of[id(bubble)]
        end = None
        if rows:
            piece = rows[-1][-1]
            before, time = words.split_time(_pieces(rows[-1])[-1])
            if time is not None and piece.box[2] >= bubble.box[2] - 40 * dp:
                end = (before, time)
                apart += not before and len(rows) + len(rows[-1]) > 2  # a piece of its own
        ends[id(bubble)] = end
        timed += end is not None
    # Most bubbles end with a time, or (one bubble on the screen) it is a piece of its own.
    in_bubble_times = timed >= 0.5 * len(messages) and (len(messages) >= 2 or apart > 0)
    for bubble in messages:
        texts = [_pieces(row) for row in rows_of[id(bubble)]]
        end = ends[id(bubble)]
        if in_bubble_times and end is not None:
            texts[-1][-1] = end[0]
            bubble.time = end[1]
        bubble.text = words.without_edited(
            _join([_join(row) for row in texts]), bubble.time is not None
        )
        if (
            bubble.colour is not None
            and bubble.quote is None
            and words.has_duration(bubble.text)
            and px.voice_icon(image, bubble.box, bubble.colour)
        ):
            bubble.kind, bubble.text = "voice", ""  # whatever PP-OCR made of the icon
    voices = [
        b for b in messages if b.kind == "voice"
    ]  # an icon read apart, its box past the bubble
    loose = [ln for ln in loose if not any(px.overlap(ln.box, b.box) > 0.5 for b in voices)]
    # Pictures: a bubble with no text takes its picture's box; pictures
    # with no text at all are bubbles of their own.
    chat_top = max([ln.box[3] for ln in header + frame.status] + [0]) + 2 * dp
    blobs = px.blobs(image, round(min(chat_top, limit)), round(frame.bottom), paper)
    for bubble in messages:
        if (
            bubble.kind == "text"
            and bubble.time is None
            and words.is_time(bubble.text)
            and bubble.lines
            and max(ln.box[2] for ln in bubble.lines) - min(ln.box[0] for ln in bubble.lines)
            < 0.5 * (bubble.box[2] - bubble.box[0])
        ):
            # A lone time in a corner (on a picture, beside or under an emoji
            # PP-OCR cannot read): the time. One that fills its bubble is the
            # message ("10:30" to "What time?").
            bubble.time = words.split_time(bubble.text)[1]
            bubble.text = ""
        if bubble.text and bubble.kind == "text" and bubble.lines:
            top = min(ln.box[1] for ln in rows_of[id(bubble)][0]) if rows_of[id(bubble)] else 0
            above = (bubble.box[0], bubble.box[1], bubble.box[2], round(top - 4 * dp))
            if top - bubble.box[1] >= 80 * dp and px.picture(image, above) == "photo":
                bubble.kind = "photo"  # its caption is its text (WhatsApp)
        if bubble.text or bubble.kind != "text":
            continue
        bubble.kind = "sticker"
        for box in blobs:
            if px.overlap(bubble.box, box) > 0.8:
                # Other bubbles in the region (a reaction's pill joins them): it is
                # this bubble's picture only between them, and only if a photo.
                others = [b for b in messages if b is not bubble and px.overlap(b.box, box) > 0.5]
                upper = max([box[1]] + [b.box[3] for b in others if b.box[3] <= bubble.box[1]])
                lower = min([box[3]] + [b.box[1] for b in others if b.box[1] >= bubble.box[3]])
                own = (box[0], upper, box[2], lower)
                if px.overlap(own, bubble.box) < 0.75 and (
                    not others or px.picture(image, own) == "photo"
                ):
                    bubble.box = own
                bubble.kind = px.picture(image, bubble.box)
                break
    for box in blobs:
        avatar = max(box[2] - box[0], box[3] - box[1]) <= 50 * dp and (
            box[0] < 14 * dp or box[2] > width - 14 * dp
        )
        if avatar or _pill(Bubble(box=box), width, typical) or _reaction(box, messages, dp):
            continue
        if px.typing_dots(image, box):  # someone is typing: nothing sent yet
            continue
        if any(
            px.overlap(box, b.box) > 0.2 or px.overlap(b.box, box) > 0.2 for b in messages + cut
        ):
            continue
        around = any(px.overlap(b.box, box) > 0.5 for b in inside)  # a cut reply's quote
        if around or px.on_bar(image, box, paper):  # cut by a bar: not sure what it is
            held = [ln for ln in loose if px.overlap(ln.box, box) > 0.5]
            dropped += len(held)
            loose = [ln for ln in loose if ln not in held]
            continue
        if any(px.contains(box, ln.box, slack=0) for ln in loose):
            continue  # text no fill could follow: read below
        messages.append(Bubble(box=box, kind=px.picture(image, box)))
    # Around the bubbles: senders above them, times beside them.
    rest: list[Line] = []
    for ln in sorted(loose, key=lambda ln: ln.cy):
        if words.is_receipt(ln.text) and any(_receipt_of(ln, b, dp) for b in messages):
            continue  # LINE's "Read" beside a bubble, iMessage's "Delivered" under it: chrome
        below = [b for b in messages if b.sender is None and _names(ln, b, dp)]
        if below:  # above a picture
            below[0].sender = ln.text
            continue
        if words.is_time(ln.text):
            beside = [
                b
                for b in messages
                if b.time is None
                and abs(ln.box[3] - b.box[3]) <= 12 * dp
                and (0 <= b.box[0] - ln.box[2] <= 16 * dp or 0 <= ln.box[0] - b.box[2] <= 16 * dp)
            ]
            if beside:
                beside[0].time = words.split_time(ln.text)[1]
                continue
        rest.append(ln)
    # Text outside every bubble: chrome (timestamps, small print), or
    # messages in bubbles no fill could find, grouped by layout.
    keep = [
        ln
        for ln in rest
        if not _centred(ln.box, width)
        and not words.is_time(ln.text)
        and (not typical or ln.height >= SMALL_PRINT * typical)
    ]
    # Not sure: one character on the background (an avatar's letter), a
    # line that runs under the input bar.
    unsure = [
        ln
        for ln in keep
        if len(ln.text.strip()) < 2
        or ln.box[3] > frame.bottom
        or (typical and ln.height > 2.5 * typical)  # a column of avatars read as "BBBB"
        or _in_name_column(ln, name_lines, dp)
    ]
    dropped += len(unsure)
    keep = [ln for ln in keep if ln not in unsure]
    for bubble in _group_by_gap(keep):
        bubble.text = bubble_text(bubble.lines)
        messages.append(bubble)
    group = counted and any(b.sender for b in messages)
    group = group or any(words.lists_members(ln.text) for ln in header)
    group = group or sum(1 for b in messages if b.sender) >= 2
    return _step(messages, width, height, user_side, name, group), dropped


def _thread_step(
    loose: list[Line],
    x0: float,
    frame: Frame,
    width: int,
    height: int,
    user_side: Side,
    dropped: int,
    avatar: Callable[[Line], bool] | None = None,
    ink: Callable[[float, float], list[Box]] | None = None,
    cards: list[thread.Card] | None = None,
) -> tuple[dict[str, Any], int]:
    """``read`` for a thread without bubbles (``daemon/ocr/thread.py``)."""
    dp = width / 360
    rows = [  # (a private channel's title, pushed right by its lock, may start at the column)
        ln
        for ln in loose
        if abs(ln.box[0] - x0) <= thread.COLUMN_DP * dp and ln.cy > TOP_BAND_DP * dp
    ]
    first = min((ln.box[1] for ln in rows), default=height)
    header = [ln for ln in loose if ln.cy < min(first, HEADER_MAX_DP * dp)]
    body = [ln for ln in loose if ln.cy >= min(first, HEADER_MAX_DP * dp)]
    items, participants, _, more = thread.read(
        body, header, x0, dp, frame.bottom, avatar, ink, cards or []
    )
    talker_side: Side = "left" if user_side == "right" else "right"
    for item in items:
        item["side"] = user_side if item["speaker"] == "user" else talker_side
        x1, y1, x2, y2 = item["bbox"]
        item["bbox"] = [max(0, x1), max(0, y1), min(width, x2), min(height, y2)]
    layout = {user_side: "user", talker_side: "talker"}
    step = {
        "participants": participants,
        "layout": {"left": layout["left"], "right": layout["right"]},
        "bubbles": sorted(items, key=lambda b: (b["bbox"][1], b["bbox"][0])),
        "summary": None,
    }
    return step, dropped + more


def _step(
    bubbles: list[Bubble], width: int, height: int, user_side: Side, name: str | None, group: bool
) -> dict[str, Any]:
    talker_side: Side = "left" if user_side == "right" else "right"
    out = []
    for bubble in sorted(bubbles, key=lambda b: (b.box[1], b.box[0])):
        x1, y1, x2, y2 = bubble.box
        side: Side = "left" if x1 < width - x2 else "right"
        item: dict[str, Any] = {
            "speaker": "user" if side == user_side else "talker",
            "side": side,
            "bbox": [max(0, x1), max(0, y1), min(width, x2), min(height, y2)],
            "text": bubble.text,
        }
        if bubble.kind != "text":
            item["kind"] = bubble.kind
        for key in ("sender", "time", "quote"):
            if getattr(bubble, key) is not None:
                item[key] = getattr(bubble, key)
        out.append(item)
    layout = {user_side: "user", talker_side: "talker"}
    participants: dict[str, str | None] = {"user": None, "talker": None if group else name}
    if group:
        participants["group"] = name
    return {
        "participants": participants,
        "layout": {"left": layout["left"], "right": layout["right"]},
        "bubbles": out,
        "summary": None,
    }


def build_step(image: Image, lines: list[Line], user_side: Side = "right") -> dict[str, Any]:
    """``read`` without the count of dropped lines."""
    return read(image, lines, user_side)[0]
