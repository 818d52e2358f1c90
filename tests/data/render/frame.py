"""The frame around a chat: wallpaper, status bar, header (with its avatar,
badge and subtitle), input bar (placeholder or draft), keyboard, navigation
bar. Each returns where it ends and the chrome text it drew."""

from __future__ import annotations

import random

from .apps import App
from .canvas import RGB, Canvas, mix
from .texts import KEY_ROWS, SUGGESTIONS


def wallpaper(c: Canvas, app: App, rng: random.Random) -> None:
    if app.wallpaper == "flat":
        return
    ink = mix(app.bg, (255, 255, 255) if app.theme == "dark" else (0, 0, 0), 0.06)
    step = 34 if app.wallpaper == "doodle" else 26
    for gy in range(0, int(c.h_dp) + step, step):
        for gx in range(0, 360 + step, step):
            x, y = gx + rng.uniform(-6, 6), gy + rng.uniform(-6, 6)
            shape = rng.randrange(4)
            if app.wallpaper == "pattern":
                c.line([(x, y), (x + 6, y + 6), (x + 12, y)], ink, 1.2)
            elif shape == 0:
                c.draw.ellipse(
                    [c.px(x), c.px(y), c.px(x + 9), c.px(y + 9)], outline=ink, width=c.px(1)
                )
            elif shape == 1:
                c.draw.rectangle(
                    [c.px(x), c.px(y), c.px(x + 8), c.px(y + 11)], outline=ink, width=c.px(1)
                )
            elif shape == 2:
                c.line([(x, y + 8), (x + 5, y), (x + 10, y + 8)], ink, 1)
            else:
                c.line([(x, y), (x + 10, y + 3)], ink, 1)


def status_bar(
    c: Canvas, app: App, fg: RGB, bg: RGB, rng: random.Random
) -> tuple[float, list[str]]:
    h = 44.0 if app.os == "ios" else 24.0
    c.rect((0, 0, 360, h), bg)
    clock = rng.choice(["9:41", "10:24", "21:07", "8:15"])
    if app.os == "ios":
        c.text(28, 14, clock, 14, fg, bold=True)
    else:
        c.text(12, 5, clock, 12, fg)
    x = 330
    c.rect((x, h / 2 - 5, x + 20, h / 2 + 5), fg, 2.5)  # battery
    c.rect((x + 20.5, h / 2 - 2, x + 22, h / 2 + 2), fg)
    for i in range(4):  # signal
        c.rect((x - 44 + 4 * i, h / 2 + 4 - 3 * i, x - 41.5 + 4 * i, h / 2 + 5), fg)
    c.draw.arc(
        [c.px(x - 24), c.px(h / 2 - 6), c.px(x - 10), c.px(h / 2 + 8)],
        220,
        320,
        fill=fg,
        width=c.px(1.6),
    )
    chrome = [clock]
    if app.os == "android":
        pct = f"{rng.randrange(20, 99)}%"
        c.text(x - 72, 5, pct, 11, fg)
        chrome.append(pct)
    return h, chrome


def avatar(
    c: Canvas,
    cx: float,
    cy: float,
    r: float,
    name: str,
    colour: RGB,
    square: bool = False,
    letters: bool = True,
) -> list[str]:
    if square:
        c.rect((cx - r, cy - r, cx + r, cy + r), colour, r * 0.15)
        c.circle(cx, cy - r * 0.2, r * 0.38, mix(colour, (255, 255, 255), 0.5))
        c.rect(
            (cx - r * 0.6, cy + r * 0.3, cx + r * 0.6, cy + r),
            mix(colour, (255, 255, 255), 0.5),
            r * 0.3,
        )
        return []
    c.circle(cx, cy, r, colour)
    if not letters:
        return []
    initials = "".join(p[0] for p in name.split()[:2]).upper() if name.isascii() else name[-1]
    size = r * 0.8
    c.text(cx - c.length(initials, size) / 2, cy - size * 0.72, initials, size, (255, 255, 255))
    return [initials]


