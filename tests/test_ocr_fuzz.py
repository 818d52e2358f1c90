"""Fuzzing the local OCR's layout (``daemon/ocr/layout.py``) with screens like the apps'.

``test_ocr_layout.py``'s property test draws random boxes and random text:
it almost never reaches the newer paths. These strategies draw what the
apps draw (see ``tests/data/render_apps.py``), at 360 to 1440 px wide:

- a Slack-like thread: square avatars left of a column, "Name 10:42 AM"
  name rows at it (name and time one piece or two, a status emoji or "APP"
  between), text rows at a pitch, follow-ups a little further down, code
  blocks and file cards (filled boxes at the column, an icon's square),
  jumbo emoji (ink no line reads), reactions and thread summaries, a date
  divider, a header (``# channel``, a person and "Active", "N members"),
  an input bar at the bottom that may cut the last message;
- a bubble chat (WhatsApp, WeChat, LINE, Telegram): bubbles at both edges
  with times and ticks inside ('Edited 20:21', '20:211', '10:42 ✓✓') or
  beside them, group senders, quotes (a tinted box inside a bubble), date
  pills, voice notes (a waveform and a duration), photos, CJK text and
  emoji-looking pieces, read receipts, an input bar or a keyboard, bubbles
  that the bar cuts.

Every shot must give: no exception; a step that ``parse_merge_step`` (the
daemon's validation, SPEC §3) accepts; bboxes inside the image with
x1 < x2 and y1 < y2; ``dropped_lines`` a non-negative int no larger than
the lines given less the lines returned (a line is never both dropped and
returned); no line's text returned in two bubbles; the same output twice.

More examples: ``CTXD_FUZZ_EXAMPLES=2000 nice -n 15 .venv/bin/python -m
pytest -q tests/test_ocr_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.extract import parse_merge_step
from daemon.ocr.layout import Line, Side, lines_from_ocr, read

EXAMPLES = int(os.environ.get("CTXD_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 12,
    deadline=None,
    derandomize=not EXAMPLES,  # a fixed set by default: the suite is not flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

WIDTHS = [360, 375, 412, 540, 720, 1080, 1179, 1440]  # dp: width / 360, not always whole
NAMES = ["Alex Kim", "Priya Shah", "Tom", "王伟", "Jira APP", "Mia $", "Alex Kim *s", "July*"]
ODD_NAMES = ["-", "...", "·", "*", "(3)", "12", "Alex", "alexkim", "AlexKim", "李"]
TIMES = ["10:42 AM", "9:31AM", "1:30 PM", "20:44", "20.50", "Yesterday at 9:02 PM", "12:00"]
WORDS = ["lunch", "ok", "see you", "好的", "谢谢", "すごい", "Meet at 4:30 (B2)", "2", "+1", "100"]
ODD_TEXTS = [
    "Thanks! (edited)",
    "Edited 20:21",
    "See you at 10:30",
    "滤 2",
    "3 replies",
    "Last reply today at 10:12",
    "View thread",
    "Yesterday",
    "Monday, November 30th",
    "😀",
    "·川川小小川·小0:40",
    '(LC 20"',
    "0:12",
    "Read",
    "既読",
    "Forwarded",
    "~ Forwarded",
    "Active",
    "12 members",
    "# general",
    "#",
    "<(16) 王老师",
    "周末爬山群(8)",
    "Anna, Ben, Chloe, You",
    "l",
    "q",
    "space",
    "?123",
    "",
    " ",
]
BUBBLE_TIMES = ["20:44", "10:42 ✓✓", "20:211", "Edited 20:21", "16:42 V/", "9:41 AM", "21:15 W"]
PAPERS: list[RGB] = [(255, 255, 255), (26, 29, 33), (239, 234, 226), (237, 237, 237), (0, 0, 0)]
FILLS: list[RGB] = [(255, 255, 255), (149, 236, 105), (220, 248, 198), (43, 82, 120), (0, 92, 75)]
SATURATED: list[RGB] = [(229, 57, 53), (30, 136, 229), (67, 160, 71), (255, 204, 77)]


@dataclass(repr=False)
class Shot:
    """An image and the lines an OCR engine would read on it."""

    image: np.ndarray
    lines: list[Line] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # one per tagged line: its text's mark

    def __repr__(self) -> str:  # what a failure shows: the size and the lines, not the pixels
        return f"Shot({self.width}x{self.height}, lines={self.lines!r})"

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def dp(self) -> float:
        return self.width / 360

    def rect(self, box: tuple[float, float, float, float], colour: RGB) -> None:
        x1, y1, x2, y2 = (round(v) for v in box)
        self.image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = colour

    def text(
        self,
        box: tuple[float, float, float, float],
        text: str,
        ink: RGB,
        *,
        tag: bool = False,
        draw: bool = True,
    ) -> None:
        """A line read at ``box``; with ``tag`` its text carries a mark of its
        own (so that the test can tell whether it was returned); ``draw``
        leaves strokes in the box as text does."""
        x1, y1, x2, y2 = (round(v) for v in box)
        text = text.strip()  # as ``lines_from_ocr`` gives them: stripped, never empty
        if not text:
            return
        if tag:
            mark = "Qz" + chr(97 + len(self.tags) // 26 % 26) + chr(97 + len(self.tags) % 26)
            self.tags.append(mark)
            text = f"{text} {mark}"
        if draw and x2 - x1 > 4 and y2 - y1 > 8:
            self.image[max(0, y1 + 4) : max(0, y2 - 4) : 3, max(0, x1 + 2) : max(0, x2 - 2) : 2] = (
                ink
            )
        self.lines.append(Line(box=(x1, y1, x2, y2), text=text, score=0.95))


def contrast(paper: RGB) -> RGB:
    return (20, 20, 20) if sum(paper) > 382 else (230, 230, 230)


def text_width(text: str, height: float) -> float:
    """About as wide as the text would be drawn at ``height``."""
    return max(1.0, sum(1.0 if ord(c) > 0x2E80 else 0.55 for c in text)) * height


canvas_size = st.tuples(st.sampled_from(WIDTHS), st.floats(1.5, 2.3))
any_text = st.one_of(st.sampled_from(WORDS), st.sampled_from(ODD_TEXTS), st.text(max_size=10))


def blank_shot(draw: st.DrawFn, papers: list[RGB]) -> tuple[Shot, float, RGB, RGB]:
    """A phone's screen of one paper colour: the shot, its dp, the paper and
    an ink that reads on it."""
    width, aspect = draw(canvas_size)
    paper = draw(st.sampled_from(papers))
    shot = Shot(np.full((round(width * aspect), width, 3), paper, np.uint8))
    return shot, width / 360, paper, contrast(paper)


@st.composite
def thread_shots(draw: st.DrawFn) -> tuple[Shot, str]:
    """A Slack-like thread, as ``render_apps.py`` draws one."""
    shot, dp, paper, ink = blank_shot(draw, PAPERS[:2])
    width, height = shot.width, shot.height
    if draw(st.booleans()):  # the status bar
        shot.text((12 * dp, 6 * dp, 48 * dp, 24 * dp), "9:41", ink)
        shot.text((300 * dp, 6 * dp, 348 * dp, 24 * dp), "74%", ink)
    title = draw(st.sampled_from(["# general", "Priya Shah", "Thread", "design", "#", "-", "12"]))
    shot.text((52 * dp, 40 * dp, 52 * dp + text_width(title, 20 * dp), 60 * dp), title, ink)
    subtitle = draw(st.sampled_from(["", "Active", "12 members", "Away", "a topic", "Alex Kim"]))
    if subtitle:
        box = (52 * dp, 62 * dp, 52 * dp + text_width(subtitle, 14 * dp), 76 * dp)
        shot.text(box, subtitle, ink)
    x0 = draw(st.sampled_from([44, 52, 60, 64])) * dp  # the column
    text_h = draw(st.floats(13, 18)) * dp
    pitch = text_h * draw(st.floats(1.2, 1.6))
    y = draw(st.floats(88, 130)) * dp
    bottom = height - draw(st.floats(56, 90)) * dp  # the input bar's top
    names = draw(st.lists(st.sampled_from(NAMES + ODD_NAMES), min_size=1, max_size=3))
    for _ in range(draw(st.integers(1, 7))):
        what = draw(
            st.sampled_from(["head", "head", "head", "follow", "divider", "chrome", "loose"])
        )
        if what == "divider":  # centred, a line across
            shot.rect((0, y + 10 * dp, width, y + 11 * dp), contrast(ink))
            label = draw(st.sampled_from(["Yesterday", "Today", "Monday, November 30th"]))
            lw = text_width(label, 14 * dp)
            shot.text(((width - lw) / 2, y + 2 * dp, (width + lw) / 2, y + 18 * dp), label, ink)
            y += 28 * dp
            continue
        if what in ("chrome", "loose"):  # right of the column, or anything anywhere
            text = draw(any_text)
            x = x0 + draw(st.floats(-8, 120)) * dp
            shot.text(
                (x, y, x + text_width(text, text_h), y + text_h), text, ink, tag=what == "loose"
            )
            y += pitch * draw(st.floats(0.8, 2))
            continue
        if what == "head":
            top = y
            shot.rect(
                (x0 - 44 * dp, top, x0 - 8 * dp, top + 36 * dp), draw(st.sampled_from(SATURATED))
            )
            name = draw(st.sampled_from(names))
            time = draw(st.sampled_from(TIMES))
            name_h = text_h * draw(st.floats(1.0, 1.3))
            nw = text_width(name, name_h)
            if draw(st.booleans()):  # one piece
                both = f"{name} {time}"
                shot.text((x0, top, x0 + text_width(both, name_h), top + name_h), both, ink)
            else:
                shot.text((x0, top, x0 + nw, top + name_h), name, ink, tag=draw(st.booleans()))
                gap = draw(st.floats(2, 70)) * dp
                if draw(st.integers(0, 3)) == 0:  # a status emoji or a badge read apart
                    junk = draw(st.sampled_from(["*", "APP", "July*", ":", "😀"]))
                    jx = x0 + nw + 4 * dp
                    shot.text((jx, top + 2 * dp, jx + 14 * dp, top + name_h - 2 * dp), junk, ink)
                tx = x0 + nw + gap
                th = name_h * 0.8
                shot.text(
                    (tx, top + 2 * dp, tx + text_width(time, th), top + 2 * dp + th), time, ink
                )
            y = top + name_h + pitch - text_h
        else:
            y += pitch * draw(st.floats(0.3, 1.2))  # a follow-up's wider step
        for _row in range(draw(st.integers(0, 3))):
            text = draw(any_text)
            tw = min(width - x0 - 4 * dp, text_width(text, text_h))
            shot.text((x0, y, x0 + tw, y + text_h), text, ink, tag=draw(st.booleans()))
            y += pitch
        extra = draw(st.sampled_from(["", "", "code", "file", "emoji", "reaction", "summary"]))
        if extra == "code":
            box_h = draw(st.floats(20, 80)) * dp
            shot.rect(
                (x0, y, width - 16 * dp, y + box_h),
                draw(st.sampled_from([(250, 250, 250), (40, 42, 46)])),
            )
            code = draw(st.sampled_from(["npm run build --prod", "def f(): pass", "x = 1"]))
            shot.text(
                (
                    x0 + 12 * dp,
                    y + 6 * dp,
                    x0 + 12 * dp + text_width(code, text_h),
                    y + 6 * dp + text_h,
                ),
                code,
                ink,
                tag=draw(st.booleans()),
            )
            y += box_h + 6 * dp
        elif extra == "file":
            shot.rect(
                (x0, y, width - 40 * dp, y + 56 * dp),
                (250, 250, 250) if sum(paper) > 382 else (40, 42, 46),
            )
            shot.rect(
                (x0 + 10 * dp, y + 10 * dp, x0 + 46 * dp, y + 46 * dp),
                draw(st.sampled_from(SATURATED)),
            )
            shot.text((x0 + 56 * dp, y + 10 * dp, x0 + 180 * dp, y + 26 * dp), "Q3-report.pdf", ink)
            shot.text((x0 + 56 * dp, y + 30 * dp, x0 + 140 * dp, y + 44 * dp), "PDF · 2 MB", ink)
            y += 62 * dp
        elif extra == "emoji":
            size = draw(st.floats(20, 48)) * dp
            yy, xx = np.ogrid[0:height, 0:width]
            r = size / 2
            disc = (xx - x0 - r) ** 2 + (yy - y - r) ** 2 < r * r
            shot.image[disc] = (255, 204, 77)
            y += size + 6 * dp
        elif extra in ("reaction", "summary"):
            label = (
                "滤 2" if extra == "reaction" else draw(st.sampled_from(["3 replies", "1 reply"]))
            )
            shot.rect((x0, y, x0 + 44 * dp, y + 22 * dp), (232, 240, 254))
            shot.text((x0 + 4 * dp, y + 3 * dp, x0 + 40 * dp, y + 19 * dp), label, ink)
            y += 28 * dp
        y += pitch * draw(st.floats(0, 1.5))
        if y > height:
            break
    bar = draw(st.sampled_from(["bar", "bar", "none", "keyboard"]))
    if bar != "none":  # the input bar, which may hide what runs under it
        shot.rect((0, bottom, width, height), (248, 248, 248) if sum(paper) > 382 else (34, 37, 41))
        shot.rect((12 * dp, bottom + 8 * dp, width - 12 * dp, bottom + 44 * dp), paper)
        shot.text((24 * dp, bottom + 16 * dp, 180 * dp, bottom + 36 * dp), "Message #general", ink)
    if bar == "keyboard":
        add_keyboard(shot, ink)
    return shot, draw(st.sampled_from(["left", "right"]))


def add_keyboard(shot: Shot, ink: RGB) -> None:
    """An open keyboard's letter rows and its bottom row, over the bottom."""
    dp, height = shot.dp, shot.height
    top = height - 230 * dp
    shot.rect((0, top, shot.width, height), (210, 213, 219))
    for r, keys in enumerate(["qwertyuiop", "asdfghjkl", "zxcvbnm"]):
        for i, key in enumerate(keys):
            x = (4 + 36 * i + 18 * r) * dp
            shot.text(
                (x, top + (60 + 54 * r) * dp, x + 20 * dp, top + (84 + 54 * r) * dp), key, ink
            )
    shot.text((130 * dp, top + 222 * dp - 16 * dp, 230 * dp, top + 222 * dp), "space", ink)


