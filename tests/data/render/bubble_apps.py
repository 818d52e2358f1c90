"""One screenshot of a bubble app: the chat drawn first, then the bars,
keyboard, input and header over it; the truth of what is in view."""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from .apps import APPS, App
from .canvas import Canvas, mix, quote_text
from .chat import Chat
from .extras import TYPING_APPS
from .frame import header, input_bar, keyboard, nav_bar, status_bar, wallpaper
from .script import Note, Round4, script
from .texts import (
    EN,
    GROUPS,
    MEMBERS_EN,
    MEMBERS_ZH,
    NAMES_EN,
    NAMES_ZH,
    ONE_CHAR_NAMES,
    PREFIX_NAMES_EN,
    PREFIX_NAMES_ZH,
    SUBTITLES,
    ZH,
    variety_of,
)


def round4(
    app: App,
    opts: dict[str, Any],
    group: bool,
    zh: bool,
    title: str,
    subtitle: str | None,
    r4: random.Random,
    variety: int = 4,
) -> tuple[str, str | None, Round4, bool]:
    """Round 4's draws for one shot, from an rng of its own (``opts`` may
    ask for one: ``one_char``, ``prefix``, ``mine_only``, ``media_only``,
    ``links``, ``quotes``, ``typing``): the title, the subtitle, the
    script's ``Round4`` and whether the talker is typing (round 5,
    ``variety`` 5: Telegram says so in its header, with no dots)."""
    members = list(MEMBERS_ZH if zh else MEMBERS_EN)
    if app.name in ("wechat", "line") and (opts.get("one_char") or r4.random() < 0.3):
        name = r4.choice(ONE_CHAR_NAMES)  # 妈, 爸, K: a talker or a group's sender
        if group:
            members[r4.randrange(len(members))] = name
            if opts.get("one_char"):  # asked for: every other message theirs
                members = [name, members[0] if members[0] != name else members[1]]
        else:
            title = name
    if group and (opts.get("prefix") or r4.random() < 0.25):  # Sam and Samantha
        members[:2] = PREFIX_NAMES_ZH if zh else PREFIX_NAMES_EN
        if opts.get("prefix"):  # asked for: only the two of them write
            members = members[:2]
    if group and subtitle:
        subtitle = ", ".join([*members[:3], "你" if zh else "You"])
    mine_only = group and app.name in ("wechat", "whatsapp")
    mine_only = mine_only and bool(opts.get("mine_only") or r4.random() < 0.15)
    media_only = app.name == "imessage" and bool(opts.get("media_only") or r4.random() < 0.2)
    dots = TYPING_APPS if variety < 5 else tuple(a for a in TYPING_APPS if a != "telegram")
    typing = app.name in dots and bool(opts.get("typing") or r4.random() < 0.35)
    if app.name == "telegram" and variety >= 5 and (opts.get("typing") or r4.random() < 0.35):
        # round 5: Telegram draws no dots in the chat; its header says it
        subtitle = f"{members[0]} is typing…" if group else "typing…"
    plan = Round4(
        talker=None if group else title,
        members=members,
        mine_only=mine_only,
        media_only=media_only,
        links=0.4 if opts.get("links") else 0.12,
        quotes=0.45 if opts.get("quotes") else 0.15,
    )
    return title, subtitle, plan, typing


