"""A bubble chat's items before drawing: messages (kind, sender, quote,
time, the variations) and notes (date pills, stamps, system lines)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .apps import App
from .texts import (
    EMOJI_ONLY,
    EMOJI_TEXT,
    EN,
    LINK_WORDS_EN,
    LINK_WORDS_ZH,
    LINKS,
    MEMBERS_EN,
    MEMBERS_ZH,
    STICKERS,
    VARIETY_EN,
    VARIETY_ZH,
    ZH,
)


@dataclass
class Msg:
    side: str
    text: str
    kind: str = "text"
    sender: str | None = None
    quote: tuple[str, str] | None = None
    time: str | None = None
    emoji_only: bool = False
    edited: bool = False  # "edited" / "Edited" before the time
    forwarded: bool = False  # WhatsApp's "Forwarded" over the text
    caption: str = ""  # a WhatsApp photo's caption (the bubble's text)
    reaction: str = ""  # an emoji on a pill over the bubble's bottom edge
    receipt: str = ""  # iMessage's "Delivered" / "Read 9:41 AM" under the bubble
    link: tuple[str, str, str] | None = None  # a preview card: title, site, domain


@dataclass
class Round4:
    """What round 4 varies in a bubble chat (seeds of ``variety`` 4)."""

    talker: str | None  # the 1:1 talker's name as the header shows it
    members: list[str]  # a group's senders
    mine_only: bool = False  # only the user's messages (a group the user posts in)
    media_only: bool = False  # photos and stickers only, no text bubble
    links: float = 0.0  # the chance that a text carries a link and its preview
    quotes: float = 0.15  # the chance that a text quotes the message before it


@dataclass
class Note:
    kind: str  # "date" | "system" | "stamp"
    text: str


def script(
    app: App,
    rng: random.Random,
    group: bool,
    zh: bool,
    n: int,
    variety: int = 0,
    r4: Round4 | None = None,
) -> list[Msg | Note]:
    """The items of a chat; ``variety`` 0 draws what the committed seeds 0
    and 4 draw, 1 adds the first round of what real apps vary (seed 11), 2
    and 3 more of it; ``r4`` round 4. A quote names who wrote the quoted
    message: "You" for the user's, the sender for a group member's, the
    talker's name in a 1:1 (before round 4 every 1:1 quote said "You")."""
    pool = ZH if zh else EN
    if variety:
        pool = pool + (VARIETY_ZH if zh else VARIETY_EN)
    twelve = variety and app.os == "ios" and rng.random() < 0.5  # "10:22 AM"
    members = MEMBERS_ZH if zh else MEMBERS_EN
    if r4:
        members = r4.members
    items: list[Msg | Note] = []
    hour, minute = rng.randrange(8, 22), rng.randrange(0, 50)
    if app.name == "whatsapp" and rng.random() < 0.4:
        items.append(
            Note(
                "system",
                "Messages and calls are end-to-end encrypted. No one "
                "outside of this chat can read or listen to them.",
            )
        )
    if app.name in ("whatsapp", "telegram", "line"):
        items.append(Note("date", rng.choice(["Today", "Yesterday", "今天", "Monday"])))
    elif app.name in ("wechat", "imessage", "messenger"):
        items.append(
            Note(
                "stamp",
                rng.choice(
                    ["昨天 21:15", "Today 9:41 AM", "下午 3:12", "Mon 14:05", "Yesterday 9:02 PM"]
                ),
            )
        )
    if group and rng.random() < 0.6:
        who = rng.choice(members)
        items.append(Note("system", f"{who} 加入了群聊" if zh else f"{who} joined"))
    previous = ""
    previous_side, previous_sender = "", ""  # who wrote ``previous``
    for i in range(n):
        side = rng.choice(["left", "right"])
        if r4 and r4.mine_only:
            side = "right"
        r = rng.random()
        m = Msg(side=side, text="")
        if r4 and r4.media_only:  # iMessage: photos and stickers, no text bubble
            m.kind = "photo" if r < 0.6 else "sticker"
            m.text = rng.choice(STICKERS) if m.kind == "sticker" else ""  # drawn, not text
        elif r < 0.08 and app.name != "messenger":
            m.kind = "photo"
        elif r < 0.15 and app.name in ("whatsapp", "telegram", "wechat", "line"):
            m.kind = "voice"
        elif r < 0.2:
            m.text = rng.choice(EMOJI_ONLY)
            m.emoji_only = True
        elif r < 0.3:
            m.text = rng.choice(EMOJI_TEXT)
        else:
            m.text = rng.choice(pool)
        textual = m.kind == "text" and not m.emoji_only
        if r4 and textual and app.name in ("whatsapp", "telegram") and rng.random() < r4.links:
            url, title, site, domain = rng.choice(LINKS)
            words = rng.choice(LINK_WORDS_ZH if zh else LINK_WORDS_EN)
            m.text = f"{words} {url}" if words else url
            m.link = (title, site, domain)
        if (
            textual
            and not m.link
            and previous
            and rng.random() < (r4.quotes if r4 else 0.15)
            and app.name in ("whatsapp", "telegram", "line", "messenger")
        ):
            if not r4:
                m.quote = (rng.choice(members) if group else "You", previous)
            elif app.name != "messenger" or previous_side != side:
                # who wrote it; Messenger names them by the first name, in
                # "You replied to Emma" over the quote (no reply to oneself)
                wrote = previous_sender if group else r4.talker
                if app.name == "messenger" and wrote:
                    wrote = wrote.split()[0]
                m.quote = ("You" if previous_side == "right" else wrote or "You", previous)
        if group and side == "left":
            m.sender = rng.choice(members)
        minute += rng.randrange(0, 4)
        m.time = f"{hour}:{minute % 60:02d}"
        if twelve:
            m.time = f"{(hour - 1) % 12 + 1}:{minute % 60:02d} {'AM' if hour < 12 else 'PM'}"
        if variety and m.kind == "text" and app.name in ("whatsapp", "telegram"):
            m.edited = rng.random() < 0.12
            m.forwarded = app.name == "whatsapp" and not m.quote and rng.random() < 0.1
        more = variety >= 2
        if more and m.kind == "photo" and app.name == "whatsapp" and rng.random() < 0.5:
            m.caption = rng.choice(pool)
        if more and app.name in ("whatsapp", "messenger") and rng.random() < 0.12:
            m.reaction = rng.choice(["❤️", "👍", "😂", "🙏"])
        if more and app.name == "imessage" and side == "right" and rng.random() < 0.2:
            m.receipt = rng.choice(["Delivered", f"Read {m.time}"])
        if m.kind == "text":
            previous = m.text
            previous_side, previous_sender = m.side, m.sender or ""
        items.append(m)
        if more and i == n // 3 and app.name in ("whatsapp", "telegram"):
            k = rng.randrange(2, 9)
            unread = f"{k} unread messages" if app.name == "whatsapp" else "Unread Messages"
            items.append(Note("unread", unread))
        if i == n // 2 and rng.random() < 0.3 and app.name in ("wechat", "imessage"):
            items.append(Note("stamp", f"{hour + 1}:{rng.randrange(10, 59)}"))
        if variety >= 3 and i == n // 4 and app.name == "wechat" and rng.random() < 0.6:
            who = rng.choice(members)
            if zh:
                recalled = f"{who} 撤回了一条消息" if group else "对方撤回了一条消息"
            else:
                recalled = f'"{who}" recalled a message' if group else "You recalled a message"
            items.append(Note("system", recalled))
    return items


def voice_duration(rng: random.Random) -> str:
    return f"0:{rng.randrange(3, 59):02d}"