def header(
    c: Canvas,
    app: App,
    top: float,
    title: str,
    subtitle: str | None,
    badge: str | None,
    group: bool,
    rng: random.Random,
) -> tuple[float, list[str]]:
    chrome: list[str] = []
    fg, sub = app.header_fg, app.sub_fg
    accent = app.accent if app.os == "ios" and app.name != "messenger" else fg
    if app.header == "avatar":  # iMessage: centred avatar, the name under it
        h = 96.0
        c.rect((0, top, 360, top + h), app.header_bg)
        c.line([(20, top + 22), (13, top + 30), (20, top + 38)], app.accent, 2.4)
        if badge:
            w = c.length(badge, 12) + 12
            c.rect((26, top + 21, 26 + w, top + 39), app.accent, 9)
            c.text(32, top + 22.5, badge, 12, (255, 255, 255))
            chrome.append(badge)
        chrome += avatar(c, 180, top + 32, 24, title, (160, 165, 175))
        size = 11.5
        c.text(180 - c.length(title, size) / 2 - 4, top + 62, title, size, fg)
        c.line(
            [
                (180 + c.length(title, size) / 2, top + 66),
                (183 + c.length(title, size) / 2, top + 69.5),
                (180 + c.length(title, size) / 2, top + 73),
            ],
            sub,
            1.2,
        )
        c.line([(300, top + 32), (320, top + 32)], app.accent, 0)  # facetime icon, roughly
        c.rect((306, top + 24, 326, top + 38), app.accent, 3)
        c.rect((0, top + h - 0.5, 360, top + h), mix(app.header_bg, (128, 128, 128), 0.3))
        return top + h, chrome
    h = 56.0
    c.rect((0, top, 360, top + h), app.header_bg)
    mid = top + h / 2
    c.line([(20, mid - 8), (12, mid), (20, mid + 8)], accent, 2.2)
    x = 30.0
    if badge:
        if app.os == "ios" or app.name in ("line", "wechat"):
            c.text(x - 2, mid - 9, badge, 15, accent)
            x += c.length(badge, 15) + 4
        else:
            w = max(18, c.length(badge, 11) + 10)
            c.rect((x, mid - 9, x + w, mid + 9), app.accent, 9)
            c.text(x + (w - c.length(badge, 11)) / 2, mid - 8, badge, 11, (255, 255, 255))
            x += w + 6
        chrome.append(badge)
    if app.header == "centre":  # WeChat
        size = 16.5
        c.text(180 - c.length(title, size) / 2, mid - 12, title, size, fg, bold=True)
        for i in range(3):
            c.circle(322 + 7 * i, mid, 1.8, fg)
        return top + h, chrome
    colour = rng.choice([(230, 126, 34), (52, 152, 219), (155, 89, 182), (26, 188, 156)])
    chrome += avatar(c, x + 20, mid, 18, title, colour)
    if app.name == "messenger":
        c.circle(x + 33, mid + 13, 5, (255, 255, 255))
        c.circle(x + 33, mid + 13, 3.6, (49, 204, 70))
    tx = x + 46
    if subtitle:
        c.text(tx, mid - 18, title, 16, fg, bold=True)
        c.text(tx, mid + 2, subtitle, 12, sub)
        chrome.append(subtitle)
    else:
        c.text(tx, mid - 11, title, 16, fg, bold=True)
    # call icons on the right
    c.rect((290, mid - 7, 305, mid + 7), accent, 3)
    c.poly([(305, mid - 2), (312, mid - 6), (312, mid + 6), (305, mid + 2)], accent)
    c.circle(335, mid, 7, accent)
    c.circle(335, mid, 5, app.header_bg)
    return top + h, chrome


