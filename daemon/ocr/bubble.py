"""One bubble: its lines, and what each of them is; no I/O.

Part of the local OCR's layout (``daemon/ocr/layout.py`` finds the bubbles
and calls this module for what is inside each one). A bubble's rows are
read top to bottom and each row's pieces left to right; a first row in a
colour is the group sender (WhatsApp, Telegram), a tinted box inside is a
quoted message, a time at the bottom right (with the read ticks after it)
is ``time`` when most bubbles of the screenshot end with one, and a
waveform with a duration is a voice note (empty text).
Sizes are in dp, 1 dp = width / 360 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from daemon.ocr import marks, thread, words
from daemon.ocr import pixels as px
from daemon.ocr.pixels import SEED_OFFSET, Box, Image

Side = Literal["left", "right"]
RGB = tuple[int, int, int]

NESTED_TOLERANCE: Final = 6  # a line's surround this far from its bubble's colour: a quote box
DRAWN: Final = 1.6  # a coloured row this many times the text's height: a drawing, not text


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
    preview: bool = False  # a link's preview card is in it (its picture is no photo)

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


join = words.join
rows_of = thread.rows_of  # rows top to bottom, pieces of a row left to right


def bubble_text(lines: list[Line]) -> str:
    """Rows top to bottom, pieces of a row left to right."""
    return words.join_rows([join(pieces(row)) for row in rows_of(lines)])


def pieces(row: list[Line]) -> list[str]:
    """The texts of a row's pieces; where two boxes overlap, what both read
    is kept once ("Thanks!" and "!20:14" over the same "!"), unless the
    second is a whole time ("+1" and "16:42" share no "1"); a glyph or two
    of the first read again before a whole time, however misread ("again"
    and "110:11 AM": the "n" as "1"), is dropped."""
    texts: list[str] = []
    for i, line in enumerate(row):
        text = line.text
        if i and line.box[0] < row[i - 1].box[2] and not words.is_time(text):
            before = texts[-1]
            for n in range(min(3, len(before), len(text) - 1), 0, -1):
                if before.endswith(text[:n]):
                    text = text[n:].lstrip()
                    break
            else:
                for n in (1, 2):
                    if len(text) > n and words.is_time(text[n:]):
                        text = text[n:]
                        break
        texts.append(text)
    return texts


def group_by_gap(lines: list[Line]) -> list[Bubble]:
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


def touching(bubble: Bubble, margin: float) -> bool:
    """Text that touches its bubble's top or bottom: a bar cuts the bubble
    (a whole one has padding around its text)."""
    lines = [ln for ln in bubble.lines if words.split_time(ln.text)[1] is None]
    if not lines:  # a time and its ticks make a taller box than text does
        return False
    top = min(ln.box[1] for ln in lines) - bubble.box[1]
    bottom = bubble.box[3] - max(ln.box[3] for ln in lines)
    return min(top, bottom) < margin


def nested(fills: px.Fills, line: Line, home: Bubble, dp: float) -> Bubble | None:
    """The quote box around ``line`` inside ``home``, if the line sits on
    another colour than its bubble's at the same row."""
    image = fills.image
    x, y = line.box[0] - SEED_OFFSET, int(line.cy)
    ref = home.box[0] + max(2, round(3 * dp))
    if ref >= x or y >= image.shape[0] or x >= image.shape[1]:
        return None
    if not px.differs(px.pixel(image, x, y), px.pixel(image, ref, y), NESTED_TOLERANCE):
        return None
    found = fills.around(line.box)
    if found is None:
        return None
    box, colour = found
    inner = (box[2] - box[0]) * (box[3] - box[1])
    if inner >= 0.9 * home.area or not px.contains(home.box, box, slack=2):
        return None
    return Bubble(box=box, colour=colour, parent=home)


