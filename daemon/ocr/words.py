"""What a line of text is, from its text alone; no pixels, no I/O.

Used by ``daemon/ocr/layout.py`` (inside the OCR worker) to tell a message
from what the apps draw around it: the time in a bubble and its read ticks,
a voice note's duration, an unread badge, avatar initials, a header's
subtitle, a group's member count, the keys of a keyboard. Every rule here
says why with an example of the text it meets in a screenshot.
"""

from __future__ import annotations

import re
from typing import Final

# A time as the apps print it, in the phone's locale: "20:44", "20.50" (a
# colon read as a dot), "9:41 AM", "1:09 p. m." (Spanish, a space inside),
# "下午3:45" / "午後3:45" / "오후 3:45" (the half of the day before the
# time). A Latin "AM" before the time is not taken: "I am 3:45" would lose
# its words. The end of a bubble's last row is this time, then the ticks
# PP-OCR reads as "W", "V", "v/", "<", "√" or dots.
_HALF_DAY: Final = r"(?:上午|下午|中午|晚上|凌晨|早上|午前|午後|오전|오후)"
_MERIDIEM: Final = r"[AaPp]\.?\s?[Mm]\.?"
_TIME: Final = rf"(?P<time>(?:{_HALF_DAY}\s?)?(?:[01]?\d|2[0-3])[:.][0-5]\d(?:\s?{_MERIDIEM})?)"
_TICKS: Final = r"(?P<ticks>[\s/\\WwVvYy√✓✔<>.·•,'\"`~^-]{0,4})"
# An edit's label before the time ("Edited 20:21" on WhatsApp, "edited" on
# Telegram): part of the time's print, not of the text.
_EDITED: Final = r"(?:\(?(?:[Ee]dited|已编辑|已編輯|編集済み)\)?\s*)?"
# A tick right after the time, no space between, may be read as "1" ("20:211").
_GLUED: Final = r"(?:[1lI|](?!\d))?"
TRAILING_TIME: Final = re.compile(rf"^(?P<text>.*?)\s*{_EDITED}{_TIME}{_GLUED}{_TICKS}$", re.S)
ONLY_TIME: Final = re.compile(rf"^\s*{_EDITED}{_TIME}{_GLUED}{_TICKS}$")
# Slack's "(edited)" after a message's last row, in the time's print.
EDITED_AFTER: Final = re.compile(r"\s*\((?:edited|已编辑|已編輯|編集済み)\)$", re.I)
# WhatsApp's label over a forwarded message's text, its arrow read as "~" or "^".
FORWARDED: Final = re.compile(r"^\W{0,3}\s*(forwarded|转发的消息|已转发)$", re.I)
# A time anywhere: a timestamp line or a date pill with a time is not a name.
HAS_TIME: Final = re.compile(r"\d{1,2}[:.]\d{2}")
# An unread badge: "12", "(3)", "99+".
BADGE: Final = re.compile(r"^[(（]?\d{1,4}\+?[)）]?$")
# A title's member count or unread count: "周末爬山群(8)", "Alice (3)".
COUNT_SUFFIX: Final = re.compile(r"\s*[(（](?P<n>\d{1,4})[)）]\s*$")
# A header's subtitle, not a name (PP-OCR may drop its spaces: "lastseenrecently").
SUBTITLE: Final = re.compile(
    r"^(online|offline|typing\b.*|.*\btyping\.*$|last\s*seen.*|active\b.*|active\s*now.*|"
    r"\d+\s*(members|participants|subscribers|online)\b.*|"
    r"在线|正在输入.*|对方正在输入.*|最后上线.*|\d+\s*(位)?成员.*|tap\s*here.*|click\s*here.*"
    r"|pinned\s*message.*|置顶消息.*)$",
    re.I,
)
# A date pill or divider above the messages ("Yesterday", "Monday, November
# 30th", "昨天"): it may be taller than the header's name, but is no name.
# Month names written out: "Maybe 10" or "Mark 12" is a name, not a date.
DATE: Final = re.compile(
    r"^(today|yesterday|(mon|tues|wednes|thurs|fri|satur|sun)day(,?\s+\w+\s+\d{1,2}(st|nd|rd|th)?)?"
    r"|(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sept?(ember)?"
    r"|oct(ober)?|nov(ember)?|dec(ember)?)\.?\s+\d{1,2}(st|nd|rd|th)?(,?\s*\d{4})?"
    r"|今天|昨天|前天|星期[一二三四五六日天]|周[一二三四五六日]|\d{1,2}月\d{1,2}日)$",
    re.I,
)
# A link in a message: its host ("https://www.bbc.co.uk/news" → "bbc.co.uk").
LINK: Final = re.compile(r"(?:https?://|www\.)(?:www\.)?(?P<host>[\w-]+(?:\.[\w-]+)+)", re.I)
# A row that is only a domain, as a link preview's card ends ("maps.app.goo.gl").
DOMAIN: Final = re.compile(r"^(?:www\.)?(?P<host>[\w-]+(?:\.[\w-]+)*\.[a-z]{2,})$", re.I)
# A link cut at a row's end: the next row goes on without a space.
_LINK_END: Final = re.compile(r"(?:https?://|www\.)\S*$", re.I)
_CJK: Final = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def split_time(text: str) -> tuple[str, str | None]:
    """``"Saturday? 10:22 W"`` → ``("Saturday?", "10:22")``; no time at the
    end → the text as it was and None."""
    match = TRAILING_TIME.match(text)
    if match is None:
        return text, None
    return match.group("text").rstrip(), clean_time(match.group("time"))


