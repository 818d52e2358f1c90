"""A thread without bubbles (Slack-like) from OCR text lines; no I/O.

The pixels it needs come through callables from ``daemon/ocr/layout.py``
(an avatar left of a row, what is drawn at the column).

Part of the local OCR's layout (``daemon/ocr/layout.py`` asks this module
first). In such a screenshot every message starts at one column, right of
a square avatar: a row with the sender's bold name and the time ("Alex Kim
1:30 PM") heads a message, the rows under it at the same column are its
text, and a follow-up by the same sender comes without name and time, a
little further down than a text row's spacing (learnt from the screenshot:
the median of the shortest steps between rows of the column, ``_pitch``). Under a message, its
thread's "3 replies  Last reply …" and a reaction's count are not messages;
a date divider is centred and not at the column.

What the step says (see README, "Local OCR quality"): ``sender`` is the bold
name, carried to the follow-ups; ``time`` is the time shown (a follow-up
shows none). A thread has no sides, so ``side`` follows the speaker: in a
direct message (a header that is one person's name, who writes in it or
whose presence, "Active", is under it) that person is the
talker (left) and every other sender, the signed-in user, is the user
(right, ``participants.user`` their name); in a channel (``# name``, "N
members") or a thread view nobody's messages can be told to be the
signed-in user's, so each one is the talker's, with its sender, and the
channel is ``participants.group``. PP-OCR has no emoji: what is drawn at
the column and no line reads, as tall as a jumbo emoji, is an emoji-only
message (``kind`` sticker, empty text, the drawing's box), under its name
row or alone (a follow-up); a name row with nothing drawn under it is left
out and counted (its body is something the reader cannot tell).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from daemon.ocr import people, words

if TYPE_CHECKING:
    from daemon.ocr.bubble import Line

MIN_COLUMN_DP: Final = 36  # the avatar is left of the messages' column
COLUMN_DP: Final = 4  # rows of one column start within this of each other
NAME_GAP_DP: Final = 16  # the time follows the name within this
EMOJI_DP: Final = 24  # a jumbo emoji alone at the column is this tall at least
# A thread's summary under a message, a reply count, a reaction's count.
# (A reaction's count sits right of the column, after its emoji: a bare
# number at the column is a message, "2" or "100".)
THREAD_CHROME: Final = re.compile(
    r"^(\d+\s*(repl(y|ies)|条回复|回复)\b.*|last reply\b.*|view thread"
    r"|\S\s+\d{1,3})$",  # a reaction's pill at the column: its emoji read as a letter, its count
    re.I,
)
CUT_ROW: Final = 0.75  # a row under this share of the column's text height: the bar hides the rest


Box = tuple[int, int, int, int]


@dataclass(slots=True)
class Message:
    rows: list[list[Line]] = field(default_factory=list)
    sender: str | None = None
    time: str | None = None
    headed: bool = False  # starts with its name row
    drawn: Box | None = None  # what is drawn under its name and no OCR line reads (an emoji)
    cards: list[Card] = field(default_factory=list)  # its code blocks and file cards
    tail: int = 0  # the bottom of text under it right of the column (a card no fill found)
    closed: bool = False  # a thread's summary or a reaction came under it


@dataclass(slots=True)
class Card:
    """A filled box under a message at the column: a code block (its text
    is typed text, the message's) or a file card (``file``: an icon's square)."""

    box: Box
    lines: list[Line]
    file: bool
    cut: bool = False  # the input bar hides its end: its message is not whole


def rows_of(lines: list[Line]) -> list[list[Line]]:
    """Rows top to bottom (a piece joins a row whose tallest piece's centre
    is within half its height, or sits inside it when that piece is small: a
    status emoji read as two stacked pieces beside a name), pieces of
    a row left to right; the bubble layout's rows too."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: ln.cy):
        anchor = max(rows[-1], key=lambda ln: ln.height) if rows else None
        if anchor is not None and (
            abs(line.cy - anchor.cy) < 0.5 * max(line.height, 1)
            or (anchor.height < 0.7 * line.height and line.box[1] <= anchor.cy <= line.box[3])
        ):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.box[0]) for row in rows]


