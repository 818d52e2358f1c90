"""Who is who in a thread without bubbles (Slack-like); no I/O.

Part of ``daemon/ocr/thread.py``: the header's title (a channel, "# name"
or "N members", or a person), whether the screen is a direct message
(the header's person writes in it, or their presence is under the name),
and so which sender is the signed-in user; a sender spelt the best way
the screenshot spells it (PP-OCR drops spaces).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from daemon.ocr import words

if TYPE_CHECKING:
    from daemon.ocr.bubble import Line

# A person's presence under their name in a direct message's header.
PRESENCE: Final = re.compile(
    r"^(active|away|online|offline|idle|busy|do not disturb|in a (meeting|call)"
    r"|active \d.*|last seen\b.*|在线|离开|忙碌|离线|活跃)$",
    re.I,
)
MEMBERS: Final = re.compile(r"^\d+\s*(members|位成员|成员)$", re.I)


def assign(out: list[dict[str, Any]], header: list[Line]) -> tuple[dict[str, str | None], bool]:
    """Each message's ``speaker`` and ``side``, its ``sender`` spelt as the
    screenshot spells it best, and the participants, and whether it is a
    group. A direct message shows it: the header's person writes in it, or
    their presence is under the name; then every other sender is the
    signed-in user. A private channel has neither (a lock PP-OCR drops
    instead of "#", a topic instead of "N members")."""
    title, group = _title(header)
    _one_spelling(out, title)
    direct = (
        not group
        and title is not None
        and (
            any(PRESENCE.match(ln.text.strip()) for ln in header)
            or any(same_person(item["sender"], title) for item in out)
        )
    )
    group = group or (title is not None and not direct)
    user = None
    for item in out:
        mine = direct and not same_person(item["sender"], title)
        item["speaker"], item["side"] = ("user", "right") if mine else ("talker", "left")
        user = item["sender"] if mine else user
    if not group:
        participants: dict[str, str | None] = {"user": user, "talker": title}
    else:
        participants = {"user": None, "talker": None, "group": title}
    return participants, bool(group)


def _one_spelling(items: list[dict[str, Any]], title: str | None) -> None:
    """A sender's name as the screenshot spells it best: PP-OCR drops the
    space in one row ("AlexKim") and not in another, or in the header."""
    names = [str(item["sender"]) for item in items if item["sender"]] + [title or ""]
    best: dict[str, str] = {}
    for name in names:
        key = re.sub(r"[\W_]", "", name).casefold()
        if key and (key not in best or name.count(" ") > best[key].count(" ")):
            best[key] = name
    for item in items:
        if item["sender"]:  # (a sender with no letter or digit has no other spelling)
            key = re.sub(r"[\W_]", "", item["sender"]).casefold()
            item["sender"] = best.get(key, item["sender"])


def same_person(sender: str | None, title: str | None) -> bool:
    """The name on a message is the header's person: PP-OCR drops spaces
    ("TomBaker") and case, a header may add to the name ("Priya Shah
    (she/her)"), so compared without spaces, punctuation and case, one a
    prefix of the other where the longer one's word ends (what follows the
    prefix in it is a space or punctuation): "Sam" is not "Samantha"."""
    a, b = (re.sub(r"[\W_]", "", t or "").casefold() for t in (sender, title))
    if not a or not b:
        return False
    if a == b:
        return True
    (short, _), (long, spelt) = sorted(
        ((a, sender or ""), (b, title or "")), key=lambda p: len(p[0])
    )
    if not long.startswith(short) or len(short) < min(3, len(long)):
        return False
    seen = 0  # the letters of ``short`` in the longer name as written; then a word's end?
    for i, ch in enumerate(spelt):
        if re.match(r"[\W_]", ch) is None:
            seen += 1
            if seen == len(short):
                rest = spelt[i + 1 : i + 2]
                return not rest or re.match(r"[\W_]", rest) is not None
    return False


def _title(header: list[Line]) -> tuple[str | None, bool]:
    """The header's name and whether it is a channel: "# general", a thread
    view's channel under "Thread", or a title over "N members"."""
    texts = [ln.text.strip() for ln in sorted(header, key=lambda ln: ln.cy)]
    channel = [t for t in texts if t.startswith("#")]
    if channel:
        return channel[0].lstrip("#").strip(), True
    members = any(MEMBERS.match(t) for t in texts)
    names = [
        ln
        for ln in header
        if any(ch.isalnum() for ch in ln.text)
        and not words.is_subtitle(ln.text)
        and not words.is_date(ln.text)
        and not words.HAS_TIME.search(ln.text)
        and not MEMBERS.match(ln.text.strip())
        and not words.is_badge(ln.text)
    ]
    if not names:
        return None, members
    best = max(names, key=lambda ln: (ln.height, -ln.cy))
    return words.header_text(best.text), members
