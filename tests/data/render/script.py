"""A bubble chat's items before drawing: messages (kind, sender, quote,
time, the variations) and notes (date pills, stamps, system lines)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .apps import App
from .texts import EMOJI_ONLY, EMOJI_TEXT, EN, MEMBERS_EN, MEMBERS_ZH, VARIETY_EN, VARIETY_ZH, ZH


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


@dataclass
class Note:
    kind: str  # "date" | "system" | "stamp"
    text: str


def script(
    app: App, rng: random.Random, group: bool, zh: bool, n: int, variety: int = 0
) -> list[Msg | Note]:
    """The items of a chat; ``variety`` 0 draws what the committed seeds 0
    and 4 draw, 1 adds the first round of what real apps vary (seed 11), 2
    all of it."""
    pool = ZH if zh else EN
    if variety:
        pool = pool + (VARIETY_ZH if zh else VARIETY_EN)
    twelve = variety and app.os == "ios" and rng.random() < 0.5  # "10:22 AM"
    members = MEMBERS_ZH if zh else MEMBERS_EN
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
    for i in range(n):
        side = rng.choice(["left", "right"])
        r = rng.random()
        m = Msg(side=side, text="")
        if r < 0.08 and app.name != "messenger":
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
        if (
            m.kind == "text"
            and not m.emoji_only
            and previous
            and rng.random() < 0.15
            and app.name in ("whatsapp", "telegram", "line", "messenger")
        ):
            m.quote = (rng.choice(members) if group else "You", previous)
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
