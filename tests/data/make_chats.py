"""Render synthetic chat screenshots with their ground truth.

    .venv/bin/python tests/data/make_chats.py            # writes tests/data/chats/
    .venv/bin/python tests/data/make_chats.py --examples # writes examples/

Each ``NN-<scheme>-<width>.png`` comes with ``NN-<scheme>-<width>.json``:
the truth the quality test (tests/test_ocr_quality.py) scores against::

    {"width", "height", "scheme", "user_side": "right", "talker": str | null,
     "bubbles": [{"speaker", "side", "bbox": [x1, y1, x2, y2], "text"}],
     "timestamps": [str, ...]}

The screenshots are committed, so tests need no font; this script needs
Pillow (in the ``ocr`` extra) and CJK fonts (Debian: ``apt install
fonts-noto-cjk fonts-wqy-microhei``). Output is deterministic for a given
seed, Pillow and font version.

What is drawn, in density-independent units (dp; 1 dp = width / 360 px):
a status bar (clock, battery), a title bar with the talker's name (left out
on one in five), avatars (on two schemes of four), user bubbles that fade
from one colour to another (one scheme), one- and multi-line
bubbles on both sides with Chinese, English and mixed text, timestamps
centred between bubbles, and an empty input bar at the bottom.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
FONTS = {
    "noto": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "wqy": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
}

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Scheme:
    name: str
    font: str
    background: RGB
    bar: RGB  # status and title bar
    bar_text: RGB
    talker_bubble: RGB
    talker_text: RGB
    user_bubble: RGB
    user_text: RGB
    stamp_text: RGB
    avatars: bool
    radius_dp: float
    user_gradient: RGB | None = None  # the user bubble fades to this colour, top to bottom


SCHEMES = [
    Scheme(
        name="wechat",
        font="noto",
        background=(237, 237, 237),
        bar=(237, 237, 237),
        bar_text=(25, 25, 25),
        talker_bubble=(255, 255, 255),
        talker_text=(25, 25, 25),
        user_bubble=(149, 236, 105),
        user_text=(25, 25, 25),
        stamp_text=(160, 160, 160),
        avatars=True,
        radius_dp=4,
    ),
    Scheme(
        name="imessage",
        font="wqy",
        background=(255, 255, 255),
        bar=(246, 246, 246),
        bar_text=(0, 0, 0),
        talker_bubble=(233, 233, 235),
        talker_text=(0, 0, 0),
        user_bubble=(11, 132, 254),
        user_text=(255, 255, 255),
        stamp_text=(142, 142, 147),
        avatars=False,
        radius_dp=16,
    ),
    Scheme(
        name="dark",
        font="noto",
        background=(11, 20, 26),
        bar=(32, 44, 51),
        bar_text=(233, 237, 239),
        talker_bubble=(32, 44, 51),
        talker_text=(233, 237, 239),
        user_bubble=(0, 92, 75),
        user_text=(233, 237, 239),
        stamp_text=(134, 150, 160),
        avatars=True,
        radius_dp=8,
    ),
    Scheme(
        name="gradient",
        font="wqy",
        background=(250, 250, 252),
        bar=(255, 255, 255),
        bar_text=(20, 20, 20),
        talker_bubble=(236, 236, 240),
        talker_text=(20, 20, 20),
        user_bubble=(40, 130, 255),
        user_text=(255, 255, 255),
        stamp_text=(140, 140, 150),
        avatars=False,
        radius_dp=18,
        user_gradient=(110, 80, 230),
    ),
]

TALKERS = ["张伟", "Alice", "李娜", "Tom Baker", "妈妈", "王老师", "Sophie", "陈晨"]

MESSAGES = [
    "你好",
    "在吗？",
    "好的",
    "哈哈哈",
    "收到，谢谢！",
    "明天一起吃饭吗？",
    "我刚到公司，等会儿给你回电话",
    "周末天气不错，要不要去爬山？我查了一下，周六上午没有雨。",
    "这个方案我看过了，整体没问题，就是预算那部分还需要再确认一下数字。",
    "晚上七点在老地方见",
    "记得带伞，下午可能会下雨",
    "文件已经发到你邮箱了，麻烦查收一下",
    "OK",
    "Thanks!",
    "See you tomorrow",
    "Are you free this weekend?",
    "I just landed, will call you in ten minutes.",
    "Can you send me the slides from this morning? "
    "I want to go over them again before the meeting.",
    "Running a bit late, sorry! Traffic is terrible today.",
    "Sounds good to me",
    "Let me check my calendar and get back to you tonight.",
    "Happy birthday! Hope you have a wonderful day.",
    "明天 3pm 在 Starbucks 见",
    "我买了两张 Friday 晚上的电影票",
    "订单号是 20261129，已经发货了",
    "Meeting moved to 4:30, room B2",
]

STAMPS = [
    "9:41",
    "10:23",
    "昨天 21:15",
    "Yesterday 9:02 PM",
    "星期三 08:30",
    "2026年11月3日 14:20",
    "Mon 14:05",
    "下午 3:12",
]

_TOKEN = re.compile(r"[A-Za-z0-9:.,!?'@#%&$-]+|\s+|.", re.S)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy wrap: Latin words stay whole, CJK breaks anywhere; a space at
    a break is dropped, as chat apps do."""
    lines: list[str] = []
    line = ""
    for token in _TOKEN.findall(text):
        candidate = line + token
        if line and font.getlength(candidate.rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.rstrip())
    return lines


