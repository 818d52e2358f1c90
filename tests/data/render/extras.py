"""What round 4 draws in a bubble chat (``Round4`` in script.py): a link's
preview card (WhatsApp over the text, Telegram under it), a text whose URL
is in the link colour, Messenger's reply label with the quoted message's
faded bubble over the reply, a sticker, and the typing indicator as each app
draws it. None of it is text of a message: the card, the label and the
typing dots are the app's (chrome)."""

from __future__ import annotations

from .apps import App
from .canvas import RGB, Canvas, mix, quote_text
from .frame import avatar

Box = tuple[float, float, float, float]  # dp

# the height a card adds to its bubble (WhatsApp: over the text; Telegram:
# under it, the time on a row of its own under the card)
LINK_CARD_H = {"whatsapp": 72.0, "telegram": 66.0}
LINK_CARD_W = 250.0
TYPING_APPS = ("whatsapp", "telegram", "imessage", "messenger", "line")


def link_colour(app: App) -> RGB:
    return (39, 124, 214) if app.theme == "light" else (98, 180, 245)


def link_card(
    c: Canvas,
    app: App,
    x1: float,
    x2: float,
    top: float,
    link: tuple[str, str, str],
    bubble: RGB,
    fg: RGB,
) -> tuple[list[str], Box | None]:
    """The card of ``link`` (title, site, domain) from ``top``: its texts,
    and its picture's box (WhatsApp's thumbnail: drawn, no text)."""
    title, site, domain = link
    grey = mix(fg, bubble, 0.4)
    if app.name == "whatsapp":  # a tinted box: the thumbnail, then title, site, domain
        card = mix(bubble, (0, 0, 0) if app.theme == "light" else (255, 255, 255), 0.07)
        c.rect((x1 + 3, top, x2 - 3, top + 64), card, 6)
        c.rect((x1 + 3, top, x1 + 67, top + 64), (96, 150, 210), 6)
        c.circle(x1 + 48, top + 18, 7, (250, 220, 120))
        c.poly([(x1 + 3, top + 64), (x1 + 30, top + 30), (x1 + 60, top + 64)], (60, 110, 70))
        width = x2 - x1 - 86
        shown = quote_text(c, title, width)
        c.text(x1 + 75, top + 7, shown, 13, fg, bold=True)
        c.text(x1 + 75, top + 27, site, 12, grey)
        c.text(x1 + 75, top + 45, domain, 11.5, grey)
        return [shown, site, domain], (x1 + 3, top, x1 + 67, top + 64)
    # Telegram: an accent bar, the site's name, the title, the domain
    c.rect((x1 + 10, top, x1 + 12.5, top + 56), app.accent, 1)
    c.text(x1 + 20, top + 1, site, 13, app.accent, bold=True)
    shown = quote_text(c, title, x2 - x1 - 34)
    c.text(x1 + 20, top + 20, shown, 13, fg, bold=True)
    c.text(x1 + 20, top + 38, domain, 12.5, fg)
    return [site, shown, domain], None


def text_line(
    c: Canvas, x: float, y: float, line: str, size: float, fg: RGB, link: RGB, in_url: bool
) -> bool:
    """One row of a text with a URL: from "http" on (or all of it, once
    in the URL) in the link colour. Returns whether the URL goes on."""
    if not in_url and "http" not in line:
        c.text(x, y, line, size, fg)
        return False
    cut = 0 if in_url else line.index("http")
    if cut:
        c.text(x, y, line[:cut], size, fg)
    c.text(x + c.length(line[:cut], size), y, line[cut:], size, link)
    return True


def messenger_reply(
    c: Canvas, app: App, left: bool, label: str, quoted: str, margin: float, y: float
) -> float:
    """Messenger: "You replied to Emma" (an arrow and the label, small and
    grey), then the quoted message's faded bubble, which the reply's bubble
    overlaps. Returns where the reply's bubble starts."""
    lw = c.length(label, 11.5) + 14
    lx = margin + 4 if left else 360 - margin - lw
    c.line([(lx + 8, y + 3), (lx + 2, y + 8), (lx + 8, y + 13)], app.time_fg, 1.1)
    c.text(lx + 12, y, label, 11.5, app.time_fg)
    y += 18
    qw = c.length(quoted, 13) + 20
    qx = margin if left else 360 - margin - qw
    c.rect((qx, y, qx + qw, y + 38), mix(app.talker_bubble, (200, 200, 200), 0.3), app.radius)
    c.text(qx + 10, y + 7, quoted, 13, app.sub_fg)
    return y + 30


def sticker(c: Canvas, x: float, y: float, ch: str) -> None:
    """A sticker: a big picture with no bubble (an emoji of the colour font)."""
    c.emoji(x + 5, y + 5, ch.replace("\ufe0f", ""), 100)


def typing(c: Canvas, app: App, y: float) -> Box:
    """Three dots in a talker's bubble, as the app draws it: LINE and
    Messenger with the talker's avatar, iMessage with its two little
    circles, WhatsApp and Telegram with a tail. Returns its bubble's box."""
    x1 = 8.0 + (34 if app.avatars else 0)
    bubble = app.talker_bubble
    if app.avatars == "talker":
        avatar(c, 22, y + 28, 14, "", (170, 175, 185), letters=False)
    c.rect((x1, y + 8, x1 + 58, y + 42), bubble, app.radius)
    if app.name == "imessage":
        c.circle(x1 + 3, y + 40, 5, bubble)
        c.circle(x1 - 3, y + 47, 2.5, bubble)
    elif app.name in ("whatsapp", "telegram"):
        c.poly([(x1 + 4, y + 8), (x1 - 7, y + 8), (x1 + 4, y + 19)], bubble)
    for i in range(3):
        shade = 0.35 + 0.15 * i  # the animation's frame: one dot darker
        c.circle(x1 + 17 + 12 * i, y + 25, 3.6, mix(app.talker_fg, bubble, shade))
    return (x1, y + 8, x1 + 58, y + 42)