@st.composite
def bubble_shots(draw: st.DrawFn) -> tuple[Shot, str]:
    """A bubble chat: WhatsApp, WeChat, LINE, Telegram, as ``render_apps.py`` draws them."""
    shot, dp, paper, ink = blank_shot(draw, PAPERS)
    width, height = shot.width, shot.height
    if draw(st.booleans()):
        shot.text((12 * dp, 6 * dp, 48 * dp, 24 * dp), "9:41", ink)
    header = draw(st.sampled_from(["Alice (3)", "周末爬山群(8)", "< 28", "<(16) 王老师", "", "·"]))
    if header:
        shot.text((64 * dp, 44 * dp, 64 * dp + text_width(header, 18 * dp), 62 * dp), header, ink)
    if draw(st.booleans()):
        sub = draw(
            st.sampled_from(["online", "last seen today", "Anna, Ben, Chloe, You", "typing..."])
        )
        shot.text((64 * dp, 64 * dp, 64 * dp + text_width(sub, 12 * dp), 76 * dp), sub, ink)
    text_h = draw(st.floats(13, 18)) * dp
    y = draw(st.floats(60, 120)) * dp
    bottom = height - draw(st.floats(56, 90)) * dp
    for _ in range(draw(st.integers(1, 7))):
        what = draw(
            st.sampled_from(
                ["bubble", "bubble", "bubble", "pill", "voice", "photo", "loose", "typing"]
            )
        )
        side = draw(st.sampled_from(["left", "right"]))
        if what == "pill":
            label = draw(st.sampled_from(["Yesterday", "昨天 21:15", "TODAY", "Alice joined"]))
            lw = text_width(label, 12 * dp)
            pill = ((width - lw) / 2 - 8 * dp, y, (width + lw) / 2 + 8 * dp, y + 24 * dp)
            shot.rect(pill, draw(st.sampled_from(FILLS)))
            shot.text((pill[0] + 8 * dp, y + 6 * dp, pill[2] - 8 * dp, y + 18 * dp), label, ink)
            y += 34 * dp
            continue
        if what == "loose":  # text no fill finds: anything, anywhere
            text = draw(any_text)
            x = draw(st.floats(0, 300)) * dp
            th = text_h * draw(st.floats(0.5, 3))
            shot.text((x, y, x + text_width(text, th), y + th), text, ink, tag=draw(st.booleans()))
            y += th + 8 * dp
            continue
        fill = draw(st.sampled_from(FILLS))
        bw = draw(st.floats(60, 280)) * dp
        x1 = 12 * dp if side == "left" else width - 12 * dp - bw
        x2 = x1 + bw
        top = y
        if what == "typing":  # a typing indicator: three dots in a small bubble
            shot.rect((x1, top, x1 + 56 * dp, top + 36 * dp), fill)
            for i in range(3):
                dx = x1 + (14 + 12 * i) * dp
                shot.rect((dx, top + 15 * dp, dx + 6 * dp, top + 21 * dp), (140, 140, 140))
            y = top + 44 * dp
            continue
        caption = what == "photo" and draw(st.booleans())  # the photo's caption under it
        if what == "photo" and not caption:
            ph = draw(st.floats(80, 240)) * dp
            shot.rect((x1, top, x2, top + ph), fill)
            rng = np.random.default_rng(draw(st.integers(0, 9)))
            a, b = round(top + 4 * dp), min(height, round(top + ph - 4 * dp))
            c, d = round(x1 + 4 * dp), round(x2 - 4 * dp)
            if b > a and d > c:
                shot.image[a:b, c:d] = rng.integers(0, 256, (b - a, d - c, 3), dtype=np.uint8)
            if draw(st.booleans()):
                t = draw(st.sampled_from(BUBBLE_TIMES))
                shot.text(
                    (x2 - 50 * dp, top + ph - 20 * dp, x2 - 8 * dp, top + ph - 8 * dp),
                    t,
                    (255, 255, 255),
                )
            y = top + ph + 8 * dp
            continue
        rows: list[tuple[str, bool]] = []
        if draw(st.integers(0, 3)) == 0:  # a group sender, in the bubble's first row
            rows.append((draw(st.sampled_from(NAMES + ODD_NAMES)), True))
        quote_at = len(rows) if draw(st.integers(0, 4)) == 0 else None
        if what == "voice":
            rows.append(
                (draw(st.sampled_from(["0:40", "·川川小小川·小0:40", '12"', '(LC 20"'])), False)
            )
        else:
            rows += [(draw(any_text), False) for _ in range(draw(st.integers(1, 3)))]
        cy = top + 8 * dp
        bubble_h = (
            16 * dp + len(rows) * (text_h + 6 * dp) + (36 * dp if quote_at is not None else 0)
        )
        shot.rect((x1, top, x2, top + bubble_h), fill)
        if what == "voice":
            for i in range(24):
                h = (6, 18, 30, 12, 24, 36, 10, 20)[i % 8] * dp / 2
                bx = x1 + 40 * dp + 5 * dp * i
                shot.rect(
                    (bx, top + bubble_h / 2 - h / 2, bx + 2 * dp, top + bubble_h / 2 + h / 2),
                    (60, 90, 60),
                )
        for i, (text, is_sender) in enumerate(rows):
            if i == quote_at:  # a quoted message: a tinted box inside the bubble
                tint = tuple(max(0, v - 20) for v in fill)
                shot.rect((x1 + 6 * dp, cy, x2 - 6 * dp, cy + 30 * dp), (tint[0], tint[1], tint[2]))
                shot.text(
                    (
                        x1 + 14 * dp,
                        cy + 8 * dp,
                        x1 + 14 * dp + text_width("You", 12 * dp),
                        cy + 20 * dp,
                    ),
                    "You",
                    (0, 128, 105),
                )
                cy += 36 * dp
            colour = draw(st.sampled_from(SATURATED)) if is_sender else ink
            tw = min(bw - 20 * dp, text_width(text, text_h))
            last = i == len(rows) - 1
            shot.text(
                (x1 + 10 * dp, cy, x1 + 10 * dp + tw, cy + text_h),
                text,
                colour,
                tag=not is_sender and draw(st.booleans()),
                draw=what != "voice",
            )
            if last and draw(st.booleans()):  # the time in the bubble, or beside it
                t = draw(st.sampled_from(BUBBLE_TIMES))
                if draw(st.booleans()):
                    tx = x2 - 10 * dp - text_width(t, 10 * dp)
                else:
                    tx = x2 + 4 * dp if side == "left" else x1 - 4 * dp - text_width(t, 10 * dp)
                shot.text(
                    (tx, cy + text_h - 10 * dp, tx + text_width(t, 10 * dp), cy + text_h), t, ink
                )
            if last and draw(st.integers(0, 5)) == 0:
                r = draw(st.sampled_from(["Read", "既読", "Delivered", "Read 8:47 PM", "Seen"]))
                if draw(st.booleans()):  # beside the bubble (LINE)
                    shot.text((x1 - 40 * dp, cy, x1 - 4 * dp, cy + 10 * dp), r, ink)
                else:  # under it at its edge (iMessage)
                    under = top + bubble_h + 2 * dp
                    shot.text((x2 - 60 * dp, under, x2, under + 12 * dp), r, ink)
            if last and draw(st.integers(0, 5)) == 0:  # a reaction's pill on the bottom edge
                edge = top + bubble_h
                shot.rect((x1 + 8 * dp, edge - 10 * dp, x1 + 40 * dp, edge + 12 * dp), paper)
                shot.rect(
                    (x1 + 12 * dp, edge - 6 * dp, x1 + 24 * dp, edge + 8 * dp), (255, 204, 77)
                )
            cy += text_h + 6 * dp
        y = top + bubble_h + draw(st.floats(2, 20)) * dp
        if y > height:
            break
    bar = draw(st.sampled_from(["bar", "bar", "none", "keyboard"]))
    if bar != "none":
        shot.rect((0, bottom, width, height), (246, 246, 246))
        if draw(st.booleans()):
            shot.rect(
                (12 * dp, bottom + 8 * dp, width - 60 * dp, bottom + 44 * dp), (255, 255, 255)
            )
        draft = draw(st.sampled_from(["Message", "Type a message", "see you at 5", ""]))
        if draft:
            shot.text(
                (24 * dp, bottom + 16 * dp, 24 * dp + text_width(draft, 16 * dp), bottom + 32 * dp),
                draft,
                ink,
            )
    if bar == "keyboard":
        add_keyboard(shot, ink)
    return shot, draw(st.sampled_from(["left", "right"]))