def find(image: Image, body: list[Line], dp: float) -> tuple[list[Bubble], list[Line]]:
    """Every region of one colour a line's fill finds (a bubble, or a quote
    box inside one: ``parent`` set), each with the lines inside it; and the
    lines no fill put in a region (``loose``)."""
    bubbles: list[Bubble] = []
    loose: list[Line] = []
    slack = px.hold_slack(image.shape[1])
    fills = px.Fills(image)
    for line in sorted(body, key=lambda ln: (ln.box[1], ln.box[0])):
        homes = [b for b in bubbles if px.contains(b.box, line.box, slack)]
        home = min(homes, key=lambda b: b.area) if homes else None
        if home is not None and home.parent is None:
            inner = nested(fills, line, home, dp)
            if inner is not None:
                bubbles.append(inner)
                home = inner
        if home is None:
            found = fills.around(line.box)
            if found is not None:
                home = Bubble(box=found[0], colour=found[1])
                bubbles.append(home)
        if home is None:
            loose.append(line)
        else:
            home.lines.append(line)
    still: list[Line] = []
    for line in loose:  # a line read before the bubble around it was found
        homes = [b for b in bubbles if px.contains(b.box, line.box, slack)]
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


def drawn(image: Image, row: list[Line], paper: RGB, typical: float) -> bool:
    """A row that is a drawing PP-OCR read as glyphs (jumbo emoji, "🎉🎉🎉"
    read as "福福福"): every piece far taller than the screenshot's text
    (``typical``, the median line height in bubbles) and in colour; text,
    a sender's name among it, is drawn at text size."""
    return bool(typical) and all(
        ln.height >= DRAWN * typical and px.saturated(px.ink(image, ln.box, paper)) for ln in row
    )


def read_inside(
    image: Image, bubble: Bubble, quotes: list[Bubble], typical: float = 0
) -> tuple[list[list[Line]], str | None]:
    """The bubble's rows without its sender's row and without rows that are
    drawings (``drawn``: no text, no sender), and the sender; sets
    ``bubble.quote`` from the quote boxes inside it."""
    rows = rows_of(bubble.lines)
    sender = None
    paper = bubble.colour or px.pixel(image, bubble.box[0] + 2, bubble.box[1] + 2)
    rows = [row for row in rows if not drawn(image, row, paper, typical)]
    if len(rows) > 1 or (rows and quotes):
        first = px.ink(image, rows[0][0].box, paper)
        last = px.ink(image, rows[-1][0].box, paper) if len(rows) > 1 else None
        name = join([ln.text for ln in rows[0]])
        if (
            px.saturated(first)
            and (last is None or px.differs(first, last, 40))
            and words.link_host(name) is None  # a link is blue, and no name
        ):
            sender = name
            rows = rows[1:]
    if len(rows) > 1 and words.is_forwarded(join([ln.text for ln in rows[0]])):
        rows = rows[1:]  # the label over a forwarded message, not its text
    # A link's preview card: in the bubble under the link (Telegram), or in a
    # box of its own (WhatsApp's, which would read as a quote): not text.
    host = words.link_host(words.join_rows([join([ln.text for ln in row]) for row in rows]))
    boxed = [ln for q in quotes for ln in q.lines]
    if host is not None:
        rows = _without_preview(rows, host, image.shape[1] / 360)
        bubble.preview = any(words.same_site(ln.text, host) for ln in bubble.lines + boxed)
    if quotes and not bubble.preview:
        bubble.quote = _quote(quotes)
    return rows, sender


def _without_preview(rows: list[list[Line]], host: str, dp: float) -> list[list[Line]]:
    """The rows without a link's preview card drawn under the link in the
    bubble (Telegram): the rows down to one that is the link's domain,
    indented from the text's column (the card's bar), after the link's rows."""
    ends = [
        i
        for i, row in enumerate(rows)
        if i and words.same_site(join([ln.text for ln in row]), host)
    ]
    if not ends:
        return rows
    end = ends[-1]
    column = rows[0][0].box[0]
    start = end
    while start > 1 and rows[start - 1][0].box[0] - column >= 4 * dp:
        start -= 1
    if rows[end][0].box[0] - column < 4 * dp:
        return rows  # a domain typed in the text, at its column
    return rows[:start] + rows[end + 1 :]


def _quote(quotes: list[Bubble]) -> dict[str, Any] | None:
    """A quoted message from its box's rows: the first of two or more is
    its sender; a lone row in the top half of the box is the sender (the
    label over a quoted emoji or photo, which PP-OCR cannot read: the text
    is empty), one lower down the quoted text (under a label not read)."""
    q_rows = rows_of([ln for q in quotes for ln in q.lines])
    texts = [join([ln.text for ln in row]) for row in q_rows]
    if len(texts) >= 2:
        return {"sender": texts[0], "text": join(texts[1:])}
    if not texts:
        return None
    top = min(q.box[1] for q in quotes)
    bottom = max(q.box[3] for q in quotes)
    if max(ln.cy for ln in q_rows[0]) < (top + bottom) / 2:
        return {"sender": texts[0], "text": ""}
    return {"sender": None, "text": texts[0]}


