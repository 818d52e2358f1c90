"""What around the messages is the app's, not a message; no I/O.

Part of the local OCR's layout (``daemon/ocr/layout.py``): the frame (the
status bar, an open keyboard, the input bar), the header's name, date
pills and system lines, avatars and badges, reactions' pills, read
receipts, and where a group sender's name sits above its bubble.
Sizes are in dp, 1 dp = width / 360 px.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from daemon.ocr import marks, words
from daemon.ocr import pixels as px
from daemon.ocr.bubble import Bubble, Line, bubble_text, rows_of
from daemon.ocr.pixels import Box, Image

TOP_BAND_DP: Final = 84  # status bar + title bar, when no bubble says where the chat starts
# Who is typing, in a header's subtitle: "Anna is typing…", "Anna and Ben are typing".
_TYPING_WHO: Final = re.compile(r"^(.{1,40}?)\s*\b(?:is|are)\s*typing\W*$", re.I)
STATUS_DP: Final = 32  # a line centred higher than this is in the status bar
HEADER_MAX_DP: Final = 170  # the header ends above this
INPUT_DP: Final = 76  # the input bar and the nav bar: the bottom this many dp
INPUT_KB_DP: Final = 44  # the input bar above a keyboard's top
KEY_STRIP_DP: Final = 54  # a keyboard's first key row below its top (the suggestion strip)


@dataclass(slots=True)
class Frame:
    """Where the chat is: what is above, below and around it."""

    status: list[Line]
    keys: list[Line]
    inputs: list[Line]
    bottom: float  # the chat ends above this (px)


def frame(lines: list[Line], width: int, height: int, image: Image | None = None) -> Frame:
    """The status bar's lines (the top 32 dp), an open keyboard's (its key
    labels, or its key caps in ``image``), and the input bar's (above the
    keyboard, or the bottom 76 dp): none is a message."""
    dp = width / 360
    status = [ln for ln in lines if ln.cy < STATUS_DP * dp]
    keys: list[Line] = []
    tops = [keyboard_top(lines, width, height)]
    tops.append(None if image is None else marks.key_caps_top(image))
    top = min((t for t in tops if t is not None), default=None)
    if top is not None:
        keys = [ln for ln in lines if ln.cy > top]
        limit = top - INPUT_KB_DP * dp
    else:
        limit = height - INPUT_DP * dp
    taken = {id(ln) for ln in status + keys}
    inputs = [ln for ln in lines if ln.cy > limit and id(ln) not in taken]
    return Frame(status=status, keys=keys, inputs=inputs, bottom=limit)


def keyboard_top(lines: list[Line], width: int, height: int) -> float | None:
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


def centred(box: Box, width: int) -> bool:
    """Timestamps and system notes on the background: in the middle, away from both edges."""
    left, right = box[0], width - box[2]
    return abs(left - right) < 0.08 * width and min(left, right) > 0.2 * width


def pill(bubble: Bubble, width: int, typical: float) -> bool:
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
    rows = rows_of(bubble.lines)
    if len(rows) >= 2:
        starts = [row[0].box[0] for row in rows]
        in_middle = all(
            abs(row[0].box[0] - (width - row[-1].box[2])) <= 2 * tolerance for row in rows
        )
        if in_middle and max(starts) - min(starts) > rows[0][0].height:
            return True
    heights = sorted(ln.height for ln in bubble.lines)
    return bool(typical) and heights[len(heights) // 2] < 0.9 * typical


def avatar(
    bubble: Bubble,
    dp: float,
    others: list[Bubble] | None = None,
    drawn_beside: Callable[[Box], bool] | None = None,
) -> bool:
    """An avatar with initials in it, or an unread badge in the header: not
    a bubble. Beside the bubbles, a square patch at the screen's edge column
    is an avatar when it shows no letter (a shape in a picture read as "！"),
    or when a bubble of ``others`` starts right beside it, level with it (or
    ``drawn_beside`` finds one there in the pixels: a sticker's bubble holds
    no text): then whatever PP-OCR reads on it ("AK", "E", "妈") is its
    initials (a one-letter message at the edge has no bubble beside it)."""
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
    if square and edge and max(w, h) <= 50 * dp and len(text.replace(" ", "")) <= 2:
        x1, y1, x2, y2 = bubble.box
        for other in others or []:
            level = other.box[1] < y2 and other.box[3] > y1
            gap = other.box[0] - x2 if x1 < 12 * dp else x1 - other.box[2]
            if other is not bubble and other.parent is None and level and 0 <= gap <= 24 * dp:
                return True  # initials on an avatar beside a bubble
        return drawn_beside is not None and drawn_beside(bubble.box)
    texts = [words.header_text(ln.text) for ln in bubble.lines]
    small = max(w, h) <= 30 * dp  # a badge; a bubble saying "3" is taller
    return small and bubble.box[3] < HEADER_MAX_DP * dp and all(words.is_badge(t) for t in texts)


def name(
    header: list[Line], on_avatar: Callable[[Line], bool] | None = None
) -> tuple[str | None, bool]:
    """The talker's or group's name in the header, and whether it says group.
    A line just under a label (a subtitle such as Telegram's "Pinned
    Message") at its left edge is what the label shows, not a name. Avatar
    initials ("LM", "K", "伟") are no name where ``on_avatar`` says the line
    sits on an avatar (without it: wherever they are); one-letter names
    ("K", "妈") on the header's own colour are names."""
    candidates = []
    labels = [ln for ln in header if words.is_subtitle(words.header_text(ln.text))]
    for ln in header:
        if any(_under(ln, label) for label in labels):
            continue
        text = words.header_text(ln.text)
        if (
            any(ch.isalpha() for ch in words.name_of(text)[0])  # ".23": a badge, no name
            and not words.is_badge(text)
            and not (words.is_initials(text) and (on_avatar is None or on_avatar(ln)))
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
    found, counted = words.name_of(best)
    return found or None, counted


def member_typing(subtitles: list[Line], title: str | None) -> bool:
    """A header's subtitle naming who is typing ("Anna is typing…", "Anna and
    Ben are typing"), not the title's own name: a group's member (a 1:1
    chat's says "typing…")."""
    for ln in subtitles:
        who = _TYPING_WHO.match(words.header_text(ln.text))
        if who is None:
            continue
        name = words.name_of(who.group(1))[0]
        if name and (title is None or name.replace(" ", "") != title.replace(" ", "")):
            return True
    return False


def _under(line: Line, label: Line) -> bool:
    """``line`` is the next row under ``label``, starting where it starts."""
    h = max(label.height, 1)
    gap = line.box[1] - label.box[3]  # (the two boxes may overlap by a few pixels)
    return -0.3 * h <= gap <= 0.6 * h and abs(line.box[0] - label.box[0]) <= h


def names(line: Line, bubble: Bubble, dp: float) -> bool:
    """Whether ``line`` is the group sender's name shown above ``bubble``: a
    short line just above it at its edge, with no time or date in it (a
    timestamp "Mon 14:05" centred over a bubble is no name)."""
    return (
        -3 * dp <= bubble.box[1] - line.box[3] <= 10 * dp
        and abs(line.box[0] - bubble.box[0]) <= 14 * dp
        and len(line.text) <= 32
        and not words.HAS_TIME.search(line.text)
        and not words.is_date(line.text)
    )


def named(line: Line, bubbles: list[Bubble], dp: float) -> bool:
    """Whether ``line`` is the sender's name above one of ``bubbles``."""
    return any(names(line, b, dp) for b in bubbles)


def runs_off(line: Line, bubble: Bubble, bottom: float, dp: float) -> bool:
    """A row the input bar half hides: it starts in ``bubble`` (or a quote's
    box) and its box runs past the bottom the fill found, where the chat
    ends (a whole bubble's padding holds its rows; the bar cut this one)."""
    return (
        bubble.box[3] > bottom - 48 * dp
        and line.box[1] >= bubble.box[1]
        and line.box[3] > bubble.box[3] + 2
        and px.overlap(line.box, bubble.box) > 0.5
    )


def reaction(box: Box, bubbles: list[Bubble], dp: float) -> bool:
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


def receipt_of(line: Line, bubble: Bubble, dp: float) -> bool:
    """A read receipt's place: beside the bubble, within its height (LINE),
    or just under it at one of its edges (iMessage's "Delivered")."""
    beside = (
        0 <= bubble.box[0] - line.box[2] <= 16 * dp or 0 <= line.box[0] - bubble.box[2] <= 16 * dp
    )
    under = 0 <= line.box[1] - bubble.box[3] <= 16 * dp and (
        abs(line.box[2] - bubble.box[2]) <= 16 * dp or abs(line.box[0] - bubble.box[0]) <= 16 * dp
    )
    return (beside and bubble.box[1] <= line.cy <= bubble.box[3]) or under


def in_name_column(line: Line, name_lines: list[Line], dp: float) -> bool:
    """A line where the group's senders' names are, in their print, with no
    bubble below it: the name of a bubble a bar hides (or one no fill
    found): not a message, and not sure whose."""
    return len(line.text) <= 32 and any(
        abs(line.box[0] - n.box[0]) <= 4 * dp and abs(line.height - n.height) <= 0.2 * n.height
        for n in name_lines
    )
