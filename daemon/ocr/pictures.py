"""Pictures in a chat screenshot: photos, stickers, emoji-only bubbles; no I/O.

A stage of ``daemon/ocr/layout.py``'s ``read``, after the text inside the
bubbles is read: what the pixels show where PP-OCR reads nothing (or only
a time on a picture). Sizes in dp, 1 dp = width / 360 px.
"""

from __future__ import annotations

from daemon.ocr import chrome, marks, words
from daemon.ocr import pixels as px
from daemon.ocr.bubble import Bubble
from daemon.ocr.screen import Screen


def place(s: Screen) -> None:
    """A bubble with no text: a lone time in its corner is its time, and
    it takes its picture's box (a photo, or an emoji-only ``sticker``); a
    text bubble with a photo above its rows is a captioned photo; a picture
    region that holds no text and is no avatar, pill, reaction, typing
    indicator or cut region is a bubble of its own."""
    image, dp, paper, messages = s.image, s.dp, s.paper, s.messages
    chat_top = max([ln.box[3] for ln in s.header + s.frame.status] + [0]) + 2 * dp
    blobs, cut = px.regions(image, round(min(chat_top, s.limit)), round(s.frame.bottom), paper)
    for bubble in messages:
        if (
            bubble.kind == "text"
            and bubble.time is None
            and words.is_time(bubble.text)
            and bubble.lines
            and max(ln.box[2] for ln in bubble.lines) - min(ln.box[0] for ln in bubble.lines)
            < 0.5 * (bubble.box[2] - bubble.box[0])
        ):
            # A lone time in a corner (on a picture, beside or under an emoji
            # PP-OCR cannot read): the time. One that fills its bubble is the
            # message ("10:30" to "What time?").
            bubble.time = words.split_time(bubble.text)[1]
            bubble.text = ""
        if bubble.text and bubble.kind == "text" and bubble.lines and not bubble.preview:
            top = min(ln.box[1] for ln in s.rows[id(bubble)][0]) if s.rows[id(bubble)] else 0
            above = (bubble.box[0], bubble.box[1], bubble.box[2], round(top - 4 * dp))
            if top - bubble.box[1] >= 80 * dp and px.picture(image, above, paper) == "photo":
                bubble.kind = "photo"  # its caption is its text (WhatsApp)
        if bubble.text or bubble.kind != "text":
            continue
        bubble.kind = "sticker"
        for box in blobs:
            if px.overlap(bubble.box, box) > 0.8:
                # Other bubbles in the region (a reaction's pill joins them): it is
                # this bubble's picture only between them, and only if a photo.
                others = [b for b in messages if b is not bubble and px.overlap(b.box, box) > 0.5]
                upper = max([box[1]] + [b.box[3] for b in others if b.box[3] <= bubble.box[1]])
                lower = min([box[3]] + [b.box[1] for b in others if b.box[1] >= bubble.box[3]])
                own = (box[0], upper, box[2], lower)
                if px.overlap(own, bubble.box) < 0.75 and (
                    not others or px.picture(image, own, paper) == "photo"
                ):
                    bubble.box = own
                bubble.kind = px.picture(image, bubble.box, paper)
                break
    for box in blobs:
        avatar = max(box[2] - box[0], box[3] - box[1]) <= 50 * dp and (
            box[0] < 14 * dp or box[2] > s.width - 14 * dp
        )
        if (
            avatar
            or chrome.pill(Bubble(box=box), s.width, s.typical)
            or chrome.reaction(box, messages, dp)
        ):
            continue
        if marks.typing_dots(image, box):  # someone is typing: nothing sent yet
            continue
        if any(
            px.overlap(box, b.box) > 0.2 or px.overlap(b.box, box) > 0.2 for b in messages + s.cut
        ):
            continue
        around = any(px.overlap(b.box, box) > 0.5 for b in s.inside)  # a cut reply's quote
        if around or px.on_bar(image, box, paper):  # cut by a bar: not sure what it is
            held = [ln for ln in s.loose if px.overlap(ln.box, box) > 0.5]
            s.dropped += len(held)
            s.loose = [ln for ln in s.loose if ln not in held]
            continue
        if any(px.contains(box, ln.box, slack=0) for ln in s.loose):
            continue  # text no fill could follow: read below
        messages.append(Bubble(box=box, kind=px.picture(image, box, paper)))
    for box in cut:  # a picture a bar cuts: not sure what it is, counted
        if not any(
            px.overlap(box, b.box) > 0.2 or px.overlap(b.box, box) > 0.2 for b in messages + s.cut
        ):
            held = [ln for ln in s.loose if px.overlap(ln.box, box) > 0.5]
            s.dropped += max(1, len(held))
            s.loose = [ln for ln in s.loose if ln not in held]