def without_edited(text: str, before_time: bool = False) -> str:
    """``"Thanks! (edited)"`` → ``"Thanks!"``: the label, not the text; with
    ``before_time`` (the time that followed it was split off, a piece of its
    own) also a bare "Edited"."""
    text = EDITED_AFTER.sub("", text)
    return _EDITED_END.sub("", text) if before_time else text


_EDITED_END: Final = re.compile(r"\s*\b(?:edited|已编辑|已編輯|編集済み)$", re.I)


def is_receipt(text: str) -> bool:
    """A read receipt beside a bubble: LINE's "Read" ("Read 3" in a group), 既読, 已读."""
    return RECEIPT.match(text.strip()) is not None


RECEIPT: Final = re.compile(
    rf"^(read|seen|delivered|既読|已读|已讀)(\s*\d{{1,3}})?(\s*{_TIME})?$", re.I
)  # "Read 3", "Read 8:47 PM"


def is_forwarded(text: str) -> bool:
    return FORWARDED.match(text.strip()) is not None


def clean_time(text: str) -> str:
    """As the app shows it: a colon read as a dot is a colon again, and
    "9:31AM" (PP-OCR drops the narrow space) "9:31 AM"."""
    text = re.sub(r"(\d)\.(\d)", r"\1:\2", text.strip())
    return re.sub(rf"(\d)\s*({_MERIDIEM})$", r"\1 \2", text)


def is_time(text: str) -> bool:
    return ONLY_TIME.match(text) is not None


def is_badge(text: str) -> bool:
    return BADGE.match(text.strip()) is not None


def is_initials(text: str) -> bool:
    """Avatar initials: "LM", "S", or one CJK character ("伟")."""
    text = text.strip()
    if len(text) == 1 and _CJK.match(text):
        return True
    return 1 <= len(text) <= 2 and text.isascii() and text.isalpha() and text.isupper()


def is_subtitle(text: str) -> bool:
    return SUBTITLE.match(text.strip()) is not None


def lists_members(text: str) -> bool:
    """A group's subtitle: "Anna, Ben, Chloe, You" or "刘洋, 赵敏, 你"."""
    return text.count(",") + text.count("，") + text.count("、") >= 2


def has_duration(text: str) -> bool:
    """A voice note's duration somewhere in what PP-OCR read of its bubble
    ("0:40", WeChat's 12"), whatever it made of the icon around it, and no
    typed word beside it ("See you at 10:30" is a message); the icon itself
    is told by its pixels (``pixels.voice_icon``)."""
    words = _WORD.findall(DURATION.sub(" ", text))
    typed = [w for w in words if set(w) - _BARS]  # a waveform's bars read as "Illl" type nothing
    return DURATION.search(text) is not None and not typed


_WORD: Final = re.compile(r"[A-Za-z]{3,}")
_BARS: Final = frozenset("lIij")


# "0:40", "1:05" (a colon read as a dot too), WeChat's 19" (quotes as PP-OCR reads them).
DURATION: Final = re.compile(r"(?<![\d:.])(?:\d{1,2}[:.]\d{2}(?!\d)|\d{1,2}\s*[\"”″']{1,2})")


def is_key(text: str) -> bool:
    """A letter key as PP-OCR reads it: one character."""
    return len(text.replace(" ", "")) == 1


KEY_LABELS: Final = frozenset(
    [
        "space",
        "return",
        "send",
        "go",
        "search",
        "done",
        "english",
        "?123",
        "123",
        "abc",
        "空格",
        "发送",
        "换行",
        "确定",
        "中文",
        "中",
        "英",
    ]
)


def is_key_label(text: str) -> bool:
    """A key of a keyboard's bottom row."""
    return text.strip().lower() in KEY_LABELS