def _time_inked_apart(image: Image, bubble: Bubble, rows: list[list[Line]], dp: float) -> bool:
    """The time PP-OCR read glued to the text that ends ``rows`` is drawn
    in another ink than the text (an app's time is grey or tinted; a typed
    time is text): the time's part of the piece, placed by its share of the
    characters, against the text's part, the outer half of each."""
    piece = rows[-1][-1]
    x1, y1, x2, y2 = piece.box
    before = words.split_time(piece.text)[0]
    if not before:
        return False
    cut = x1 + (x2 - x1) * len(before) / max(1, len(piece.text))
    left: Box = (x1, y1, round((x1 + cut) / 2), y2)
    right: Box = (round((cut + x2) / 2), y1, x2, y2)
    if left[2] - left[0] < 2 or right[2] - right[0] < 2:
        return False
    paper = bubble.colour or px.pixel(image, bubble.box[0] + 2, bubble.box[1] + 2)
    inks = px.ink(image, left, paper), px.ink(image, right, paper)
    drawn = all(px.differs(ink, paper, 40) for ink in inks)  # (no stroke there: no evidence)
    return drawn and px.differs(inks[0], inks[1], 40)


def parse(
    image: Image,
    messages: list[Bubble],
    quotes: dict[int, list[Bubble]],
    named: dict[int, str],
    dp: float,
    typical: float = 0,
) -> dict[int, list[list[Line]]]:
    """Inside every bubble: fills its ``sender`` (a coloured first row, else
    the name found above it in ``named``), ``quote``, ``time`` (a time at
    its end, when most of the other bubbles end with one or it is drawn in
    another ink than the text), ``text`` (what is left, "Edited" taken off) and
    ``kind`` voice (a waveform and a duration; empty text). Gives each
    bubble's text rows (without the sender's row), by ``id``; ``typical``
    is the median height of a line in a bubble (``drawn``)."""
    rows_by: dict[int, list[list[Line]]] = {}
    for bubble in messages:
        rows, bubble.sender = read_inside(image, bubble, quotes[id(bubble)], typical)
        bubble.sender = bubble.sender or named.get(id(bubble))
        rows_by[id(bubble)] = rows
    ends: dict[int, tuple[str, str] | None] = {}
    own: set[int] = set()  # bubbles whose end time is a piece of its own
    for bubble in messages:
        rows = rows_by[id(bubble)]
        end = None
        if rows:
            piece = rows[-1][-1]
            before, time = words.split_time(pieces(rows[-1])[-1])
            if time is not None and piece.box[2] >= bubble.box[2] - 40 * dp:
                end = (before, time)
                if not before and len(rows) + len(rows[-1]) > 2:
                    own.add(id(bubble))
        ends[id(bubble)] = end
    timed = sum(1 for end in ends.values() if end is not None)
    for bubble in messages:
        texts = [pieces(row) for row in rows_by[id(bubble)]]
        end = ends[id(bubble)]
        # The app's time: a piece of its own when most bubbles end with a
        # time (or the bubble is alone); one read glued to the text when most
        # of the other bubbles end with one (an app that draws a time in
        # every bubble: a typed "See you at 10:30" in an app that draws none
        # keeps it) or when it is drawn in another ink than the text.
        others = len(messages) - 1
        if id(bubble) in own:
            split = timed >= 0.5 * len(messages) or not others
        else:
            voted = others > 0 and timed - (end is not None) >= 0.5 * others
            split = end is not None and (
                voted or _time_inked_apart(image, bubble, rows_by[id(bubble)], dp)
            )
        if end is not None and split:
            texts[-1][-1] = end[0]
            bubble.time = end[1]
        bubble.text = words.without_edited(
            words.join_rows([join(row) for row in texts]), bubble.time is not None
        )
        if (
            bubble.colour is not None
            and bubble.quote is None
            and words.has_duration(bubble.text)
            and marks.voice_icon(image, bubble.box, bubble.colour)
        ):
            bubble.kind, bubble.text = "voice", ""  # whatever PP-OCR made of the icon
    return rows_by