@st.composite
def column_soup(draw: st.DrawFn) -> tuple[Shot, str]:
    """Rows of any of the thread's pieces at one column, at any heights and
    gaps, avatars or none, filled boxes and ink anywhere near it: the
    thread reader's rules meeting each other in orders the apps do not
    draw, but an engine's misreads can give."""
    shot, dp, _, ink = blank_shot(draw, PAPERS)
    width, height = shot.width, shot.height
    x0 = draw(st.sampled_from([36, 44, 52, 64, 100])) * dp
    y = draw(st.floats(20, 200)) * dp
    piece = st.one_of(
        st.sampled_from(NAMES + ODD_NAMES + TIMES + BUBBLE_TIMES + WORDS + ODD_TEXTS),
        st.text(max_size=8),
    )
    for _ in range(draw(st.integers(2, 12))):
        h = draw(st.floats(8, 40)) * dp
        x = x0 + draw(st.sampled_from([0, 0, 0, 1, -3, 8, 40, 120])) * dp
        texts = draw(st.lists(piece, min_size=1, max_size=3))
        if draw(st.integers(0, 3)) == 0:  # an avatar at the row's top
            shot.rect((x0 - 44 * dp, y, x0 - 8 * dp, y + 36 * dp), draw(st.sampled_from(SATURATED)))
        if draw(st.integers(0, 5)) == 0:  # a filled box (a code block, a card, a pill)
            box_h = draw(st.floats(10, 120)) * dp
            fill = draw(st.sampled_from(FILLS + SATURATED))
            shot.rect(
                (x - draw(st.floats(0, 20)) * dp, y - 4 * dp, width - 16 * dp, y + box_h), fill
            )
        if draw(st.integers(0, 6)) == 0:  # ink no line reads (an emoji)
            size = draw(st.floats(10, 60)) * dp
            shot.rect((x0, y + h + 2 * dp, x0 + size, y + h + 2 * dp + size), (255, 204, 77))
        for text in texts:
            w = text_width(text, h)
            shot.text((x, y, x + w, y + h), text, ink, tag=draw(st.booleans()))
            x += w + draw(st.floats(-4, 70)) * dp
        y += h + draw(st.floats(-4, 60)) * dp
        if y > height:
            break
    if draw(st.booleans()):
        bottom = height - draw(st.floats(40, 90)) * dp
        shot.rect((0, bottom, width, height), (248, 248, 248))
    return shot, draw(st.sampled_from(["left", "right"]))


