"""The drawing surface: a 2x canvas in dp, fonts (Noto CJK, Noto Color
Emoji, DejaVu Sans Mono), text with emoji, wrapping, colours, the scale down
to the final image and a dp box in its pixels."""

from __future__ import annotations

import math
import re

from PIL import Image, ImageDraw, ImageFont

CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-{}.ttc"
EMOJI = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"  # code blocks (variety only)
SC = 2  # Noto Sans CJK SC in the collection
RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

_TOKEN = re.compile(r"[A-Za-z0-9:.,!?'@#%&$-]+|\s+|.", re.S)


def is_emoji(ch: str) -> bool:
    o = ord(ch)
    return o >= 0x1F000 or 0x2600 <= o <= 0x27BF or o == 0xFE0F


class Canvas:
    """A 2x canvas in dp units (1 dp = width / 360 of the final image)."""

    def __init__(self, width: int, height: int, bg: RGB) -> None:
        self.width, self.height = width, height
        self.k = 2 * width / 360
        self.image = Image.new("RGB", (2 * width, 2 * height), bg)
        self.draw = ImageDraw.Draw(self.image)
        self._fonts: dict[tuple[str, float], ImageFont.FreeTypeFont] = {}
        self._emoji = ImageFont.truetype(EMOJI, 109)
        self.h_dp = height * 360 / width

    def px(self, v: float) -> int:
        return round(v * self.k)

    def font(self, size: float, bold: bool = False) -> ImageFont.FreeTypeFont:
        key = ("Bold" if bold else "Regular", size)
        if key not in self._fonts:
            self._fonts[key] = ImageFont.truetype(CJK.format(key[0]), self.px(size), index=SC)
        return self._fonts[key]

    def length(self, text: str, size: float, bold: bool = False) -> float:
        """Width in dp."""
        f = self.font(size, bold)
        total = 0.0
        for ch_run, emoji in runs(text):
            total += (
                len(ch_run.replace("\ufe0f", "")) * size * 1.15
                if emoji
                else f.getlength(ch_run) / self.k
            )
        return total

    def text(
        self, x: float, y: float, text: str, size: float, fill: RGB, bold: bool = False
    ) -> None:
        """Text with its top at y (dp), emoji drawn from the colour font."""
        f = self.font(size, bold)
        cx = x
        for run, emoji in runs(text):
            if emoji:
                for ch in run.replace("\ufe0f", ""):
                    self.emoji(cx, y + size * 0.1, ch, size * 1.1)
                    cx += size * 1.15
            else:
                self.draw.text((self.px(cx), self.px(y)), run, font=f, fill=fill, anchor="la")
                cx += f.getlength(run) / self.k

    def emoji(self, x: float, y: float, ch: str, size: float) -> None:
        tile = Image.new("RGBA", (140, 140))
        ImageDraw.Draw(tile).text((0, 0), ch, font=self._emoji, embedded_color=True)
        box = tile.getbbox()
        if box is None:
            return
        tile = tile.crop(box)
        side = self.px(size)
        tile = tile.resize((side, round(side * tile.height / tile.width)), Image.Resampling.LANCZOS)
        self.image.paste(tile, (self.px(x), self.px(y)), tile)

    def rect(self, box: tuple[float, float, float, float], fill: RGB, r: float = 0) -> None:
        xy = [self.px(v) for v in box]
        if r:
            self.draw.rounded_rectangle(xy, radius=self.px(r), fill=fill)
        else:
            self.draw.rectangle(xy, fill=fill)

    def circle(self, cx: float, cy: float, r: float, fill: RGB) -> None:
        self.draw.ellipse(
            [self.px(cx - r), self.px(cy - r), self.px(cx + r), self.px(cy + r)], fill=fill
        )

    def poly(self, points: list[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon([(self.px(x), self.px(y)) for x, y in points], fill=fill)

    def line(self, points: list[tuple[float, float]], fill: RGB, w: float) -> None:
        self.draw.line(
            [(self.px(x), self.px(y)) for x, y in points],
            fill=fill,
            width=max(1, self.px(w)),
            joint="curve",
        )

    def final(self) -> Image.Image:
        return self.image.resize((self.width, self.height), Image.Resampling.LANCZOS)

    def box(self, b: tuple[float, float, float, float]) -> list[int]:
        """A dp box → the final image's pixels."""
        s = self.k / 2
        return [
            math.floor(b[0] * s),
            math.floor(b[1] * s),
            math.ceil(b[2] * s),
            math.ceil(b[3] * s),
        ]


def runs(text: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for ch in text:
        e = is_emoji(ch)
        if out and out[-1][1] == e:
            out[-1] = (out[-1][0] + ch, e)
        else:
            out.append((ch, e))
    return out


def wrap(c: Canvas, text: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for token in _TOKEN.findall(text):
        candidate = line + token
        if line and c.length(candidate.rstrip(), size) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.rstrip())
    return lines


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def quote_text(c: Canvas, text: str, width: float) -> str:
    """A quoted message as its bubble shows it: cut at 28 characters, then
    shortened until it fits ``width`` dp (28 CJK characters are ~400 dp, wider
    than the screen: seed 23 drew a bubble from x = -144 px)."""
    out = text if len(text) < 30 else text[:28] + "…"
    while c.length(out, 13) > width and len(out) > 2:
        out = out.rstrip("…")[:-1].rstrip() + "…"
    return out
