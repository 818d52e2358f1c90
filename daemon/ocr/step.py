"""The MergeStep-shaped dict the local OCR answers with; no I/O.

Part of the local OCR's layout (``daemon/ocr/layout.py``): bubbles (or a
thread's messages) top to bottom, each with its side and speaker (the
user's on ``user_side``), its box clipped to the image, and the optional
fields only when known; the participants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon.ocr import thread
from daemon.ocr.chrome import HEADER_MAX_DP, TOP_BAND_DP, Frame

if TYPE_CHECKING:
    from daemon.ocr.bubble import Bubble, Line, Side
    from daemon.ocr.pixels import Box


def thread_step(
    loose: list[Line],
    x0: float,
    frame: Frame,
    width: int,
    height: int,
    user_side: Side,
    dropped: int,
    avatar: Callable[[Line], bool] | None = None,
    ink: Callable[[float, float], list[Box]] | None = None,
    cards: list[thread.Card] | None = None,
) -> tuple[dict[str, Any], int]:
    """``read`` for a thread without bubbles (``daemon/ocr/thread.py``)."""
    dp = width / 360
    rows = [  # (a private channel's title, pushed right by its lock, may start at the column)
        ln
        for ln in loose
        if abs(ln.box[0] - x0) <= thread.COLUMN_DP * dp and ln.cy > TOP_BAND_DP * dp
    ]
    first = min((ln.box[1] for ln in rows), default=height)
    header = [ln for ln in loose if ln.cy < min(first, HEADER_MAX_DP * dp)]
    body = [ln for ln in loose if ln.cy >= min(first, HEADER_MAX_DP * dp)]
    items, participants, _, more = thread.read(
        body, header, x0, dp, frame.bottom, avatar, ink, cards or []
    )
    talker_side: Side = "left" if user_side == "right" else "right"
    for item in items:
        item["side"] = user_side if item["speaker"] == "user" else talker_side
        x1, y1, x2, y2 = item["bbox"]
        item["bbox"] = [max(0, x1), max(0, y1), min(width, x2), min(height, y2)]
    layout = {user_side: "user", talker_side: "talker"}
    step = {
        "participants": participants,
        "layout": {"left": layout["left"], "right": layout["right"]},
        "bubbles": sorted(items, key=lambda b: (b["bbox"][1], b["bbox"][0])),
        "summary": None,
    }
    return step, dropped + more


def bubbles_step(
    bubbles: list[Bubble], width: int, height: int, user_side: Side, name: str | None, group: bool
) -> dict[str, Any]:
    talker_side: Side = "left" if user_side == "right" else "right"
    out = []
    for bubble in sorted(bubbles, key=lambda b: (b.box[1], b.box[0])):
        x1, y1, x2, y2 = bubble.box
        side: Side = "left" if x1 < width - x2 else "right"
        item: dict[str, Any] = {
            "speaker": "user" if side == user_side else "talker",
            "side": side,
            "bbox": [max(0, x1), max(0, y1), min(width, x2), min(height, y2)],
            "text": bubble.text,
        }
        if bubble.kind != "text":
            item["kind"] = bubble.kind
        for key in ("sender", "time", "quote"):
            if getattr(bubble, key) is not None:
                item[key] = getattr(bubble, key)
        out.append(item)
    layout = {user_side: "user", talker_side: "talker"}
    participants: dict[str, str | None] = {"user": None, "talker": None if group else name}
    if group:
        participants["group"] = name
    return {
        "participants": participants,
        "layout": {"left": layout["left"], "right": layout["right"]},
        "bubbles": out,
        "summary": None,
    }
