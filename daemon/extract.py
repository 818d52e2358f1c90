"""Model text → validated, sorted MergeStep; no I/O.

What a model answers is text: often a Markdown fence around the JSON, often
prose before or after it. The first JSON object in the text is parsed (a
``{`` that does not start a valid object is skipped), then checked against
SPEC §3; any failure is ``StrategyError("invalid_output", <what is wrong>)``
and the race goes on without this result.

Accepted: extra fields (ignored), a ``conversation`` the model wrote (replaced
by one derived from the bubbles), ``summary`` absent or null. Rejected:
anything that is not strict JSON (trailing commas, NaN, single quotes,
truncation), a layout that puts one speaker on both sides, a bubble on the
side its speaker is not, a box that is not four integers with
``0 <= x1 < x2`` and ``0 <= y1 < y2``, empty text in a ``kind: "text"``
bubble (a photo, voice, sticker or file bubble may have none), more than 500
bubbles. The optional fields (``kind``, ``sender``, ``time``, ``quote``,
``participants.group``) are checked when given; a null one is dropped (a
quote with a sender and no text is kept: the quote of an emoji or a photo).
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec
from msgspec import UNSET

from daemon.errors import StrategyError
from daemon.models import (
    Bubble,
    Kind,
    Layout,
    MergeStep,
    Message,
    Participants,
    Quote,
    Side,
    Speaker,
)

MAX_BUBBLES: Final = 500
# Characters of model text looked at. An answer is capped by the strategy's
# max_tokens (8192 by default: ~40,000 characters); 500 bubbles of 120
# characters fit too. Parsing this much JSON takes a few ms at worst (a long
# list of numbers), and SCAN_BUDGET allows two such passes: that bounds how
# long one answer can hold the event loop (bench/extract_bench.py).
MAX_TEXT: Final = 128 * 1024
# Characters the JSON parser may walk over, all attempts together: an
# attempt is charged what it read (up to where it failed; the rest of the
# text when that is not known), so stray braces in prose cost little and a
# crafted answer cannot make 64 attempts read 2 MB each.
SCAN_BUDGET: Final = 2 * MAX_TEXT
MAX_ATTEMPTS: Final = 256  # ``{`` positions tried at most


class _RawQuote(msgspec.Struct):
    text: str
    sender: str | None = None


class _RawBubble(msgspec.Struct):
    speaker: Speaker
    side: Side
    bbox: tuple[int, int, int, int]
    text: str
    kind: Kind | None = None
    sender: str | None = None
    time: str | None = None
    quote: _RawQuote | None = None


class _RawParticipants(msgspec.Struct):
    user: str | None = None
    talker: str | None = None
    group: str | None = None


class _RawStep(msgspec.Struct):
    participants: _RawParticipants
    layout: Layout
    bubbles: list[_RawBubble]
    summary: str | None = None


def _given(value: str | None) -> str | msgspec.UnsetType:
    """A model's optional string: absent when null or blank."""
    if value is None:
        return UNSET
    value = value.strip()
    return value if value else UNSET