def render(
    index: int, key: str, width: int, height: int, opts: dict[str, Any], seed: int = 0
) -> tuple[Image.Image, dict[str, Any]]:
    app = APPS[key]
    rng = random.Random(index * 7919 + width + seed * 1_000_003)
    c = Canvas(width, height, app.bg)
    wallpaper(c, app, rng)
    group = bool(opts.get("group"))
    zh = bool(opts.get("zh"))
    if group:
        title = rng.choice([g for g in GROUPS if (not g.isascii()) == zh] or GROUPS)
    else:
        title = rng.choice(NAMES_ZH if zh else NAMES_EN)
    shown_title = title
    if group and app.name == "wechat":
        shown_title = f"{title}({rng.randrange(4, 40)})"
    subtitle = None
    if app.header == "left":
        if group:
            subtitle = "Anna, Ben, Chloe, You" if not zh else "刘洋, 赵敏, 孙浩, 你"
        elif app.name == "messenger":
            subtitle = "Active now"
        else:
            subtitle = rng.choice(SUBTITLES)
        if rng.random() < 0.25 and not group:
            subtitle = None
    badge = str(rng.randrange(1, 99)) if rng.random() < 0.6 else None
    if badge and app.name == "wechat":
        badge = f"({badge})"
    variety = variety_of(seed)
    r4: Round4 | None = None
    typing4 = False
    if variety >= 4:
        r4rng = random.Random(f"{seed}-{index}-{width}-round4")
        title, subtitle, r4, typing4 = round4(app, opts, group, zh, title, subtitle, r4rng, variety)
        shown_title = shown_title if group else title
    chrome: list[str] = []
    # layout of the frame, bottom first
    bottom = c.h_dp
    nav_bg = (
        app.input_bg
        if not opts.get("keyboard")
        else ((43, 43, 45) if app.theme == "dark" else (209, 212, 217))
    )
    bottom = c.h_dp - (24.0 if app.os == "ios" else 40.0)
    kb_top = bottom
    if opts.get("keyboard"):
        kb_top = bottom - 260.0
    draft = opts.get("draft")
    # the chat area: drawn first (the bars are drawn over it)
    status_h = 44.0 if app.os == "ios" else 24.0
    head_h = 96.0 if app.header == "avatar" else 56.0
    chat_top = status_h + head_h
    input_top = kb_top - 52
    chat = Chat(c, app, rng, group)
    items = script(app, rng, group, zh, 24, variety, r4)
    pinned = typing = ""
    if variety >= 3:  # an rng of its own: the items above stay what they were
        r3 = random.Random(f"{seed}-{index}-{width}-round3")
        if app.name == "telegram" and r3.random() < 0.5:
            pinned = quote_text(c, r3.choice(ZH if zh else EN), 290)
            chat_top += 44
        if app.name in ("whatsapp", "telegram", "imessage", "messenger") and r3.random() < 0.4:
            typing = "typing"
    if r4:  # round 4: typing dots in more apps, each drawn as its app does
        typing = "typing" if typing4 else ""
        chat.v4, chat.talker = True, r4.talker
    y = chat_top + 6 - float(opts.get("scroll", 0))
    layer_items: list[tuple[int, float, float]] = []
    for item in items:
        if isinstance(item, Note):
            if y > input_top - 40:
                break
            y0 = y
            y = chat.note(item, y)
            if y0 < chat_top or y > input_top:
                pass
            continue
        # typing: last, whole, no message (round 4 leaves it more room)
        if typing and input_top - (170 if r4 else 110) < y < input_top - 46:
            chat.typing(y)
            break
        n_before = len(chat.bubbles)
        y_end = chat.message(item, y)
        layer_items.append((n_before, y, y_end))
        y = y_end
        if y > input_top + 30:
            break
    # frame over the chat
    nav_bar(c, app, nav_bg)
    if opts.get("keyboard"):
        kb_top, more = keyboard(c, app, bottom, rng)
        chrome += more
    c.rect((0, kb_top - 0.01, 360, kb_top), app.input_bg)
    itop, more = input_bar(c, app, kb_top, draft)
    chrome += more
    sb_bg = app.header_bg
    hb_top = status_h
    _, more = status_bar(c, app, app.header_fg, sb_bg, rng)
    chrome += more
    header_bottom, more = header(c, app, hb_top, shown_title, subtitle, badge, group, rng)
    chrome += more
    if pinned:  # Telegram: the pinned message's bar under the header
        hb = header_bottom
        c.rect((0, hb, 360, hb + 44), app.header_bg)
        c.rect((12, hb + 7, 14.5, hb + 37), app.accent, 1)
        c.text(22, hb + 5, "Pinned Message", 12.5, app.accent, bold=True)
        c.text(22, hb + 23, pinned, 13, app.header_fg)
        c.rect((0, hb + 43.5, 360, hb + 44), mix(app.header_bg, (128, 128, 128), 0.3))
        chrome += ["Pinned Message", pinned]
        header_bottom = hb + 44
    chrome += chat.chrome
    bubbles, partial = [], []
    for truth, box in zip(chat.bubbles, chat.boxes, strict=True):
        px_box = c.box(box)
        if box[1] < header_bottom or box[3] > itop:
            if box[3] > header_bottom and box[1] < itop:
                partial.append(px_box)
            continue
        truth = {
            "speaker": truth["speaker"],
            "side": truth["side"],
            "bbox": px_box,
            **{k: v for k, v in truth.items() if k not in ("speaker", "side")},
        }
        bubbles.append(truth)
    if app.name == "imessage" and bubbles and rng.random() < 0.7:
        pass
    image = c.final()
    info: dict[str, Any] = {
        "app": app.name,
        "theme": app.theme,
        "width": width,
        "height": height,
        "user_side": "right",
        "talker": None if group else title,
        "group": title if group else None,
        "user": None,  # the signed-in user's name: no bubble app shows it
        "bubbles": bubbles,
        "partial": partial,
        "chrome": chrome,
        "draft": draft or None,  # the input bar's unsent text (also in chrome)
    }
    if r4:  # round 4: what is drawn in view with no text and is no message
        info["textless"] = [
            {"what": what, "bbox": c.box(box)}
            for what, box in chat.textless
            if box[1] >= header_bottom and box[3] <= itop
        ]
    return image, info