@st.composite
def perturbed(draw: st.DrawFn, shots: st.SearchStrategy[tuple[Shot, str]]) -> tuple[Shot, str]:
    """A shot as a less careful engine reads it: boxes a few pixels off or
    past the image's edge, a line read twice or split in two, a line
    missed, the engine's quads at a scale (``lines_from_ocr``)."""
    shot, side = draw(shots)
    lines: list[Line] = []
    for ln in shot.lines:
        x1, y1, x2, y2 = ln.box
        what = draw(st.sampled_from(["keep"] * 6 + ["shift", "twice", "split", "miss", "grow"]))
        if what == "miss":
            continue
        if what == "shift":
            dx, dy = draw(st.integers(-6, 6)), draw(st.integers(-6, 6))
            lines.append(Line((x1 + dx, y1 + dy, x2 + dx, y2 + dy), ln.text, ln.score))
        elif what == "twice":  # a row read as two overlapping boxes
            lines += [ln, Line((x1 + 2, y1 + 1, x2 - 2, y2 + 1), ln.text, ln.score)]
        elif what == "split" and len(ln.text) >= 2:
            mid, at = (x1 + x2) // 2, len(ln.text) // 2
            lines += [
                Line((x1, y1, mid, y2), ln.text[:at], ln.score),
                Line((mid + 1, y1, x2, y2), ln.text[at:], ln.score),
            ]
        elif what == "grow":  # past the image's edges
            lines.append(Line((x1 - 40, y1 - 8, x2 + 400, y2 + 8), ln.text, ln.score))
        else:
            lines.append(ln)
    scale = draw(st.sampled_from([1.0, 1.0, 0.5, 0.75]))
    raw = [
        [[[x1 * scale, y1 * scale], [x2 * scale, y1 * scale], [x2 * scale, y2 * scale],
          [x1 * scale, y2 * scale]], ln.text, ln.score]
        for ln in lines
        for x1, y1, x2, y2 in [ln.box]
    ]  # fmt: skip
    out = Shot(shot.image, lines_from_ocr(raw, scale))
    # A mark is followed while one line carries it whole (not split, not read twice).
    out.tags = [tag for tag in shot.tags if sum(tag in ln.text for ln in out.lines) == 1]
    return out, side


