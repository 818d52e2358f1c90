"""One screenshot of a Slack-like channel, DM or thread (no bubbles)."""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageFont

from .apps import SLACK, SLACK_USER, App
from .canvas import MONO, Canvas, mix, wrap
from .chat import Chat
from .frame import avatar, input_bar, keyboard, nav_bar, status_bar
from .texts import (
    BOTS,
    CODE,
    EMOJI_ONLY,
    EMOJI_TEXT,
    EN,
    FILES,
    MEMBERS_EN,
    MEMBERS_ZH,
    NAMES_EN,
    NAMES_ZH,
    PREFIX_NAMES_EN,
    PREFIX_NAMES_ZH,
    SLACK_EN,
    SLACK_ZH,
    STATUS_EMOJI,
    TOPICS_EN,
    TOPICS_ZH,
    ZH,
    variety_of,
)


def render_slack(
    index: int, key: str, width: int, height: int, opts: dict[str, Any], seed: int = 0
) -> tuple[Image.Image, dict[str, Any]]:
    """A Slack-like channel, DM or thread: avatar, bold name, time, text rows;
    no bubbles. Truth: one ``bubble`` per message (its name row and text rows),
    ``sender`` the bold name (carried to a follow-up message drawn without it),
    ``time`` as shown. The signed-in user's (``SLACK_USER``) messages are
    the user's (``right``: a thread has no sides, the side follows the
    speaker), the others' the talker's; ``user`` is the signed-in user's
    name when a message of theirs is in view. In a DM the other person is the
    talker. In the committed seeds the signed-in user never writes in a
    channel; in every other seed (``variety``) they do: the truth is what is
    true, also where the pixels cannot tell (Slack draws one's own messages
    like anyone's). With ``variety`` a message may also carry a code block
    (its code is typed text: part of ``text``), a file card (``kind:
    "file"``, ``text`` the typed text or empty, the card's name in
    ``file``), "(edited)" (chrome, not text), a status emoji after the name,
    or come from an app with an "APP" badge (chrome); a channel may be
    private: a lock instead of "#", a topic instead of "N members"."""
    app = SLACK[key]
    rng = random.Random(index * 7919 + width + seed * 1_000_003)
    c = Canvas(width, height, app.bg)
    zh = bool(opts.get("zh"))
    dm = bool(opts.get("dm"))
    thread = bool(opts.get("thread"))
    variety = variety_of(seed) >= 1
    # round 3, from an rng of its own (the messages stay what they were): the
    # gap between a name and its time, the jumbo emoji's size and a second
    # reaction vary as they do between Slack's clients and versions
    r3 = random.Random(f"{seed}-{index}-{width}-round3") if variety_of(seed) >= 3 else None
    channel = rng.choice(["general", "design", "random", "项目组" if zh else "launch"])
    other = rng.choice(NAMES_ZH if zh else NAMES_EN)
    people = [other, SLACK_USER] if dm else [*rng.sample(MEMBERS_ZH if zh else MEMBERS_EN, 3)]
    me = SLACK_USER  # the signed-in user
    # round 4, from an rng of its own: names that share a prefix (a DM of Sam
    # and Samantha, the one signed in; or both in a channel), and someone
    # typing ("Sam is typing…" and three dots over the input bar: chrome)
    r4 = random.Random(f"{seed}-{index}-{width}-round4") if variety_of(seed) >= 4 else None
    if r4 and (opts.get("prefix") or r4.random() < 0.3):
        short, long = PREFIX_NAMES_ZH if zh else PREFIX_NAMES_EN
        if dm:
            other, me = short, long
            people = [other, me]
        else:
            people[:2] = [short, long]
    pool = ZH if zh else EN
    private = bool(opts.get("private")) and not dm
    status: dict[str, str] = {}
    if variety:
        pool = pool + (SLACK_ZH if zh else SLACK_EN) + ["+1"]
        if not dm:
            people.append(me)
        for person in people:
            if rng.random() < 0.35:
                status[person] = rng.choice(STATUS_EMOJI)
    chrome: list[str] = []
    bottom = c.h_dp - (24.0 if app.os == "ios" else 40.0)
    kb_top = bottom - 260.0 if opts.get("keyboard") else bottom
    status_h = 44.0 if app.os == "ios" else 24.0
    chat_top = status_h + 56
    input_top = kb_top - 52
    typist = ""
    if r4 and (opts.get("typing") or r4.random() < 0.35):
        typist = r4.choice([p for p in people if p != me])
        input_top -= 22  # the typing row hides what is under it
    title = other if dm else ("Thread" if thread else (channel if private else f"# {channel}"))
    bubbles: list[dict[str, Any]] = []
    partial: list[list[int]] = []
    y = chat_top + 10 - float(opts.get("scroll", 0))
    hour, minute = rng.randrange(8, 20), rng.randrange(0, 40)
    last = ""
    n = 0
    replies_drawn = False
    while y < input_top + 40:
        n += 1
        if n == 1 or (n == 4 and rng.random() < 0.5):
            if thread and n == 4 and not replies_drawn:
                text = f"{rng.randrange(2, 9)} replies"
                c.text(16, y + 4, text, 12.5, app.time_fg)
                c.rect((16 + c.length(text, 12.5) + 8, y + 12, 344, y + 12.6), (221, 221, 221))
                chrome.append(text)
                replies_drawn = True
                y += 28
                continue
            if not thread and n == 1:
                day = rng.choice(["Today", "Yesterday", "Monday, November 30th"])
                w = c.length(day, 12) + 20
                c.rect((12, y + 12, 348, y + 12.6), mix(app.bg, (128, 128, 128), 0.4))
                c.rect((180 - w / 2, y + 2, 180 + w / 2, y + 22), app.bg, 10)
                c.draw.rounded_rectangle(
                    [c.px(180 - w / 2), c.px(y + 2), c.px(180 + w / 2), c.px(y + 22)],
                    radius=c.px(10), outline=mix(app.bg, (128, 128, 128), 0.4), width=c.px(1),
                )  # fmt: skip
                c.text(180 - c.length(day, 12) / 2, y + 4.5, day, 12, app.talker_fg, bold=True)
                chrome.append(day)
                y += 32
                continue
        sender = rng.choice(people)
        bot = variety and not dm and rng.random() < 0.06
        if bot:
            sender = rng.choice(BOTS)
        follow = sender == last and rng.random() < 0.6
        last = sender
        r = rng.random()
        emoji_only = r < 0.1
        text = (
            rng.choice(EMOJI_ONLY)
            if emoji_only
            else rng.choice(pool if r > 0.3 else EMOJI_TEXT + pool)
        )
        code = file = None
        edited = False
        if variety and not emoji_only:
            extra = rng.random()
            if extra < 0.1:
                code = rng.choice(CODE)
                if rng.random() < 0.4:
                    text = ""  # the code block alone
            elif extra < 0.2:
                file = rng.choice(FILES)
                if rng.random() < 0.5:
                    text = ""  # the file alone
            elif extra < 0.3:
                edited = True
        minute += rng.randrange(0, 5)
        hour += minute // 60
        minute %= 60
        time = (
            f"{hour}:{minute:02d}"
            if app.os == "android"
            else f"{(hour - 1) % 12 + 1}:{minute:02d} {'AM' if hour < 12 else 'PM'}"
        )
        top = y
        x0 = 56.0
        rows_w: list[float] = []
        if not follow:
            y += 8
            top = y
            avatar(
                c, 30, y + 18, 18, sender, Chat(c, app, rng, True).colour_of(sender), square=True
            )
            c.text(x0, y, sender, 15, app.talker_fg, bold=True)
            nw = c.length(sender, 15, bold=True)
            if sender in status:  # a status emoji after the name
                c.emoji(x0 + nw + 4, y + 2, status[sender], 15)
                nw += 22
            if bot:  # an app: a grey "APP" badge after the name
                c.rect(
                    (x0 + nw + 5, y + 3, x0 + nw + 33, y + 18), mix(app.bg, (128, 128, 128), 0.3), 3
                )
                c.text(x0 + nw + 8, y + 3.5, "APP", 10, app.time_fg, bold=True)
                chrome.append("APP")
                nw += 32
            gap = r3.uniform(5, 12) if r3 else 8
            c.text(x0 + nw + gap, y + 3, time, 12, app.time_fg)
            rows_w.append(nw + gap + c.length(time, 12))
            y += 22
        else:
            y += 8
            top = y
        size, lh = (30.0, 36.0) if emoji_only else (15.0, 21.0)
        if emoji_only and r3:
            size = r3.choice([22.0, 26.0, 30.0, 34.0])
            lh = size * 1.2
        rows = wrap(c, text, size, 360 - x0 - 16)
        for i, row in enumerate(rows):
            c.text(x0, y, row, size, app.talker_fg)
            rows_w.append(c.length(row, size))
            if edited and i == len(rows) - 1:  # "(edited)" after the last row, or under it
                ew = c.length(" (edited)", 12)
                if rows_w[-1] + ew > 360 - x0 - 16:
                    y += lh
                    c.text(x0, y + 3, "(edited)", 12, app.time_fg)
                    rows_w.append(ew)
                else:
                    c.text(x0 + rows_w[-1] + 4, y + 3, "(edited)", 12, app.time_fg)
                    rows_w[-1] += ew
                chrome.append("(edited)")
            y += lh
        if code:  # a code block: a filled box, monospaced text
            y += 4
            cw = 360 - x0 - 16
            c.rect((x0, y, x0 + cw, y + 30), mix(app.bg, (128, 128, 128), 0.12), 4)
            c.draw.rounded_rectangle(
                [c.px(x0), c.px(y), c.px(x0 + cw), c.px(y + 30)], radius=c.px(4),
                outline=mix(app.bg, (128, 128, 128), 0.35), width=max(1, c.px(0.6)),
            )  # fmt: skip
            c.draw.text(
                (c.px(x0 + 8), c.px(y + 7)), code, font=ImageFont.truetype(MONO, c.px(12.5)),
                fill=(224, 30, 90) if app.theme == "light" else (232, 145, 45),
            )  # fmt: skip
            rows_w.append(cw)
            y += 34
        if file:  # a file card: icon, name, type and size, in a bordered box
            y += 4
            fw = 250.0
            c.rect((x0, y, x0 + fw, y + 54), mix(app.bg, (128, 128, 128), 0.05), 8)
            c.draw.rounded_rectangle(
                [c.px(x0), c.px(y), c.px(x0 + fw), c.px(y + 54)], radius=c.px(8),
                outline=mix(app.bg, (128, 128, 128), 0.35), width=max(1, c.px(0.6)),
            )  # fmt: skip
            c.rect((x0 + 9, y + 9, x0 + 45, y + 45), rng.choice(Chat(c, app, rng, True).colours), 6)
            c.text(
                x0 + 27 - c.length(file[0], 10, True) / 2,
                y + 20,
                file[0],
                10,
                (255, 255, 255),
                True,
            )
            c.text(x0 + 54, y + 9, file[1], 14, app.talker_fg, bold=True)
            c.text(x0 + 54, y + 30, file[2], 12, app.time_fg)
            rows_w.append(fw)
            y += 58
        box = (x0 - 2, top - 2, x0 + max(rows_w) + 2, y + 1)
        if rng.random() < 0.15 and not thread:  # a reaction under it
            emoji = rng.choice(["👍", "🎉", "❤️"])
            count = str(rng.randrange(1, 6))
            c.rect((x0, y + 4, x0 + 44, y + 26), mix(app.bg, app.accent, 0.12), 11)
            c.emoji(x0 + 6, y + 8, emoji.replace("\ufe0f", ""), 14)
            c.text(x0 + 26, y + 7, count, 12, app.accent, bold=True)
            chrome.append(count)
            if r3 and r3.random() < 0.5:  # a second reaction beside it
                emoji2 = "😂" if emoji != "😂" else "👀"
                count2 = str(r3.randrange(1, 4))
                c.rect((x0 + 50, y + 4, x0 + 94, y + 26), mix(app.bg, app.accent, 0.12), 11)
                c.emoji(x0 + 56, y + 8, emoji2, 14)
                c.text(x0 + 76, y + 7, count2, 12, app.accent, bold=True)
                chrome.append(count2)
            y += 30
        elif rng.random() < 0.2 and not thread:  # its thread: replies, a last reply
            for i in range(3):
                c.rect(
                    (x0 + 22 * i, y + 5, x0 + 20 + 22 * i, y + 25),
                    Chat(c, app, rng, True).colours[i],
                    4,
                )
            replies = f"{rng.randrange(2, 12)} replies"
            c.text(x0 + 70, y + 6, replies, 13, app.accent, bold=True)
            when = rng.choice(["Last reply today at 10:12", "Last reply 5 min ago", "View thread"])
            c.text(x0 + 76 + c.length(replies, 13, bold=True), y + 7.5, when, 12, app.time_fg)
            chrome += [replies, when]
            y += 30
        mine = sender == me and (dm or variety)
        truth: dict[str, Any] = {
            "speaker": "user" if mine else "talker",
            "side": "right" if mine else "left",
            "bbox": c.box(box),
            "text": "\n".join(part for part in (text, code) if part),
            "sender": sender,
        }
        if not follow:
            truth["time"] = time
        if emoji_only:
            truth["kind"] = "text"
        if file:
            truth["kind"] = "file"
            truth["file"] = file[1]
        if top < chat_top or box[3] > input_top:
            if box[3] > chat_top and top < input_top:
                partial.append(c.box(box))
            continue
        bubbles.append(truth)
    nav_bar(c, app, app.input_bg)
    if opts.get("keyboard"):
        kb_top, more = keyboard(c, app, bottom, rng)
        chrome += more
    placeholder = (
        f"Message {other}"
        if dm
        else ("Reply…" if thread else (f"Message {channel}" if private else f"Message # {channel}"))
    )
    app_in = App(**{**app.__dict__, "placeholder": placeholder})
    itop, more = input_bar(c, app_in, kb_top, opts.get("draft"))
    chrome += more
    if typist:  # three dots (one darker: the animation) and who is typing
        itop -= 22
        c.rect((0, itop, 360, itop + 22), app.input_bg)
        for i in range(3):
            c.circle(22 + 7 * i, itop + 11, 2.2, mix(app.time_fg, app.bg, 0.2 * (i != 1)))
        label = f"{typist.split()[0]} is typing…"
        c.text(50, itop + 3.5, label, 12, app.time_fg)
        chrome.append(label)
    _, more = status_bar(c, app, app.header_fg, app.header_bg, rng)
    chrome += more
    hb = status_h
    c.rect((0, hb, 360, hb + 56), app.header_bg)
    c.line([(20, hb + 20), (12, hb + 28), (20, hb + 36)], app.header_fg, 2.2)
    tx = 34.0
    if private:  # a lock: its shackle and body
        c.draw.arc(
            [c.px(37), c.px(hb + 10), c.px(45), c.px(hb + 20)], 180, 360,
            fill=app.header_fg, width=c.px(1.6),
        )  # fmt: skip
        c.rect((35, hb + 15, 47, hb + 25), app.header_fg, 2)
        tx = 52.0
    c.text(tx, hb + 9, title, 16, app.header_fg, bold=True)
    sub = "Active" if dm else (f"# {channel}" if thread else f"{rng.randrange(3, 80)} members")
    if private and not thread:
        sub = rng.choice(TOPICS_ZH if zh else TOPICS_EN)
    c.text(34, hb + 31, sub, 12, app.sub_fg)
    if not thread:
        chrome.append(sub)
    c.rect((0, hb + 55.5, 360, hb + 56), mix(app.bg, (128, 128, 128), 0.3))
    bubbles = [
        b
        for b in bubbles
        if b["bbox"][1] >= c.box((0, hb + 56, 0, 0))[1]
        and b["bbox"][3] <= c.box((0, itop, 0, 0))[1]
    ]
    info: dict[str, Any] = {
        "app": app.name,
        "theme": app.theme,
        "width": width,
        "height": height,
        "user_side": "right",
        "talker": other if dm else None,
        "group": None if dm else channel,  # a thread's channel is under "Thread"
        # the signed-in user's name, when a message of theirs is in view
        "user": me if any(b["speaker"] == "user" for b in bubbles) else None,
        "bubbles": bubbles,
        "partial": partial,
        "chrome": chrome,
        "draft": opts.get("draft") or None,  # the input bar's unsent text (also in chrome)
    }
    if r4:  # round 4: what is drawn with no text and is no message
        dots = [{"what": "typing", "bbox": c.box((18, itop + 7, 40, itop + 15))}]
        info["textless"] = dots if typist else []
    return c.final(), info