def _name_row(
    row: list[Line], dp: float, avatar: Callable[[Line], bool] | None = None
) -> tuple[str, str] | None:
    """(name, time) when the row is a message's head: a name, then a time;
    between them a status emoji or an app's "APP" badge may be read as a
    short piece ("*", "July*", "APP"), and after the name as junk in its
    piece, which the name loses (``_clean_name``). A name and a time read as
    one piece ("Alex Kim 1:30 PM") heads a message only with an avatar left
    of it (when ``avatar`` can tell): a text that ends in a time ("See you
    at 10:30") is no name row."""
    first = row[0]
    if first.box[0] < MIN_COLUMN_DP * dp:
        return None
    at = next((i for i, ln in enumerate(row) if i and words.is_time(ln.text)), None)
    if at is not None:
        between = row[1:at]
        if (
            all(len(ln.text.strip()) <= 8 for ln in between)
            and -12 * dp <= row[at].box[0] - row[at - 1].box[2]  # boxes may overlap a bit
            and row[at].box[0] - first.box[2] <= (NAME_GAP_DP + 48) * dp  # an emoji unread
            and not words.HAS_TIME.search(first.text)
            and any(ch.isalnum() for ch in _clean_name(first.text))  # "-" is no name
        ):
            return _clean_name(first.text), words.split_time(row[at].text)[1] or ""
        return None
    before, time = words.split_time(first.text)
    if time is not None and before and len(row) == 1 and len(before) <= 40:
        if avatar is not None and not avatar(first):
            return None
        name = _clean_name(before)
        return (name, time) if any(ch.isalnum() for ch in name) else None
    return None


# Where a status emoji or a badge read as text starts after a name: a
# symbol, or a quote mark after a space ("Alex Kim 'July\"", "Mia $").
_NAME_JUNK: Final = re.compile(r"\s*(?:[*$\u2018\u2019\"\u201c\u201d#@!?%&^~|<>()\[\]{}:;]|\s')")


def _clean_name(text: str) -> str:
    """A sender's name without what PP-OCR read of the status emoji or the
    "APP" badge after it: "Alex Kim *s" → "Alex Kim", "Jira APP" → "Jira"."""
    text = text.strip()
    junk = _NAME_JUNK.search(text)
    if junk is not None:
        cut = junk.start()
        after = text[junk.end() : junk.end() + 1]
        attached = cut and not text[cut].isspace() and text[cut - 1].isalnum()
        if attached and not after.isalpha():  # "July*": the word goes too
            cut = text.rfind(" ", 0, cut) + 1 or cut
        text = text[:cut]
    return re.sub(r"\s+APP$", "", text).strip()


def column(
    lines: list[Line], dp: float, width: int, avatar: Callable[[Line], bool] | None = None
) -> float | None:
    """The messages' column, when at least two rows that are not in bubbles
    are name + time rows that start there (or one is), with a text row at
    that column too: a thread layout. A centred "Yesterday 9:02 PM" over
    bubbles is a timestamp, not a name row."""
    rows = [r for r in rows_of(lines) if not _centred(r, width)]
    heads = [(i, row[0].box[0]) for i, row in enumerate(rows) if _name_row(row, dp, avatar)]
    for i, x in heads:
        at = [j for j, row in enumerate(rows) if abs(row[0].box[0] - x) <= COLUMN_DP * dp]
        names = sum(1 for _, s in heads if abs(s - x) <= COLUMN_DP * dp)
        texts = len(at) - names
        if (names >= 2 and texts >= 1) or (texts >= 2 and len([j for j in at if j > i]) >= 2):
            return x
    return None


def _centred(row: list[Line], width: int) -> bool:
    """A row in the middle, away from both edges (a date divider, a timestamp
    over bubbles); a long text row at the column nearly fills the width."""
    left, right = row[0].box[0], width - row[-1].box[2]
    return abs(left - right) < 0.08 * width and min(left, right) > 0.15 * width


