"""Model text → MergeStep: what real models answer, good and broken."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from daemon import extract
from daemon.errors import StrategyError
from daemon.extract import first_json_object, parse_merge_step
from daemon.models import Quote


def step(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "participants": {"user": "Zhang", "talker": "徐康"},
        "layout": {"left": "talker", "right": "user"},
        "bubbles": [
            {"speaker": "user", "side": "right", "bbox": [400, 300, 700, 350], "text": "好的"},
            {"speaker": "talker", "side": "left", "bbox": [100, 200, 350, 250], "text": "真的假的"},
        ],
        "summary": None,
    }
    data.update(overrides)
    return data


GOOD = json.dumps(step(), ensure_ascii=False)


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here is the conversation:\n\n```json\n{GOOD}\n```\nLet me know if you need more.",
        f"Sure! {GOOD} Hope this helps.",
        f"Note: use {{curly}} braces carefully.\n{GOOD}",  # a brace that is not JSON first
        f"{GOOD}\n{json.dumps(step(layout={'left': 'user', 'right': 'talker'}))}",  # two objects
        json.dumps({**step(), "conversation": [{"speaker": "user", "text": "wrong"}], "extra": 1}),
        "[" + GOOD + "]",  # the first object, even inside an array
    ],
)
def test_accepted_answers(text: str) -> None:
    result = parse_merge_step(text)
    assert [b.text for b in result.bubbles] == ["真的假的", "好的"]  # sorted top to bottom
    assert [(m.speaker, m.text) for m in result.conversation] == [
        ("talker", "真的假的"),
        ("user", "好的"),
    ]
    assert result.layout.left == "talker"
    assert result.participants.talker == "徐康"


def bubble(**overrides: Any) -> dict[str, Any]:
    return {
        "speaker": "talker",
        "side": "left",
        "bbox": [10, 10, 100, 40],
        "text": "hi",
        **overrides,
    }


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("I cannot read this screenshot.", "no JSON object"),
        (
            '{"participants": {"user": null, "talker": null}, "layout": {"left": "talker",',
            "not valid JSON",
        ),
        (GOOD.replace('"summary": null', '"summary": null,'), "not valid JSON"),  # trailing comma
        (GOOD.replace('"好的"}', '"好的",}'), "not valid JSON"),
        ("{'participants': {}}", "not valid JSON"),
        (json.dumps(step(layout={"left": "user", "right": "user"})), "user on both sides"),
        (json.dumps(step(layout={"left": "talker", "right": "bot"})), "layout.right"),
        (json.dumps(step(bubbles=[bubble(side="right")])), "bubble 0: talker on the right"),
        (json.dumps(step(bubbles=[bubble(text="   ")])), "bubble 0: empty text"),
        (json.dumps(step(bubbles=[bubble(bbox=[-5, 10, 100, 40])])), "is not a box"),
        (json.dumps(step(bubbles=[bubble(bbox=[100, 10, 100, 40])])), "is not a box"),
        (json.dumps(step(bubbles=[bubble(bbox=[10, 50, 100, 40])])), "is not a box"),
        (json.dumps(step(bubbles=[bubble(bbox=[10, 10, 100])])), "bbox"),
        (json.dumps(step(bubbles=[bubble(bbox=[10.5, 10, 100, 40])])), "bbox"),
        (json.dumps(step(bubbles=[bubble(bbox="10,10,100,40")])), "bbox"),
        (json.dumps(step(bubbles=[bubble()] * 501)), "501 bubbles"),
        (
            json.dumps({"layout": {"left": "talker", "right": "user"}, "bubbles": []}),
            "participants",
        ),
        (json.dumps(step(bubbles=[bubble(speaker=None)])), "speaker"),
        ('{"a": NaN}', "not valid JSON"),
    ],
)
def test_rejected_answers(text: str, why: str) -> None:
    with pytest.raises(StrategyError) as info:
        parse_merge_step(text)
    assert info.value.kind == "invalid_output"
    assert why in info.value.detail, info.value.detail


def test_empty_conversation_is_valid() -> None:
    result = parse_merge_step(json.dumps(step(bubbles=[])))
    assert result.bubbles == []
    assert result.conversation == []


def test_ties_sort_by_x() -> None:
    bubbles = [
        bubble(speaker="user", side="right", bbox=[400, 100, 500, 140], text="b"),
        bubble(bbox=[10, 100, 100, 140], text="a"),
    ]
    result = parse_merge_step(json.dumps(step(bubbles=bubbles)))
    assert [b.text for b in result.bubbles] == ["a", "b"]


def test_text_is_stripped() -> None:
    result = parse_merge_step(json.dumps(step(bubbles=[bubble(text="  hi \n")])))
    assert result.bubbles[0].text == "hi"


def test_first_json_object_gives_up_on_garbage() -> None:
    with pytest.raises(StrategyError):
        first_json_object("{" * 10_000)
    assert first_json_object('x {"a": 1} {"b": 2}') == ({"a": 1}, None)


def _nested_then_too_deep(depth: int, length: int) -> str:
    """``depth`` objects opened one in another around a long list that ends
    nested too deep: from every ``{`` the parser reads the whole list before
    it fails (RecursionError), and the search went on at the next ``{``."""
    return '{"a":' * depth + "[" + "1," * (length // 2) + "[" * 100_000


@pytest.mark.parametrize(
    "text",
    [
        _nested_then_too_deep(64, 1_800_000),  # blocked the loop 1.5 s: 64 reads of 2 MB
        '{"a":"' + 'x{"b":' * 400_000,
        "{" * 2_000_000,
        '{"a":' * 400_000,
        "prose " * 400_000 + "{}",
    ],
    ids=["nested-too-deep", "strings", "braces", "deep", "late"],
)
def test_a_crafted_answer_costs_a_bounded_parse(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the answer, the JSON parser walks over at most SCAN_BUDGET
    characters (all attempts together) of the first MAX_TEXT: ~3 ms at worst."""
    scanned = []  # characters each attempt read, as the parser reports it
    real = extract._DECODER.raw_decode

    def counting(s: str, idx: int = 0) -> tuple[object, int]:
        assert len(s) <= extract.MAX_TEXT
        try:
            value, end = real(s, idx)
        except json.JSONDecodeError as exc:
            unterminated = exc.msg.startswith("Unterminated")
            scanned.append((len(s) if unterminated else exc.pos) - idx)
            raise
        except (ValueError, RecursionError):
            scanned.append(len(s) - idx)
            raise
        scanned.append(end - idx)
        return value, end

    monkeypatch.setattr(extract._DECODER, "raw_decode", counting)
    with pytest.raises(StrategyError) as info:
        parse_merge_step(text)
    assert info.value.kind == "invalid_output"
    assert sum(scanned) <= extract.SCAN_BUDGET + extract.MAX_TEXT
    assert len(scanned) <= extract.MAX_ATTEMPTS
    if len(text) > extract.MAX_TEXT:
        assert f"first {extract.MAX_TEXT} characters" in info.value.detail


def test_an_answer_under_max_text_with_prose_after_it_still_parses() -> None:
    answer = GOOD + " and then " + "a lot of prose " * 20_000
    assert len(answer) > extract.MAX_TEXT
    assert len(parse_merge_step(answer).bubbles) == 2


def test_half_an_emoji_is_invalid_output() -> None:
    """A lone surrogate (``\\ud83d``, half of an emoji's pair, which weak
    models emit) could be neither stored nor sent: the store raised
    UnicodeEncodeError after the result was accepted."""
    text = GOOD.replace("真的假的", "\\ud83d")
    with pytest.raises(StrategyError) as info:
        parse_merge_step(text)
    assert info.value.kind == "invalid_output"
    assert "\\ud83d" in info.value.detail


def test_stray_braces_in_prose_do_not_use_up_the_budget() -> None:
    """Each stray ``{`` was charged the whole rest of the answer, so five
    ``{placeholder}`` tokens before a valid 55 KB answer rejected it."""
    bubbles = [
        {"speaker": "talker", "side": "left", "bbox": [1, i, 9, i + 1], "text": "x" * 60}
        for i in range(450)
    ]
    answer = json.dumps(step(bubbles=bubbles))
    prose = "Fill {name}, {date}, {place}, {time} and {topic} as asked. "
    assert len(parse_merge_step(prose * 3 + answer).bubbles) == 450


def test_the_optional_fields_of_spec_3_are_read_checked_and_carried() -> None:
    bubbles = [
        bubble(
            text=" ok ",
            kind="text",
            sender=" Li Wei ",
            time="10:22",
            quote={"sender": "Zhang", "text": " see you "},
        ),
        bubble(bbox=[10, 50, 100, 90], text="", kind="photo", time="10:23"),
        bubble(bbox=[10, 100, 100, 140], text=" ", kind="voice", sender=None, quote=None),
    ]
    people = {"user": "Zhang", "talker": None, "group": " Climbing "}
    result = parse_merge_step(json.dumps(step(participants=people, bubbles=bubbles)))
    first, photo, voice = result.bubbles
    assert (first.kind, first.sender, first.time) == ("text", "Li Wei", "10:22")
    assert first.quote == Quote(sender="Zhang", text="see you")
    assert (photo.kind, photo.text, photo.time) == ("photo", "", "10:23")
    assert voice.sender is UNSET
    assert voice.quote is UNSET
    assert result.participants.group == "Climbing"
    assert [(m.sender, m.kind) for m in result.conversation] == [
        ("Li Wei", "text"),
        (UNSET, "photo"),
        (UNSET, "voice"),
    ]
    wire = msgspec.json.decode(msgspec.json.encode(result))
    assert "sender" not in wire["bubbles"][2]
    assert "kind" in wire["bubbles"][2]


def test_a_step_without_the_optional_fields_encodes_as_before() -> None:
    result = parse_merge_step(GOOD)
    wire = msgspec.json.decode(msgspec.json.encode(result))
    assert set(wire["participants"]) == {"user", "talker"}
    assert set(wire["bubbles"][0]) == {"speaker", "side", "bbox", "text"}
    assert set(wire["conversation"][0]) == {"speaker", "text"}


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ({"kind": "gif"}, "kind"),
        ({"text": "", "kind": "text"}, "empty text"),
        ({"sender": 3}, "sender"),
        ({"quote": {"sender": "a"}}, "text"),
    ],
)
def test_the_optional_fields_are_checked_when_given(override: dict[str, Any], why: str) -> None:
    with pytest.raises(StrategyError) as info:
        parse_merge_step(json.dumps(step(bubbles=[bubble(**override)])))
    assert why in info.value.detail, info.value.detail