def _bubble(raw: _RawBubble, text: str) -> Bubble:
    quote = raw.quote
    quoted = UNSET if quote is None else _given(quote.text)
    quoter = None if quote is None else (quote.sender or "").strip() or None
    return Bubble(
        speaker=raw.speaker,
        side=raw.side,
        bbox=raw.bbox,
        text=text,
        kind=UNSET if raw.kind is None else raw.kind,
        sender=_given(raw.sender),
        time=_given(raw.time),
        quote=UNSET  # a quote of what has no text (an emoji, a photo) is its sender alone
        if quote is None or (isinstance(quoted, msgspec.UnsetType) and quoter is None)
        else Quote(sender=quoter, text="" if isinstance(quoted, msgspec.UnsetType) else quoted),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER: Final = msgspec.json.Encoder()


def first_json_object(text: str) -> tuple[dict[str, Any], str | None]:
    """The first complete JSON object in ``text`` (fence and prose around it
    allowed), and the parse error of a broken object met before it, if any.

    After a ``{`` that does not parse, the search goes on after the point
    where parsing failed, so the inner objects of a truncated answer are not
    mistaken for the answer's start. Only the first ``MAX_TEXT`` characters
    are looked at, and the parser walks over at most ``SCAN_BUDGET`` of them
    in all, so no answer holds the event loop for long."""
    looked_at = text[:MAX_TEXT]
    start = looked_at.find("{")
    budget = SCAN_BUDGET
    first_error: str | None = None
    attempts = 0
    while start >= 0 and budget > 0 and attempts < MAX_ATTEMPTS:
        attempts += 1
        try:
            value, _ = _DECODER.raw_decode(looked_at, start)
        except json.JSONDecodeError as exc:
            # The parser stopped at exc.pos; an unterminated string is
            # reported where it starts but was read to the end.
            read_to = len(looked_at) if exc.msg.startswith("Unterminated") else exc.pos
            budget -= max(read_to - start, 1)
            first_error = first_error or f"not valid JSON at character {exc.pos}: {exc.msg}"
            start = looked_at.find("{", max(start + 1, exc.pos))
            continue
        except (ValueError, RecursionError) as exc:
            budget -= len(looked_at) - start  # where it failed is not known
            first_error = first_error or f"not valid JSON at character {start}: {exc}"
        else:
            if isinstance(value, dict):
                return value, first_error
        start = looked_at.find("{", start + 1)
    if len(text) > MAX_TEXT:
        first_error = (
            f"no JSON object in the first {MAX_TEXT} characters of a "
            f"{len(text)}-character answer" + (f" ({first_error})" if first_error else "")
        )
    raise StrategyError("invalid_output", first_error or "no JSON object in the model's answer")


def parse_merge_step(text: str) -> MergeStep:
    """Validate the model's answer and return it sorted top to bottom.

    Raises StrategyError("invalid_output", ...) naming the first problem."""
    data, broken_before = first_json_object(text)
    try:  # a lone surrogate ("\\ud83d": half an emoji) can be neither stored nor sent
        _ENCODER.encode(data)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
        raise StrategyError("invalid_output", f"text that is not Unicode: {bad}") from None
    try:
        raw = msgspec.convert(data, _RawStep, strict=True)
    except msgspec.ValidationError as exc:
        # An object found after a broken one is most likely a piece of it:
        # the parse error says better what went wrong.
        raise StrategyError("invalid_output", broken_before or str(exc)) from None
    layout = raw.layout
    if layout.left == layout.right:
        raise StrategyError("invalid_output", f"layout puts {layout.left} on both sides")
    if len(raw.bubbles) > MAX_BUBBLES:
        raise StrategyError(
            "invalid_output", f"{len(raw.bubbles)} bubbles; at most {MAX_BUBBLES} allowed"
        )
    bubbles = []
    for i, bubble in enumerate(raw.bubbles):
        x1, y1, x2, y2 = bubble.bbox
        if not (0 <= x1 < x2 and 0 <= y1 < y2):
            raise StrategyError(
                "invalid_output", f"bubble {i}: bbox {list(bubble.bbox)} is not a box"
            )
        if bubble.side != layout.side_of(bubble.speaker):
            raise StrategyError(
                "invalid_output",
                f"bubble {i}: {bubble.speaker} on the {bubble.side}, "
                f"but the layout puts {bubble.speaker} on the {layout.side_of(bubble.speaker)}",
            )
        text_ = bubble.text.strip()
        if not text_ and bubble.kind in (None, "text"):
            raise StrategyError("invalid_output", f"bubble {i}: empty text")
        bubbles.append(_bubble(bubble, text_))
    bubbles.sort(key=lambda b: (b.bbox[1], b.bbox[0]))
    people = raw.participants
    return MergeStep(
        participants=Participants(
            user=people.user, talker=people.talker, group=_given(people.group)
        ),
        layout=layout,
        bubbles=bubbles,
        conversation=[message_of(b) for b in bubbles],
        summary=raw.summary,
    )


def message_of(bubble: Bubble) -> Message:
    """The ``conversation`` entry derived from a bubble."""
    return Message(speaker=bubble.speaker, text=bubble.text, sender=bubble.sender, kind=bubble.kind)


def parse_completion(
    text: str,
    image_size: tuple[int, int] | None = None,
    original_size: tuple[int, int] | None = None,
) -> MergeStep:
    """``parse_merge_step`` of a model's answer about an image of a known size.

    ``image_size`` is the image as the model saw it (``Completion.image_size``),
    ``original_size`` the screenshot's (``Completion.original_size``): a box
    reaching outside the image seen is invalid output; the boxes are then
    scaled back to the original's pixels (rounded, within the image) and the
    bubbles sorted again. Without sizes this is ``parse_merge_step``."""
    step = parse_merge_step(text)
    if image_size is None:
        return step
    width, height = image_size
    for i, bubble in enumerate(step.bubbles):
        if bubble.bbox[2] > width or bubble.bbox[3] > height:
            raise StrategyError(
                "invalid_output",
                f"bubble {i} (top to bottom): bbox {list(bubble.bbox)} is outside "
                f"the {width}x{height} image",
            )
    if original_size is None or original_size == image_size:
        return step
    to_width, to_height = original_size
    sx, sy = to_width / width, to_height / height

    def scaled(bubble: Bubble) -> Bubble:
        x1, y1, x2, y2 = bubble.bbox
        box = (
            min(to_width, int(x1 * sx + 0.5)),
            min(to_height, int(y1 * sy + 0.5)),
            min(to_width, int(x2 * sx + 0.5)),
            min(to_height, int(y2 * sy + 0.5)),
        )
        return msgspec.structs.replace(bubble, bbox=box)

    pairs = sorted(
        ((scaled(b), m) for b, m in zip(step.bubbles, step.conversation, strict=True)),
        key=lambda pair: (pair[0].bbox[1], pair[0].bbox[0]),
    )
    return msgspec.structs.replace(
        step, bubbles=[b for b, _ in pairs], conversation=[m for _, m in pairs]
    )
