"""A bubble chat's messages and notes drawn down the chat area, with the
truth of each bubble (WhatsApp, Telegram, WeChat, LINE, Messenger,
iMessage)."""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from .apps import App
from .canvas import RGB, Canvas, mix, quote_text, wrap
from .extras import (
    LINK_CARD_H,
    LINK_CARD_W,
    link_card,
    link_colour,
    messenger_reply,
    sticker,
    text_line,
    typing,
)
from .frame import avatar
from .script import Msg, Note, voice_duration


class Chat:
    """Draws items down the chat area and collects their truth."""

    def __init__(self, c: Canvas, app: App, rng: random.Random, group: bool) -> None:
        self.c, self.app, self.rng, self.group = c, app, rng, group
        self.bubbles: list[dict[str, Any]] = []
        self.boxes: list[tuple[float, float, float, float]] = []  # dp, parallel to bubbles
        self.chrome: list[str] = []
        self.last_side = ""
        self.last_sender: str | None = ""
        self.colours = [(229, 57, 53), (30, 136, 229), (142, 36, 170), (0, 137, 123), (244, 81, 30)]
        self.v4 = False  # round 4 (extras.py): Messenger's reply label, the app's typing dots
        self.talker: str | None = None  # a 1:1 talker's name (Messenger's reply label)
        # what is drawn with no text and is no message (round 4): typing dots, a
        # link card's picture; (what, dp box)
        self.textless: list[tuple[str, tuple[float, float, float, float]]] = []

    def colour_of(self, name: str) -> RGB:
        return self.colours[sum(map(ord, name)) % len(self.colours)]

    def note(self, note: Note, y: float) -> float:
        c, app = self.c, self.app
        size = 12.5 if note.kind != "stamp" else 12
        if note.kind == "stamp":
            w = c.length(note.text, size)
            c.text(180 - w / 2, y + 8, note.text, size, app.time_fg)
            self.chrome.append(note.text)
            return y + 34
        if note.kind == "unread":  # a band across the chat, its text centred
            c.rect((0, y + 6, 360, y + 32), mix(app.bg, app.pill_bg, 0.7))
            w = c.length(note.text, size)
            c.text(180 - w / 2, y + 10, note.text, size, app.pill_fg)
            self.chrome.append(note.text)
            return y + 40
        maxw = 280
        lines = wrap(c, note.text, size, maxw)
        w = max(c.length(ln, size) for ln in lines) + 20
        h = len(lines) * 18 + 10
        bg = app.pill_bg
        fg = app.pill_fg
        if note.kind == "system" and app.name == "whatsapp":
            bg = (255, 238, 205) if app.theme == "light" else (24, 34, 41)
            fg = (84, 101, 111) if app.theme == "light" else (255, 210, 121)
        c.rect((180 - w / 2, y + 6, 180 + w / 2, y + 6 + h), bg, 8)
        for i, ln in enumerate(lines):
            c.text(180 - c.length(ln, size) / 2, y + 10 + 18 * i, ln, size, fg)
        self.chrome.append(note.text)
        return y + h + 16

    def message(self, m: Msg, y: float) -> float:
        c, app, rng = self.c, self.app, self.rng
        first = m.side != self.last_side or m.sender != self.last_sender
        self.last_side, self.last_sender = m.side, m.sender
        y += 8 if first or app.name == "wechat" else 2
        size, lh = 15.5, 21.0
        left = m.side == "left"
        user = not left
        margin = 8.0
        av_r = 20.0 if app.name == "wechat" else 14.0
        has_avatar = app.avatars == "both" or (app.avatars == "talker" and left)
        if has_avatar:
            margin = 8 + 2 * av_r + 6
        maxw = 360 * 0.78 - (margin - 8)
        bubble = app.user_bubble if user else app.talker_bubble
        fg = app.user_fg if user else app.talker_fg
        tfg = app.user_time_fg if user else app.time_fg
        sender_above = m.sender is not None and not app.sender_in and first
        sender_in = m.sender is not None and app.sender_in and first
        top = y
        if sender_above:  # WeChat, LINE, Messenger groups: a small grey name above
            sx = margin + (4 if app.name == "wechat" else 8)
            c.text(sx, y, m.sender or "", 11.5, app.time_fg if app.name != "line" else (40, 50, 70))
            y += 17
        pad_x, pad_y = 10.0, 7.0
        quote = None
        inner = m.quote  # a quote drawn inside the bubble (Messenger's is over it)
        if m.quote and self.v4 and app.name == "messenger":
            inner = None
            who = (m.sender or self.talker or "").split()[0] if left else ""
            label = f"{who} replied to you" if left else f"You replied to {m.quote[0]}"
            qt = quote_text(c, m.quote[1], maxw - 2 * pad_x)
            y = messenger_reply(c, app, left, label, qt, margin, y)
            self.chrome.append(label)
            quote = {"sender": m.quote[0], "text": qt}
        # content size
        time_w = 0.0
        time_text = m.time if (app.time_in or app.time_beside) else None
        if app.time_in:
            time_w = c.length(m.time or "", 11) + (18 if (user and app.ticks) else 0) + 8
            time_w += c.length(self.edited_label + " ", 11) if m.edited else 0
        w: float
        h: float
        caption_h = 0.0
        if m.kind == "photo":
            pw, ph = rng.choice([(220, 170), (200, 250), (230, 150)])
            w, h = (
                pw + (6 if app.name == "whatsapp" else 0),
                ph + (6 if app.name == "whatsapp" else 0),
            )
            lines: list[str] = []
            if m.caption:  # under the photo, in the bubble, the time after it
                lines = wrap(c, m.caption, size, w - 2 * pad_x)
                fits = c.length(lines[-1], size) + time_w <= w - 2 * pad_x
                caption_h = len(lines) * lh + pad_y + (4 if fits else 18)
                h += caption_h
        elif m.kind == "sticker":
            w = h = 110.0
            lines = []
        elif m.kind == "voice":
            if app.name == "wechat":
                dur = f'{rng.randrange(2, 40)}"'
                w, h = 80 + len(dur) * 8, 40
            else:
                dur = voice_duration(rng)
                w, h = 240, 54
            lines = []
        else:
            esize = 32 if m.emoji_only else size
            lines = wrap(c, m.text, esize, maxw - 2 * pad_x)
            widths = [c.length(ln, esize) for ln in lines]
            elh = 38 if m.emoji_only else lh
            tw = max(widths)
            extra_row = False
            if app.time_in:
                if widths[-1] + time_w <= maxw - 2 * pad_x:
                    tw = max(tw, widths[-1] + time_w)
                else:
                    extra_row = True
            head = 0.0
            if sender_in:
                tw = max(tw, c.length(m.sender or "", 13.5, True))
                head += 20
            if m.forwarded:
                tw = max(tw, c.length("Forwarded", 12.5) + 18)
                head += 19
            if inner:
                qt = quote_text(c, inner[1], maxw - 2 * pad_x - 16)
                tw = max(tw, c.length(qt, 13) + 16, c.length(inner[0], 13, True) + 16)
                head += 52
            card_h = LINK_CARD_H[app.name] if m.link else 0.0
            if m.link:  # the card takes the bubble's width; WhatsApp's is over the text
                tw = max(tw, LINK_CARD_W)
                head += card_h if app.name == "whatsapp" else 0
                extra_row = extra_row or app.name == "telegram"
            w = tw + 2 * pad_x
            h = head + len(lines) * elh + 2 * pad_y + (16 if extra_row else 0)
            h += card_h if app.name == "telegram" else 0
        x1 = margin if left else 360 - margin - w
        x2 = x1 + w
        y1, y2 = y, y + h
        if has_avatar and (first or app.name == "wechat"):
            ax = 8 + av_r if left else 352 - av_r
            name = m.sender or "U"
            if app.name == "wechat":
                avatar(c, ax, top + av_r, av_r, name, self.colour_of(name), square=True)
            else:
                avatar(c, ax, y2 - av_r, av_r, name, self.colour_of(name), letters=False)
        # the bubble
        if (m.kind == "photo" and app.name != "whatsapp") or m.kind == "sticker":
            pass
        else:
            grad = app.user_gradient if user else None
            if grad:
                steps = 24
                for i in range(steps):
                    c.rect(
                        (x1, y1 + h * i / steps, x2, y1 + h * (i + 1) / steps + 0.6),
                        mix(grad, bubble, (y1 + h * i / steps) / c.h_dp),
                        0,
                    )
                # round the corners with the background
                mask = Image.new("L", c.image.size, 0)
                ImageDraw.Draw(mask).rounded_rectangle(
                    [c.px(x1), c.px(y1), c.px(x2), c.px(y2)], radius=c.px(app.radius), fill=255
                )
                inv = Image.new("RGB", c.image.size, app.bg)
                region = (c.px(x1) - 2, c.px(y1) - 2, c.px(x2) + 2, c.px(y2) + 2)
                cut = Image.composite(c.image.crop(region), inv.crop(region), mask.crop(region))
                c.image.paste(cut, region[:2])
            else:
                c.rect((x1, y1, x2, y2), bubble, app.radius)
            if app.tail and first and m.kind not in ("photo", "sticker"):
                if app.name in ("whatsapp", "telegram"):
                    if left:
                        c.poly([(x1 + 4, y1), (x1 - 7, y1), (x1 + 4, y1 + 11)], bubble)
                    else:
                        c.poly([(x2 - 4, y1), (x2 + 7, y1), (x2 - 4, y1 + 11)], bubble)
                elif app.name == "wechat":
                    ty = y1 + 20
                    if left:
                        c.poly([(x1, ty - 6), (x1 - 6, ty), (x1, ty + 6)], bubble)
                    else:
                        c.poly([(x2, ty - 6), (x2 + 6, ty), (x2, ty + 6)], bubble)
                elif app.name in ("imessage", "line"):
                    if left:
                        c.poly([(x1 + 8, y2 - 14), (x1 - 5, y2), (x1 + 14, y2 - 2)], bubble)
                    else:
                        c.poly([(x2 - 8, y2 - 14), (x2 + 5, y2), (x2 - 14, y2 - 2)], bubble)
        text_x, ty = x1 + pad_x, y1 + pad_y
        if m.kind == "sticker":
            sticker(c, x1, y1, m.text)
        elif m.kind == "photo":
            inset = 3.0 if app.name == "whatsapp" else 0.0
            px1, py1, px2, py2 = x1 + inset, y1 + inset, x2 - inset, y2 - inset - caption_h
            sky = (rng.randrange(60, 200), rng.randrange(90, 200), rng.randrange(120, 240))
            ground = (rng.randrange(40, 140), rng.randrange(80, 160), rng.randrange(30, 90))
            c.rect((px1, py1, px2, py2), sky, app.radius - 2 if inset else app.radius)
            c.rect((px1, py1 + (py2 - py1) * 0.6, px2, py2 - app.radius), ground)
            c.rect(
                (px1, py2 - app.radius - 1, px2, py2),
                ground,
                app.radius - 2 if inset else app.radius,
            )
            c.circle(px1 + (px2 - px1) * 0.75, py1 + 30, 14, (250, 220, 120))
            c.poly(
                [
                    (px1 + 20, py1 + (py2 - py1) * 0.6),
                    (px1 + 80, py1 + 40),
                    (px1 + 150, py1 + (py2 - py1) * 0.6),
                ],
                mix(ground, (0, 0, 0), 0.3),
            )
            for i, ln in enumerate(lines):  # the caption
                c.text(text_x, py2 + pad_y - 2 + i * lh, ln, size, fg)
            if app.time_in and m.caption:
                self.time(m, x2 - pad_x, y2 - 5, tfg, user)
            elif app.time_in:
                tw2 = c.length(m.time or "", 11) + (18 if user and app.ticks else 0)
                if app.name == "telegram":
                    c.rect((px2 - tw2 - 14, py2 - 24, px2 - 4, py2 - 6), (30, 30, 30), 9)
                c.text(px2 - tw2 - 8, py2 - 22, m.time or "", 11, (255, 255, 255))
                if user and app.ticks:
                    self.ticks(px2 - 24, py2 - 15, (255, 255, 255))
        elif m.kind == "voice":
            if app.name == "wechat":
                c.text(x1 + (w - 26 if user else 12), y1 + 10, dur, 14, fg)
                for i, r in enumerate((5, 9, 13)):
                    ax = x1 + 14 if user else x2 - 22
                    c.draw.arc(
                        [c.px(ax - r), c.px(y1 + 20 - r), c.px(ax + r), c.px(y1 + 20 + r)],
                        135 if user else -45,
                        225 if user else 45,
                        fill=fg,
                        width=c.px(1.6),
                    )
                    del i
            else:
                c.poly(
                    [(x1 + 14, y1 + 12), (x1 + 14, y1 + 30), (x1 + 28, y1 + 21)],
                    app.accent if not user else fg,
                )
                for i in range(28):
                    bh = rng.uniform(3, 18)
                    c.rect(
                        (x1 + 40 + 5 * i, y1 + 21 - bh / 2, x1 + 42.5 + 5 * i, y1 + 21 + bh / 2),
                        mix(fg, bubble, 0.35),
                        1,
                    )
                c.text(x1 + 40, y1 + 34, dur, 11, tfg)
                if app.time_in:
                    self.time(m, x2 - pad_x, y2 - 6, tfg, user)
        else:
            if sender_in:
                c.text(text_x, ty, m.sender or "", 13.5, self.colour_of(m.sender or ""), True)
                ty += 20
            if m.forwarded:  # an arrow, then the label in the time's colour
                c.line([(text_x, ty + 12), (text_x + 6, ty + 6), (text_x + 12, ty + 12)], tfg, 1.2)
                c.text(text_x + 16, ty + 1, "Forwarded", 12.5, tfg)
                self.chrome.append("Forwarded")
                ty += 19
            if inner:
                qc = self.colour_of(inner[0]) if inner[0] != "You" else app.accent
                qbg = mix(bubble, (0, 0, 0) if app.theme == "light" else (255, 255, 255), 0.07)
                c.rect((x1 + 4, ty - 2, x2 - 4, ty + 46), qbg, 6)
                c.rect((x1 + 4, ty - 2, x1 + 8, ty + 46), qc)
                c.text(text_x + 4, ty + 3, inner[0], 13, qc, True)
                qt = quote_text(c, inner[1], maxw - 2 * pad_x - 16)
                c.text(text_x + 4, ty + 23, qt, 13, mix(fg, bubble, 0.35))
                quote = {"sender": inner[0], "text": qt}
                ty += 52
            if m.link and app.name == "whatsapp":
                texts, picture = link_card(c, app, x1, x2, ty - 4, m.link, bubble, fg)
                self.chrome += texts
                if picture:
                    self.textless.append(("link picture", picture))
                ty += card_h
            esize = 32 if m.emoji_only else size
            elh = 38 if m.emoji_only else lh
            in_url = False
            for i, ln in enumerate(lines):
                ly = ty + i * elh + (elh - esize * 1.35) / 2
                if m.link:
                    in_url = text_line(c, text_x, ly, ln, esize, fg, link_colour(app), in_url)
                else:
                    c.text(text_x, ly, ln, esize, fg)
            if m.link and app.name == "telegram":
                card_top = ty + len(lines) * elh + 4
                self.chrome += link_card(c, app, x1, x2, card_top, m.link, bubble, fg)[0]
            if app.time_in:
                self.time(m, x2 - pad_x, y2 - 5, tfg, user)
        if app.time_beside:
            tw = c.length(m.time or "", 10)
            ty2 = y2 - 14
            if user:
                c.text(x1 - tw - 5, ty2, m.time or "", 10, tfg)
                if rng.random() < 0.7:
                    c.text(x1 - c.length("Read", 10) - 5, ty2 - 13, "Read", 10, tfg)
                    self.chrome.append("Read")
            else:
                c.text(x2 + 5, ty2, m.time or "", 10, tfg)
        after = y2
        if m.reaction:  # a pill over the bottom edge: not part of the bubble's box
            rx = x1 + 8 if left else x2 - 38
            pill = (255, 255, 255) if app.theme == "light" else (32, 44, 51)
            c.rect((rx, y2 - 4, rx + 30, y2 + 18), mix(app.bg, (128, 128, 128), 0.3), 11)
            c.rect((rx + 1, y2 - 3, rx + 29, y2 + 17), pill, 10)
            c.emoji(rx + 8, y2, m.reaction.replace("\ufe0f", ""), 13)
            after = y2 + 16
        if m.receipt:  # under the bubble, right-aligned
            c.text(x2 - c.length(m.receipt, 11), y2 + 3, m.receipt, 11, app.time_fg)
            self.chrome.append(m.receipt)
            after = y2 + 17
        truth = {
            "speaker": "user" if user else "talker",
            "side": m.side,
            "text": m.caption if m.kind == "photo" else ("" if m.kind != "text" else m.text),
            "kind": m.kind,
            # a name in the bubble is drawn on text bubbles only
            "sender": m.sender
            if (m.sender and ((sender_in and m.kind == "text") or sender_above))
            else None,
            "time": time_text,
            "quote": quote,
        }
        self.bubbles.append(truth)
        self.boxes.append((x1, y1, x2, y2))
        return after

    def ticks(self, x: float, y: float, colour: RGB) -> None:
        for dx in (0, 5):
            c = self.c
            c.line([(x + dx, y), (x + 3 + dx, y + 3), (x + 10 + dx, y - 5)], colour, 1.3)

    def typing(self, y: float) -> None:
        """A typing indicator: a talker's bubble of three dots, no message."""
        c, app = self.c, self.app
        if self.v4:
            self.textless.append(("typing", typing(c, app, y)))
            return
        x1 = 8.0 + (34 if app.avatars else 0)
        c.rect((x1, y + 8, x1 + 58, y + 42), app.talker_bubble, app.radius)
        for i in range(3):
            c.circle(x1 + 17 + 12 * i, y + 25, 3.6, mix(app.talker_fg, app.talker_bubble, 0.5))

    @property
    def edited_label(self) -> str:
        return "Edited" if self.app.name == "whatsapp" else "edited"

    def time(self, m: Msg, right: float, bottom: float, fg: RGB, user: bool) -> None:
        c = self.c
        tick = user and self.app.ticks
        tw = c.length(m.time or "", 11) + (18 if tick else 0)
        c.text(right - tw, bottom - 15, m.time or "", 11, fg)
        if m.edited:
            label = self.edited_label
            c.text(right - tw - c.length(label + " ", 11), bottom - 15, label, 11, fg)
            self.chrome.append(label)
        if tick:
            blue = (83, 189, 235)
            self.ticks(right - 14, bottom - 8, blue if self.rng.random() < 0.7 else fg)
