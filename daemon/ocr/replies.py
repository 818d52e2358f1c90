"""Replies drawn under a label (Messenger: "Emma replied to you"); no I/O.

A stage of ``daemon/ocr/layout.py``'s ``read``, after the text inside the
bubbles is read: the label is the app's, the faded quoted message under it
is the reply's ``quote``. Sizes in dp, 1 dp = width / 360 px.
"""

from __future__ import annotations

from daemon.ocr import bubble as bb
from daemon.ocr import pixels as px
from daemon.ocr import words
from daemon.ocr.bubble import Bubble, Line
from daemon.ocr.screen import Screen


def place(s: Screen, labels: list[Line]) -> None:
    """A reply's label over its quote (Messenger: "Emma replied to you", the
    quoted message drawn faded above the reply) is the app's: no message,
    no sender. The bubble right under it (within 8 dp) that the next one is
    drawn over (or starts within 1 dp of its end) is the quote of that next
    one, its sender the one the label names (with that reply cut by the
    bar, it is left out and counted);
    else the first bubble under the label is the reply and its quote is
    what PP-OCR did not read (an emoji): the sender alone."""
    dp = s.dp
    for label in labels:
        whom = words.replied_to(label.text)
        below = sorted(
            (
                b
                for b in s.messages
                if b.box[1] >= label.box[3] - 2 * dp
                and b.box[1] - label.box[3] <= 120 * dp
                and b.box[0] < label.box[2]
                and label.box[0] < b.box[2]
            ),
            key=lambda b: b.box[1],
        )
        if not below:
            continue
        first = below[0]
        reply = below[1] if len(below) > 1 else None
        if first.box[1] - label.box[3] <= 8 * dp and any(  # the reply under it, cut by the bar
            first.box[1] < c.box[1] <= first.box[3] + 8 * dp
            and c.box[0] < first.box[2]
            and first.box[0] < c.box[2]
            for c in s.cut
        ):
            s.messages.remove(first)  # a cut reply's quote: not sure, counted
            s.dropped += len(first.lines)
            continue
        if (
            reply is not None
            and first.box[1] - label.box[3] <= 8 * dp
            # drawn over the quote's bottom: a reply wider than the quote hides
            # all of it, the quote's region ends where the reply starts
            and reply.box[1] <= first.box[3] + dp
        ):
            if reply.quote is None:
                reply.quote = {"sender": whom, "text": first.text}
            s.messages.remove(first)
        elif first.quote is None:
            first.quote = {"sender": whom, "text": _faded_rows(s, first)}


def _faded_rows(s: Screen, bubble: Bubble) -> str:
    """The text of a quote drawn faded above its reply in one region of one
    colour (Messenger, when the two touch): the top rows in another ink
    than the last row's. They leave the bubble's text and box."""
    rows = s.rows.get(id(bubble), [])
    paper = bubble.colour or s.paper
    inks = [px.ink(s.image, row[0].box, paper) for row in rows]
    k = 0
    while k < len(rows) - 1 and px.differs(inks[k], inks[-1], 40):
        k += 1
    if not k:
        return ""
    texts = [bb.join(bb.pieces(row)) for row in rows]
    bubble.text = words.join_rows(texts[k:])
    top = (max(ln.box[3] for ln in rows[k - 1]) + min(ln.box[1] for ln in rows[k])) // 2
    bubble.box = (bubble.box[0], top, bubble.box[2], bubble.box[3])
    return words.join_rows(texts[:k])