class Painter:
    def __init__(self, scheme: Scheme, width: int, rng: random.Random) -> None:
        self.scheme = scheme
        self.width = width
        self.dp = width / 360
        self.height = round(640 * self.dp)
        self.rng = rng
        self.image = Image.new("RGB", (width, self.height), scheme.background)
        self.draw = ImageDraw.Draw(self.image)
        path = FONTS[scheme.font]
        self.text_font = ImageFont.truetype(path, round(15 * self.dp))
        self.small_font = ImageFont.truetype(path, round(11.5 * self.dp))
        self.title_font = ImageFont.truetype(path, round(16.5 * self.dp))
        self.status_font = ImageFont.truetype(path, round(12 * self.dp))

    def px(self, dp: float) -> int:
        return round(dp * self.dp)

    def bars(self, talker: str | None) -> int:
        """Status bar, title bar; returns the y where the chat starts."""
        s, d = self.scheme, self.draw
        d.rectangle((0, 0, self.width, self.px(72)), fill=s.bar)
        d.text((self.px(16), self.px(5)), "9:41", font=self.status_font, fill=s.bar_text)
        battery = f"{self.rng.randint(20, 100)}%"
        d.text(
            (self.width - self.px(16), self.px(5)),
            battery,
            font=self.status_font,
            fill=s.bar_text,
            anchor="ra",
        )
        # back chevron and menu dots, drawn, not text
        cy = self.px(48)
        d.line(
            [(self.px(22), cy - self.px(7)), (self.px(15), cy), (self.px(22), cy + self.px(7))],
            fill=s.bar_text,
            width=max(2, self.px(1.5)),
        )
        for i in range(3):
            x = self.width - self.px(30) + i * self.px(6)
            d.ellipse((x, cy - 2, x + self.px(3), cy - 2 + self.px(3)), fill=s.bar_text)
        if talker is not None:
            d.text((self.width / 2, cy), talker, font=self.title_font, fill=s.bar_text, anchor="mm")
        return self.px(72)

    def input_bar(self) -> int:
        """The input bar at the bottom; returns the y where it starts."""
        s, d = self.scheme, self.draw
        top = self.height - self.px(52)
        d.rectangle((0, top, self.width, self.height), fill=s.bar)
        field = s.talker_bubble if s.name != "wechat" else (255, 255, 255)
        d.rounded_rectangle(
            (self.px(44), top + self.px(9), self.width - self.px(44), self.height - self.px(9)),
            radius=self.px(6),
            fill=field,
        )
        return top

    def stamp(self, y: int, text: str) -> int:
        self.draw.text(
            (self.width / 2, y),
            text,
            font=self.small_font,
            fill=self.scheme.stamp_text,
            anchor="mt",
        )
        box = self.draw.textbbox((self.width / 2, y), text, font=self.small_font, anchor="mt")
        return int(box[3])

    def bubble_size(self, text: str) -> tuple[list[str], int, int]:
        max_text = self.px(226)
        lines = wrap(text, self.text_font, max_text)
        text_w = max(self.text_font.getlength(line) for line in lines)
        w = round(text_w) + 2 * self.px(11)
        h = len(lines) * self.px(21) + 2 * self.px(9)
        return lines, w, h

    def gradient_box(
        self, box: tuple[int, int, int, int], radius: int, top: RGB, bottom: RGB
    ) -> None:
        """A rounded box whose colour fades from ``top`` to ``bottom``: no flat
        region to find it by, as in newer messaging apps."""
        x1, y1, x2, y2 = box
        fade = Image.new("RGB", (x2 - x1, y2 - y1))
        rows = ImageDraw.Draw(fade)
        for row in range(y2 - y1):
            t = row / max(1, y2 - y1 - 1)
            colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            rows.line([(0, row), (x2 - x1, row)], fill=colour)
        mask = Image.new("L", fade.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, x2 - x1 - 1, y2 - y1 - 1), radius, fill=255)
        self.image.paste(fade, (x1, y1), mask)

    def bubble(self, y: int, side: str, lines: list[str], w: int, h: int) -> list[int]:
        s, d = self.scheme, self.draw
        margin = self.px(54) if s.avatars else self.px(12)
        x1 = margin if side == "left" else self.width - margin - w
        talker = side == "left"
        fill = s.talker_bubble if talker else s.user_bubble
        ink = s.talker_text if talker else s.user_text
        if s.avatars:
            ax = self.px(10) if talker else self.width - self.px(46)
            colour = (120, 160, 210) if talker else (230, 160, 90)
            d.rounded_rectangle(
                (ax, y, ax + self.px(36), y + self.px(36)), radius=self.px(4), fill=colour
            )
        radius = self.px(s.radius_dp)
        if s.user_gradient is not None and not talker:
            self.gradient_box((x1, y, x1 + w, y + h), radius, fill, s.user_gradient)
        else:
            d.rounded_rectangle((x1, y, x1 + w, y + h), radius=radius, fill=fill)
        for i, line in enumerate(lines):
            d.text(
                (x1 + self.px(11), y + self.px(9) + i * self.px(21) + self.px(10.5)),
                line,
                font=self.text_font,
                fill=ink,
                anchor="lm",
            )
        return [x1, y, x1 + w, y + h]