def header_text(text: str) -> str:
    """A header line without the back button's chevron and the unread count
    PP-OCR reads with it ("< 28", "<(16) 王老师")."""
    text = re.sub(r"^\s*[<\u2039\u3008«]\s*", "", text)
    return re.sub(r"^[(（]?\d{1,4}\+?[)）]?\s+(?=\S)", "", text).strip()


def name_of(text: str) -> tuple[str, bool]:
    """A title without its count, and whether the count was there
    ("周末爬山群(8)" → "周末爬山群", True); a chevron after iMessage's name goes."""
    text = re.sub(r"\s*[>\u203a»\u3009]\s*$", "", text.strip())
    match = COUNT_SUFFIX.search(text)
    if match is None:
        return text, False
    return text[: match.start()].strip(), True


def join(parts: list[str]) -> str:
    """Pieces of text in reading order: a space between two Latin pieces,
    none next to CJK ("好的" + "谢谢" → "好的谢谢")."""
    text = ""
    for part in parts:
        if not part:
            continue
        if text and _latin(text[-1]) and _latin(part[0]):
            text += " "
        text += part
    return text


def _latin(char: str) -> bool:
    return char.isascii() and not char.isspace()


def is_date(text: str) -> bool:
    return DATE.match(text.strip()) is not None


def link_host(text: str) -> str | None:
    """The host of the first link in ``text``, lower case, without "www."."""
    match = LINK.search(text)
    return None if match is None else match["host"].lower()


def same_site(text: str, host: str) -> bool:
    """``text`` is only a domain, the link's host or one it belongs to
    ("bbc.co.uk" for "www.bbc.co.uk", "maps.app.goo.gl" for itself)."""
    match = DOMAIN.match(text.strip())
    if match is None:
        return False
    domain = match["host"].lower()
    return domain == host or host.endswith("." + domain) or domain.endswith("." + host)


def join_rows(rows: list[str]) -> str:
    """A bubble's rows as one text (``join``), except that a link the row's
    end cut ("https://maps.app.goo.gl/" over "x7Yq2") goes on without a space."""
    text = ""
    for row in rows:
        if text and row and _LINK_END.search(text):
            text += row
        else:
            text = join([text, row])
    return text


# Messenger's label over a reply's quote: "< Emma replied to you", "You replied
# to Lucas" (PP-OCR: "Youreplied to陈晨"), "You replied to yourself".
REPLIED: Final = re.compile(
    r"^[<\u2039\u3008«\s]*(?P<who>.+?)\s*replied\s*to\s*(?P<whom>.+?)\s*$", re.I
)


def replied_to(text: str) -> str | None:
    """The quoted message's sender named by a reply's label ("You" for "you"
    and "yourself"), or None when ``text`` is no such label."""
    match = REPLIED.match(text.strip())
    if match is None:
        return None
    whom = match["whom"]
    return "You" if whom.lower() in ("you", "yourself") else whom


# Someone typing, said in words under the messages ("Anna is typing...",
# "Several people are typing", "对方正在输入..."): nothing sent yet.
TYPING: Final = re.compile(
    r"^.{0,40}?\b(is|are)\s*typing\W*$|^typing\W*$|^(对方)?正在输入.*$", re.I
)


def is_typing(text: str) -> bool:
    return TYPING.match(text.strip()) is not None


def _width(char: str) -> float:
    """A glyph's rough width in a sans-serif face (em)."""
    if char in "iljtfrI1.,:;'!|":
        return 0.3
    if char in "mwMW":
        return 0.85
    return 0.65 if char.isupper() else 0.55


def spaced_name(name: str, gaps: list[float]) -> str:
    """A Latin name with the spaces PP-OCR dropped ("EmmaWilson", "Bookclub")
    put back at the gaps between words its pixels show (``gaps``: shares of
    the inked width): each gap goes to the boundary between two letters
    nearest to it by the glyphs' rough widths, a lower-case letter before a
    capital within a glyph of it first; a name with any other character,
    or a space already there, is left as read."""
    if not gaps or not name.isascii() or not name.isalpha() or len(name) < 4:
        return name
    widths = [_width(ch) for ch in name]
    total = sum(widths) - (widths[0] + widths[-1]) / 2
    edges = [(sum(widths[:i]) - widths[0] / 2) / total for i in range(1, len(name))]
    inserts: set[int] = set()
    for gap in gaps:
        order = sorted(range(1, len(name)), key=lambda i: abs(edges[i - 1] - gap))
        camel = [i for i in order if name[i - 1].islower() and name[i].isupper()]
        glyph = max(widths) / total
        best = camel[0] if camel and abs(edges[camel[0] - 1] - gap) <= glyph else order[0]
        if 1 < best < len(name) - 1:  # a word of one letter is no word here
            inserts.add(best)
    for i in sorted(inserts, reverse=True):
        name = name[:i] + " " + name[i:]
    return name
