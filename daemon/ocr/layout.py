"""OCR text lines + the screenshot's pixels → a MergeStep; no I/O.

Runs inside the OCR worker process (``daemon/ocr/worker.py``), which has
NumPy and OpenCV from the ``ocr`` extra; the daemon itself never imports it.
What the pixels say is ``daemon/ocr/pixels.py`` (regions of one colour)
and ``daemon/ocr/marks.py`` (icons, dots, avatars), what a text is
``daemon/ocr/words.py``, what is inside one bubble ``daemon/ocr/bubble.py``,
what around the messages is the app's ``daemon/ocr/chrome.py``, pictures
``daemon/ocr/pictures.py``, replies under a label ``daemon/ocr/replies.py``,
a thread without bubbles ``daemon/ocr/thread.py`` (who is who in it
``daemon/ocr/people.py``), the answer's shape
``daemon/ocr/step.py``; this module runs the stages below in order
(``read``) on one ``daemon/ocr/screen.Screen``, each a function that says
what it promises.
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

from typing import Any

import numpy as np

from daemon.ocr import bubble as bb
from daemon.ocr import chrome, marks, pictures, replies, step, thread, words
from daemon.ocr import pixels as px
from daemon.ocr.bubble import Bubble, Line, Side, bubble_text, clip, lines_from_ocr
from daemon.ocr.chrome import HEADER_MAX_DP, TOP_BAND_DP
from daemon.ocr.pixels import Image
from daemon.ocr.screen import Screen

__all__ = ["Line", "Side", "bubble_text", "build_step", "lines_from_ocr", "read"]

SMALL_PRINT = 0.8  # a loose line lower than this share of bubble text is chrome


def read(image: Image, lines: list[Line], user_side: Side = "right") -> tuple[dict[str, Any], int]:
    """A MergeStep-shaped dict from the screenshot (RGB, H×W×3) and its
    lines, and how many lines were left out as uncertain (``dropped_lines``).

    Every bubble box lies inside the image and is not empty, whatever boxes
    the engine gave."""
    height, width = image.shape[:2]
    image = np.array(image, dtype=np.uint8, order="C")  # OpenCV wants it writable
    lines = clip(lines, width, height)
    dp = width / 360
    frame = chrome.frame(lines, width, height, image)
    framed = {id(ln) for ln in frame.status + frame.keys + frame.inputs}
    # A line saying someone is typing (under the messages; a header's subtitle
    # says it too): no message, sent or unsent, and nothing to be unsure of.
    body = [ln for ln in lines if id(ln) not in framed and not words.is_typing(ln.text)]
    typing = [ln for ln in lines if id(ln) not in framed and words.is_typing(ln.text)]
    found, loose = bb.find(image, body, dp)
    s = Screen(
        image=image,
        width=width,
        height=height,
        frame=frame,
        found=found,
        loose=loose,
        paper=px.paper(image, round(TOP_BAND_DP * dp), round(frame.bottom)),
        dropped=sum(1 for ln in frame.inputs if len(ln.text.strip()) > 1),
    )
    x0 = thread.column(loose, dp, width, s.avatar_at)
    if x0 is not None:  # a thread without bubbles (Slack-like)
        return _read_thread(s, x0, user_side)
    _keep_messages(s)
    labels = [ln for ln in s.loose if words.replied_to(ln.text) is not None]
    s.loose = [ln for ln in s.loose if ln not in labels]
    _senders_above(s)
    name, counted = _header(s)
    s.rows = bb.parse(image, s.messages, s.quotes, s.named, dp, s.typical)
    # A sender in a name's colour (the bubble's first row) is drawn in groups only.
    coloured = any(b.sender is not None and id(b) not in s.named for b in s.messages)
    replies.place(s, labels)
    voices = [b for b in s.messages if b.kind == "voice"]  # an icon read apart, past the bubble
    s.loose = [ln for ln in s.loose if not any(px.overlap(ln.box, b.box) > 0.5 for b in voices)]
    pictures.place(s)
    _around(s)
    _outside(s)
    group = counted or coloured
    group = group or any(words.lists_members(ln.text) for ln in s.header)
    group = group or chrome.member_typing([ln for ln in typing if ln.cy < s.limit], name)
    group = group or sum(1 for b in s.messages if b.sender) >= 2
    return step.bubbles_step(s.messages, width, height, user_side, name, group), s.dropped


def build_step(image: Image, lines: list[Line], user_side: Side = "right") -> dict[str, Any]:
    """``read`` without the count of dropped lines."""
    return read(image, lines, user_side)[0]


def _read_thread(s: Screen, x0: float, user_side: Side) -> tuple[dict[str, Any], int]:
    """``read`` for a thread without bubbles, its messages at column ``x0``:
    a filled box at the column under a message is a code block (its text is
    the message's) or a file card (an icon's square at its left); other
    text in filled boxes is counted (a date divider's, a reaction's are chrome)."""
    image, dp, frame, width = s.image, s.dp, s.frame, s.width

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
        thread.Card(b.box, text_of(b), marks.icon_left(image, b.box), cut_card(b))
        for b in s.found
        if text_of(b)
        and abs(b.box[0] - x0) <= 2 * thread.COLUMN_DP * dp
        and (b.box[3] - b.box[1] >= 26 * dp or cut_card(b))
    ]
    carded = {id(ln) for card in cards for ln in card.lines}
    boxed = [ln for b in s.found for ln in text_of(b) if id(ln) not in carded]
    return step.thread_step(
        s.loose,
        x0,
        frame,
        width,
        s.height,
        user_side,
        s.dropped + len(boxed),
        s.avatar_at,
        lambda top, bottom: marks.ink_blobs(
            image, (round(x0 - 8 * dp), round(top), width - round(4 * dp), round(bottom)), s.paper
        ),
        cards,
    )


def _keep_messages(s: Screen) -> None:
    """``s.messages``: the regions found that are messages, not quote boxes,
    pills or avatars; a bubble a bar or the header cuts (square corners near
    the chat's ends, text touching its edge, a quote to its edge, a row
    running past it) goes to ``s.cut`` and its lines, its quote's and its
    sender's name above it are counted in ``dropped``, as is a cut
    bubble's quote left on the wallpaper (``s.inside``)."""
    image, dp, frame, paper, found = s.image, s.dp, s.frame, s.paper, s.found
    heights = sorted(ln.height for b in found for ln in b.lines)
    s.typical = heights[len(heights) // 2] if heights else 0
    messages = [
        b
        for b in found
        if b.parent is None
        and not chrome.pill(b, s.width, s.typical)
        and not chrome.avatar(b, dp, found, lambda box: marks.region_beside(image, box, paper))
    ]
    pictured = {id(b) for b in messages if all(words.is_time(ln.text) for ln in b.lines)}
    s.inside = [  # a cut bubble's quote (a picture's time overlay is read below)
        b for b in messages if id(b) not in pictured and px.inside(image, b.box, paper)
    ]
    s.dropped += sum(len(b.lines) for b in s.inside)
    messages = [b for b in messages if b not in s.inside]
    # Square corners are a cut only near the chat's ends (some apps draw square bubbles).
    chat_ends = (TOP_BAND_DP * dp, frame.bottom - 24 * dp)
    s.cut = [
        b
        for b in messages
        if id(b) not in pictured
        and (
            (px.cut(image, b.box) and (b.box[1] < chat_ends[0] or b.box[3] > chat_ends[1]))
            or bb.touching(b, 2 * dp)
            or px.on_bar(image, b.box, paper)
            or any(
                q.parent is b and q.box[3] >= b.box[3] - dp for q in found
            )  # a quote to the edge
            or any(chrome.runs_off(ln, b, frame.bottom, dp) for ln in s.loose)
        )
    ]
    s.dropped += sum(len(b.lines) for b in s.cut)
    s.dropped += sum(len(q.lines) for b in s.cut for q in found if q.parent is b)
    s.messages = [b for b in messages if b not in s.cut]
    near_cut = [  # in a cut bubble, or its sender's name above it, or a cut quote's row
        ln
        for ln in s.loose
        if any(px.overlap(ln.box, b.box) > 0.5 or chrome.names(ln, b, dp) for b in s.cut)
        or any(chrome.runs_off(ln, b, frame.bottom, dp) for b in found)
    ]
    s.dropped += len(near_cut)
    s.loose = [ln for ln in s.loose if ln not in near_cut]
    s.quotes = {id(b): [q for q in found if q.parent is b] for b in s.messages}


def _senders_above(s: Screen) -> None:
    """A short line just above a bubble and aligned with it is its sender
    (WeChat, LINE, Messenger), even above the first bubble, under the
    header: ``s.named`` by the bubble's id, the lines in ``s.name_lines``."""
    for ln in sorted(s.loose, key=lambda ln: ln.cy):
        if words.is_receipt(ln.text):
            continue  # "Delivered" under a bubble is no sender of the next one
        below = [b for b in s.messages if id(b) not in s.named and chrome.names(ln, b, s.dp)]
        if below:
            s.named[id(below[0])] = ln.text
            s.name_lines.append(ln)
    s.loose = [
        ln
        for ln in s.loose
        if ln.text not in s.named.values() or not chrome.named(ln, s.messages, s.dp)
    ]


def _header(s: Screen) -> tuple[str | None, bool]:
    """The header's lines (loose, above the first bubble, within 170 dp;
    without text bubbles above the first picture larger than an avatar,
    within 170 dp, or in the top band) leave ``s.loose`` for ``s.header``;
    gives the name they show and whether it counts members (a group)."""
    dp = s.dp
    if s.messages:
        s.limit = min(min(b.box[1] for b in s.messages), HEADER_MAX_DP * dp)
    else:  # no text bubble: the first picture says where the chat starts
        tops = [  # (iMessage's name sits under a centred avatar, below the top band)
            box[1]
            for box in px.blobs(s.image, round(TOP_BAND_DP * dp), round(s.frame.bottom), s.paper)
            if max(box[2] - box[0], box[3] - box[1]) > 56 * dp
        ]
        s.limit = min(min(tops), HEADER_MAX_DP * dp) if tops else TOP_BAND_DP * dp
    s.header = [ln for ln in s.loose if ln.cy < s.limit]
    s.loose = [ln for ln in s.loose if ln.cy >= s.limit]
    name, counted = chrome.name(s.header, lambda ln: marks.on_patch(s.image, ln.box))
    for ln in s.header:  # PP-OCR drops the space in a name ("EmmaWilson"): the pixels show it
        if name is not None and words.name_of(words.header_text(ln.text))[0] == name:
            paper = px.pixel(s.image, max(0, ln.box[0] - 3), (ln.box[1] + ln.box[3]) // 2)
            name = words.spaced_name(name, marks.word_gaps(s.image, ln.box, paper))
            break
    return name, counted


def _around(s: Screen) -> None:
    """Loose lines that belong to a bubble beside or above them: a read
    receipt beside or under it (chrome), a sender above a picture, a time
    beside its bottom (LINE). What is left stays in ``s.loose``."""
    dp = s.dp
    rest: list[Line] = []
    for ln in sorted(s.loose, key=lambda ln: ln.cy):
        if words.is_receipt(ln.text) and any(chrome.receipt_of(ln, b, dp) for b in s.messages):
            continue  # LINE's "Read" beside a bubble, iMessage's "Delivered" under it: chrome
        below = [b for b in s.messages if b.sender is None and chrome.names(ln, b, dp)]
        if below:  # above a picture
            below[0].sender = ln.text
            continue
        if words.is_time(ln.text):
            beside = [
                b
                for b in s.messages
                if b.time is None
                and abs(ln.box[3] - b.box[3]) <= 12 * dp
                and (0 <= b.box[0] - ln.box[2] <= 16 * dp or 0 <= ln.box[0] - b.box[2] <= 16 * dp)
            ]
            if beside:
                beside[0].time = words.split_time(ln.text)[1]
                continue
        rest.append(ln)
    s.loose = rest


def _cut_sender(s: Screen, line: Line) -> bool:
    """A short line in a name's colour just above the chat's end, in no
    bubble: the sender's row of a group bubble the input bar hides (its
    fill ran into the bar), whose text is gone."""
    if len(line.text) > 32 or line.box[3] < s.frame.bottom - 80 * s.dp:
        return False
    around = px.pixel(s.image, max(0, line.box[0] - 3), (line.box[1] + line.box[3]) // 2)
    return px.saturated(px.ink(s.image, line.box, around))


def _outside(s: Screen) -> None:
    """Text outside every bubble: chrome (centred timestamps, times, small
    print), not sure (a row a bar cuts, one character, a line under the
    input bar, a column of avatars, a line in the senders' name column, a
    cut bubble's coloured sender row: counted), or messages in bubbles no
    fill could find, grouped by gap and alignment."""
    typical = s.typical
    # A row a bar cuts (the header's or the input bar's edge right at its
    # top or bottom): half hidden, whatever it is: not sure, counted.
    cut = [ln for ln in s.loose if px.bar_edge(s.image, ln.box, s.paper)]
    s.dropped += len(cut)
    keep = [
        ln
        for ln in s.loose
        if ln not in cut
        and not chrome.centred(ln.box, s.width)
        and not words.is_time(ln.text)
        and (not typical or ln.height >= SMALL_PRINT * typical)
    ]
    unsure = [
        ln
        for ln in keep
        if len(ln.text.strip()) < 2
        or ln.box[3] > s.frame.bottom
        or (typical and ln.height > 2.5 * typical)  # a column of avatars read as "BBBB"
        or chrome.in_name_column(ln, s.name_lines, s.dp)
        or _cut_sender(s, ln)
    ]
    s.dropped += len(unsure)
    keep = [ln for ln in keep if ln not in unsure]
    for bubble in bb.group_by_gap(keep):
        bubble.text = bubble_text(bubble.lines)
        s.messages.append(bubble)
    s.loose = []