def render(
    index: int, scheme: Scheme, width: int, seed: int
) -> tuple[Image.Image, dict[str, object]]:
    rng = random.Random(seed)
    painter = Painter(scheme, width, rng)
    talker = None if index % 5 == 4 else rng.choice(TALKERS)
    y = painter.bars(talker) + painter.px(12)
    bottom = painter.input_bar() - painter.px(10)
    bubbles: list[dict[str, object]] = []
    stamps: list[str] = []
    side = rng.choice(["left", "right"])
    messages = rng.sample(MESSAGES, len(MESSAGES))
    first = True
    while True:
        if first or rng.random() < 0.22:
            text = rng.choice(STAMPS)
            end = painter.stamp(y, text)
            if end + painter.px(60) > bottom:
                break
            stamps.append(text)
            y = end + painter.px(12)
        first = False
        if rng.random() < 0.45:
            side = "right" if side == "left" else "left"
        if not messages:
            break
        text = messages.pop()
        lines, w, h = painter.bubble_size(text)
        if y + max(h, painter.px(36)) > bottom:
            break
        box = painter.bubble(y, side, lines, w, h)
        bubbles.append(
            {
                "speaker": "talker" if side == "left" else "user",
                "side": side,
                "bbox": box,
                "text": text,
            }
        )
        y += max(h, painter.px(36) if scheme.avatars else 0) + painter.px(12)
    truth: dict[str, object] = {
        "width": width,
        "height": painter.height,
        "scheme": scheme.name,
        "user_side": "right",
        "talker": talker,
        "bubbles": bubbles,
        "timestamps": stamps,
    }
    return painter.image, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "chats")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--examples", action="store_true", help="write examples/ instead")
    args = parser.parse_args()
    if args.examples:
        out = HERE.parent.parent / "examples"
        out.mkdir(exist_ok=True)
        picks = [
            ("chat.png", SCHEMES[0], 720, 7),
            ("chat-imessage.png", SCHEMES[1], 1080, 9),
            ("chat-dark.png", SCHEMES[2], 720, 11),
        ]
        for name, scheme, width, seed in picks:
            image, _ = render(0, scheme, width, args.seed + seed)
            image.save(out / name, optimize=True)
            print(out / name)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        scheme = SCHEMES[i % len(SCHEMES)]
        width = 720 if (i // len(SCHEMES)) % 2 == 0 else 1080
        stem = f"{i:02d}-{scheme.name}-{width}"
        image, truth = render(i, scheme, width, args.seed + i)
        image.save(args.out / f"{stem}.png", optimize=True)
        text = json.dumps(truth, ensure_ascii=False, indent=1)
        (args.out / f"{stem}.json").write_text(text + "\n", encoding="utf-8")
    print(f"{args.count} screenshots in {args.out}")


if __name__ == "__main__":
    main()