def texts_of(step: dict[str, Any]) -> list[str]:
    """What each bubble returns: its text, its sender, its quote."""
    out = []
    for bubble in step["bubbles"]:
        quote = bubble.get("quote") or {}
        out.append(
            " ".join(
                str(v)
                for v in (
                    bubble["text"],
                    bubble.get("sender"),
                    quote.get("text"),
                    quote.get("sender"),
                )
                if v
            )
        )
    return out


def check(shot: Shot, user_side: str) -> tuple[dict[str, Any], int]:
    """The invariants every screen must keep; the step and ``dropped_lines``."""
    side: Side = "left" if user_side == "left" else "right"
    image, lines = shot.image, list(shot.lines)
    before = image.copy()
    step, dropped = read(image, lines, side)
    assert np.array_equal(image, before)  # the caller's pixels are not drawn on
    assert lines == shot.lines
    parse_merge_step(json.dumps(step))  # the daemon's validation accepts it (SPEC §3)
    assert isinstance(dropped, int)
    assert not isinstance(dropped, bool)
    assert dropped >= 0
    for bubble in step["bubbles"]:
        x1, y1, x2, y2 = bubble["bbox"]
        if bubble.get("time") is not None:  # a time as shown: it has its digits
            assert re.search(r"\d", bubble["time"]), bubble
        if bubble.get("sender") is not None:  # a name shown: not blank
            assert bubble["sender"].strip(), bubble
        assert all(isinstance(v, int) for v in bubble["bbox"]), bubble
        assert 0 <= x1 < x2 <= shot.width, bubble
        assert 0 <= y1 < y2 <= shot.height, bubble
    # Deterministic: the same input again, the same output (and the input untouched).
    again = read(image.copy(), list(shot.lines), side)
    assert again == (step, dropped)
    # A line is returned or dropped or chrome, never both returned and dropped.
    bubbles = texts_of(step)
    returned = [tag for tag in shot.tags if any(tag in t for t in bubbles)]
    assert dropped <= len(lines) - len(returned), (dropped, len(lines), returned)
    for tag in shot.tags:  # one line in one bubble
        assert sum(tag in t for t in (b["text"] for b in step["bubbles"])) <= 1, tag
    return step, dropped