def input_bar(c: Canvas, app: App, bottom: float, draft: str | None) -> tuple[float, list[str]]:
    h = 52.0
    top = bottom - h
    c.rect((0, top, 360, bottom), app.input_bg)
    x1, x2 = 44.0, 296.0
    c.line([(16, top + 26), (32, top + 26)], app.accent, 2)
    c.line([(24, top + 18), (24, top + 34)], app.accent, 2)
    field_fg = app.talker_fg if app.input_bg != app.field_bg else app.header_fg
    c.rect((x1, top + 9, x2, top + 43), app.field_bg, 17)
    if app.field_bg == app.input_bg:
        c.draw.rounded_rectangle(
            [c.px(x1), c.px(top + 9), c.px(x2), c.px(top + 43)],
            radius=c.px(17),
            outline=mix(app.bg, (128, 128, 128), 0.5),
            width=c.px(1),
        )
    chrome = []
    if draft:
        c.text(x1 + 12, top + 16, draft, 15, field_fg)
        c.rect(
            (x1 + 13 + c.length(draft, 15), top + 15, x1 + 14.5 + c.length(draft, 15), top + 37),
            app.accent,
        )  # the caret
        chrome.append(draft)
    elif app.placeholder:
        c.text(x1 + 12, top + 17, app.placeholder, 14.5, mix(field_fg, app.field_bg, 0.55))
        chrome.append(app.placeholder)
    c.circle(322, top + 26, 16, app.accent)
    c.rect((318, top + 17, 326, top + 30), (255, 255, 255), 4)  # mic
    c.line([(322, top + 31), (322, top + 35)], (255, 255, 255), 1.5)
    return top, chrome


def keyboard(c: Canvas, app: App, bottom: float, rng: random.Random) -> tuple[float, list[str]]:
    dark = app.theme == "dark"
    bg = (43, 43, 45) if dark else (209, 212, 217)
    key = (90, 90, 94) if dark else (255, 255, 255)
    fn = (60, 60, 63) if dark else (171, 177, 186)
    fg = (255, 255, 255) if dark else (0, 0, 0)
    h = 260.0
    top = bottom - h
    c.rect((0, top, 360, bottom), bg)
    chrome: list[str] = []
    words = rng.choice(SUGGESTIONS)
    for i, w in enumerate(words):  # the suggestion strip
        cx = 60 + 120 * i
        c.text(cx - c.length(w, 15) / 2, top + 10, w, 15, fg)
        if i:
            c.rect((120 * i - 0.5, top + 10, 120 * i + 0.5, top + 30), fn)
        chrome.append(w)
    y = top + 44
    kw, gap = 32.4, 3.6
    for r, row in enumerate(KEY_ROWS):
        x = (360 - len(row) * (kw + gap) + gap) / 2
        if r == 2:
            c.rect((4, y, 44, y + 42), fn, 5)
            c.rect((316, y, 356, y + 42), fn, 5)
        for ch in row:
            c.rect((x, y, x + kw, y + 42), key, 5)
            c.text(x + kw / 2 - c.length(ch, 20) / 2, y + 8, ch, 20, fg)
            chrome.append(ch)
            x += kw + gap
        y += 54
    labels = ("123", "space", "return") if app.os == "ios" else ("?123", "English", "send")
    c.rect((4, y, 84, y + 42), fn, 5)
    c.text(44 - c.length(labels[0], 14) / 2, y + 12, labels[0], 14, fg)
    c.rect((90, y, 270, y + 42), key, 5)
    c.text(180 - c.length(labels[1], 14) / 2, y + 12, labels[1], 14, fg)
    c.rect((276, y, 356, y + 42), fn, 5)
    c.text(316 - c.length(labels[2], 14) / 2, y + 12, labels[2], 14, fg)
    chrome += list(labels)
    return top, chrome


def nav_bar(c: Canvas, app: App, bg: RGB) -> float:
    fg = (255, 255, 255) if app.theme == "dark" or bg[0] < 90 else (0, 0, 0)
    if app.os == "ios":
        h = 24.0
        top = c.h_dp - h
        c.rect((0, top, 360, c.h_dp), bg)
        c.rect((120, top + 13, 240, top + 17.5), fg, 2.5)
        return top
    h = 40.0
    top = c.h_dp - h
    c.rect((0, top, 360, c.h_dp), bg)
    c.poly([(88, top + 20), (100, top + 13), (100, top + 27)], fg)
    c.circle(180, top + 20, 7, fg)
    c.circle(180, top + 20, 5.4, bg)
    c.rect((253, top + 13, 267, top + 27), fg, 1.5)
    c.rect((254.4, top + 14.4, 265.6, top + 25.6), bg, 1)
    return top