def read(
    lines: list[Line],
    header: list[Line],
    x0: float,
    dp: float,
    bottom: float,
    avatar: Callable[[Line], bool] | None = None,
    ink: Callable[[float, float], list[Box]] | None = None,
    cards: list[Card] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str | None], bool, int]:
    """The messages (``bbox``, ``text``, ``kind``, ``sender``, ``time``, and
    ``speaker``/``side``), the participants, whether it is a group, and the
    lines dropped (a message whose name row a bar hides, a last row the bar
    cuts, a name row with nothing under it). ``avatar`` tells whether a
    square avatar is left of a line, ``ink`` gives the boxes of what is
    drawn from the column rightwards between two heights."""
    messages: list[Message] = []
    dropped = 0
    rows = rows_of(lines)
    pitch = _pitch([r for r in rows if abs(r[0].box[0] - x0) <= COLUMN_DP * dp])
    for row in rows:
        if abs(row[0].box[0] - x0) > COLUMN_DP * dp:
            if messages and row[0].box[0] > x0:  # a thread's summary, a reaction, a divider
                messages[-1].rows.append([])  # end the message's text
                text = words.join([ln.text for ln in row]).strip()
                if THREAD_CHROME.match(text) or text.lstrip("+").isdigit():
                    messages[-1].closed = True  # what comes after is not its card
                elif not messages[-1].closed:
                    messages[-1].tail = max(messages[-1].tail, max(ln.box[3] for ln in row))
            continue  # (or a reply count at the edge)
        head = _name_row(row, dp, avatar)
        text = words.join([ln.text for ln in row]).strip()
        if head is not None:
            messages.append(Message(rows=[row], sender=head[0], time=head[1], headed=True))
            continue
        if THREAD_CHROME.match(text) or THREAD_CHROME.match(row[0].text.strip()):
            if messages:
                messages[-1].rows.append([])  # a summary ends the message's text
                messages[-1].closed = True
            continue
        if not messages:
            dropped += len(row)  # the name row is under the header: whose, not sure
            continue
        last = messages[-1]
        texts = [r for r in last.rows if r]
        previous = texts[-1]
        step = row[0].box[1] - previous[0].box[1]
        if last.rows[-1] and (
            step <= 1.2 * pitch or (last.headed and len(texts) == 1 and step <= 2 * pitch)
        ):
            last.rows.append(row)
        else:
            messages.append(Message(rows=[row], sender=last.sender))
    for card in sorted(cards or [], key=lambda c: c.box[1]):
        above = [m for m in messages if any(r and r[0].box[1] < card.box[1] for r in m.rows)]
        if not above:
            dropped += len(card.lines)  # under the header: whose, not sure
            continue
        owner = above[-1]
        end = max([ln.box[3] for r in owner.rows for ln in r] + [c.box[3] for c in owner.cards])
        if pitch and card.box[1] - end > 0.5 * pitch:  # a message's padding under its text (or a
            # reaction's pill between): a follow-up of its own, a file or code sent alone
            messages.insert(messages.index(owner) + 1, Message(sender=owner.sender, cards=[card]))
        else:
            owner.cards.append(card)
    if ink is not None and rows:
        spans = lines + [ln for card in cards or [] for ln in card.lines]
        _place_drawn(messages, _drawn(spans, x0, dp, bottom, ink), pitch)
    heights = sorted(r[0].height for m in messages for r in m.rows[1 if m.headed else 0 :] if r)
    typical = heights[len(heights) // 2] if heights else 0
    out = []
    for i, message in enumerate(messages):
        rows = [r for r in message.rows if r]
        boxes = [ln.box for r in rows for ln in r] + ([message.drawn] if message.drawn else [])
        boxes += [card.box for card in message.cards]
        box = [min(b[0] for b in boxes), min(b[1] for b in boxes)]
        box += [max(b[2] for b in boxes), max(b[3] for b in boxes)]
        last_row = rows[-1][0] if rows else None
        under_bar = i == len(messages) - 1 and message.tail > bottom - 24 * dp
        if under_bar or any(card.cut for card in message.cards):  # not whole: not sure
            dropped += sum(len(r) for r in rows) + sum(len(c.lines) for c in message.cards)
            continue
        if box[3] >= bottom or (  # half hidden by the input bar: its last row is short
            i == len(messages) - 1
            and box[3] > bottom - 48 * dp
            and last_row is not None
            and message.drawn is None
            and not message.cards
            and last_row.height < CUT_ROW * typical
        ):
            dropped += sum(len(r) for r in rows)
            continue
        body = rows[1:] if message.headed else rows
        text = words.join([words.join([ln.text for ln in r]) for r in body]).strip()
        text = words.without_edited(text)
        code = [
            words.join([words.join([ln.text for ln in r]) for r in rows_of(card.lines)])
            for card in message.cards
            if not card.file
        ]
        text = "\n".join(part for part in (text, *code) if part)
        item: dict[str, Any] = {"text": text, "sender": message.sender}
        if message.time is not None:
            item["time"] = message.time
        if any(card.file for card in message.cards):
            item["kind"] = "file"  # its typed text, or none
        elif not text:  # an emoji PP-OCR cannot read, under its name or alone
            if message.drawn is None:  # nothing drawn under the name: not sure what
                dropped += sum(len(r) for r in rows)
                continue
            item["kind"] = "sticker"
        pad = round(2 * dp)
        item["bbox"] = [box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad]
        out.append(item)
    participants, group = people.assign(out, header)
    return out, participants, bool(group), dropped


def _pitch(rows: list[list[Line]]) -> float:
    """A text row's step at the column (a follow-up starts further down):
    the lower median of the steps between two rows that are rows apart (at
    least 0.8 of a row's height: one row read as two boxes is not a step),
    among the shortest ones (within 1.15 of the shortest: a follow-up's
    wider steps do not count, however many there are, nor a name row's to
    its text where it is wider than a text row's)."""
    heights = sorted(r[0].height for r in rows)
    if not heights:
        return 0.0
    height = heights[len(heights) // 2]
    steps = [b[0].box[1] - a[0].box[1] for a, b in itertools.pairwise(rows)]
    steps = sorted(s for s in steps if s >= 0.8 * height)
    if not steps:
        return 0.0
    near = [s for s in steps if s <= 1.15 * steps[0]]
    return float(near[(len(near) - 1) // 2])  # the lower median


def _drawn(
    lines: list[Line], x0: float, dp: float, bottom: float, ink: Callable[[float, float], list[Box]]
) -> list[Box]:
    """What is drawn at the column and no OCR line reads, as tall as a
    jumbo emoji: nothing that shares a height with a line (a reaction's
    pill beside its count, a thread's avatars beside "3 replies", a card
    with its text, a status emoji after a name), nothing that starts right
    of the column."""
    top = min((ln.box[1] for ln in lines if abs(ln.box[0] - x0) <= COLUMN_DP * dp), default=bottom)
    spans = [(ln.box[1], ln.box[3]) for ln in lines]
    return sorted(
        (
            box
            for box in ink(top, bottom)
            if abs(box[0] - x0) <= 2 * COLUMN_DP * dp
            and box[3] - box[1] >= EMOJI_DP * dp
            and box[3] < bottom
            and not any(a < box[3] and box[1] < b for a, b in spans)
        ),
        key=lambda b: b[1],
    )


def _place_drawn(messages: list[Message], drawn: list[Box], pitch: float) -> None:
    """Each drawn box is the body of the name row right above it (an emoji
    under its name), else a follow-up of its own (an emoji-only message
    without a name row): the sender is the one above it."""
    for box in drawn:
        above = [i for i, m in enumerate(messages) if m.rows and m.rows[0][0].box[1] < box[1]]
        if not above:
            continue  # under the header: whose, not sure (counted by no line: nothing was read)
        i = above[-1]
        message = messages[i]
        texts = [r for r in message.rows if r]
        if message.headed and len(texts) == 1 and message.drawn is None:
            gap = box[1] - texts[0][0].box[3]
            if gap <= 2 * pitch:
                message.drawn = box
                continue
        messages.insert(i + 1, Message(rows=[], sender=message.sender, drawn=box))