@FUZZ
@given(thread_shots())
def test_a_slack_like_thread_gives_a_valid_step(drawn: tuple[Shot, str]) -> None:
    check(*drawn)


@FUZZ
@given(bubble_shots())
def test_a_bubble_chat_gives_a_valid_step(drawn: tuple[Shot, str]) -> None:
    check(*drawn)


@FUZZ
@given(column_soup())
def test_any_rows_at_a_column_give_a_valid_step(drawn: tuple[Shot, str]) -> None:
    check(*drawn)


@FUZZ
@given(perturbed(st.one_of(thread_shots(), bubble_shots())))
def test_a_screen_read_carelessly_gives_a_valid_step(drawn: tuple[Shot, str]) -> None:
    check(*drawn)


def test_lines_from_engine_quads_keep_the_invariants() -> None:
    """The engine's own shape (quads, scores) through ``lines_from_ocr``."""
    shot = Shot(np.full((1280, 720, 3), (255, 255, 255), np.uint8))
    raw = [[[[100, 200], [300, 200], [300, 236], [100, 236]], " hi ", 0.9]]
    shot.lines = lines_from_ocr(raw, scale=1.0)
    step, dropped = check(shot, "right")
    assert dropped == 0
    assert [b["text"] for b in step["bubbles"]] == ["hi"]


# ------------------------------------------------------- failures found, minimal --


def line(x1: int, y1: int, x2: int, y2: int, text: str) -> Line:
    return Line(box=(x1, y1, x2, y2), text=text, score=0.95)


def test_a_thread_sender_without_a_letter_does_not_crash() -> None:
    """Two name rows '- 10:42 AM' at one column made a thread; the name '-'
    has no letter, so ``_one_spelling`` had no spelling for it (F1, fixed by
    15a: such a row is no name row, and a name keeps its spelling)."""
    shot = Shot(np.full((720, 360, 3), (255, 255, 255), np.uint8))
    shot.lines = [
        line(44, 127, 57, 140, "-"),
        line(59, 129, 105, 139, "10:42 AM"),
        line(44, 186, 57, 198, "-"),
        line(59, 188, 105, 198, "10:42 AM"),
        line(44, 200, 120, 213, "hi"),
    ]
    check(shot, "right")
