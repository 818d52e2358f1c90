"""daemon/ocr_layout.py: lines + pixels → MergeStep, on hand-drawn images."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from daemon.extract import parse_merge_step
from daemon.ocr_layout import Line, bubble_text, build_step, lines_from_ocr

W, H = 720, 1280
BACKGROUND = (237, 237, 237)
WHITE = (255, 255, 255)
GREEN = (149, 236, 105)


def canvas() -> np.ndarray:
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BACKGROUND
    return image


def rect(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = colour


def ink(image: np.ndarray, line: Line) -> None:
    """Dark strokes inside the line's box, as text would leave."""
    x1, y1, x2, y2 = line.box
    image[y1 + 4 : y2 - 4 : 3, x1 + 2 : x2 - 2 : 2] = (20, 20, 20)


def line(x1: int, y1: int, x2: int, y2: int, text: str) -> Line:
    return Line(box=(x1, y1, x2, y2), text=text, score=0.99)


def run(image: np.ndarray, lines: list[Line], user_side: str = "right") -> dict[str, Any]:
    for ln in lines:
        ink(image, ln)
    step = build_step(image, lines, "left" if user_side == "left" else "right")
    parse_merge_step(json.dumps(step))  # the daemon's validation accepts it
    return step


def test_a_multi_line_bubble_stays_whole_with_its_box() -> None:
    image = canvas()
    rect(image, (108, 300, 600, 420), WHITE)
    lines = [
        line(130, 318, 580, 352, "Can you send me the slides"),
        line(130, 364, 400, 398, "again?"),
    ]
    step = run(image, lines)
    assert step["bubbles"] == [
        {
            "speaker": "talker",
            "side": "left",
            "bbox": [108, 300, 600, 420],
            "text": "Can you send me the slides again?",
        }
    ]


def test_two_bubbles_a_few_pixels_apart_do_not_merge() -> None:
    image = canvas()
    rect(image, (400, 300, 612, 360), GREEN)
    rect(image, (400, 364, 612, 424), GREEN)  # 4 px of background between
    lines = [line(420, 312, 590, 348, "first"), line(420, 376, 590, 412, "second")]
    step = run(image, lines)
    assert [b["text"] for b in step["bubbles"]] == ["first", "second"]
    assert [b["bbox"] for b in step["bubbles"]] == [[400, 300, 612, 360], [400, 364, 612, 424]]
    assert {b["side"] for b in step["bubbles"]} == {"right"}
    assert {b["speaker"] for b in step["bubbles"]} == {"user"}


def test_side_and_speaker_follow_user_side() -> None:
    image = canvas()
    rect(image, (108, 300, 300, 360), WHITE)
    rect(image, (420, 400, 612, 460), GREEN)
    lines = [line(128, 312, 280, 348, "hi"), line(440, 412, 590, 448, "hello")]
    right = run(image.copy(), lines)
    assert right["layout"] == {"left": "talker", "right": "user"}
    assert [(b["side"], b["speaker"]) for b in right["bubbles"]] == [
        ("left", "talker"),
        ("right", "user"),
    ]
    left = run(image.copy(), lines, user_side="left")
    assert left["layout"] == {"left": "user", "right": "talker"}
    assert [(b["side"], b["speaker"]) for b in left["bubbles"]] == [
        ("left", "user"),
        ("right", "talker"),
    ]


def test_status_bar_title_and_timestamps_are_left_out_and_the_title_names_the_talker() -> None:
    image = canvas()
    rect(image, (108, 400, 400, 460), WHITE)
    lines = [
        line(30, 14, 90, 40, "9:41"),  # status bar
        line(630, 14, 690, 40, "74%"),
        line(310, 80, 410, 112, "Alice (3)"),  # title, with an unread count
        line(300, 330, 420, 356, "昨天 21:15"),  # timestamp, centred on the background
        line(128, 412, 380, 448, "收到，谢谢！"),
    ]
    step = run(image, lines)
    assert step["participants"] == {"user": None, "talker": "Alice"}
    assert [b["text"] for b in step["bubbles"]] == ["收到，谢谢！"]


def test_no_title_bar_means_no_talker_name() -> None:
    image = canvas()
    rect(image, (108, 400, 400, 460), WHITE)
    step = run(image, [line(128, 412, 380, 448, "hello")])
    assert step["participants"]["talker"] is None


def test_without_bubble_backgrounds_lines_are_grouped_by_gap_and_alignment() -> None:
    image = canvas()
    lines = [
        line(30, 200, 400, 236, "first line of one"),
        line(30, 244, 300, 280, "message"),
        line(300, 400, 690, 436, "a reply on the right"),
        line(330, 600, 390, 620, "12:00"),  # centred: a timestamp
    ]
    step = run(image, lines)
    assert [(b["side"], b["text"]) for b in step["bubbles"]] == [
        ("left", "first line of one message"),
        ("right", "a reply on the right"),
    ]


def test_text_joins_latin_words_with_a_space_and_cjk_without() -> None:
    assert bubble_text([line(0, 0, 100, 30, "Hope you"), line(0, 40, 100, 70, "have")]) == (
        "Hope you have"
    )
    assert bubble_text([line(0, 0, 100, 30, "文件已经发到"), line(0, 40, 100, 70, "一下")]) == (
        "文件已经发到一下"
    )
    # two pieces of one row, given right piece first
    row = [line(200, 2, 300, 30, "world"), line(0, 0, 150, 30, "hello")]
    assert bubble_text(row) == "hello world"


def test_lines_from_ocr_takes_the_box_around_each_quad_and_drops_empty_text() -> None:
    result = [
        [[[10.2, 20.0], [110.0, 21.0], [110.0, 50.4], [10.0, 49.0]], " hi ", 0.98],
        [[[0, 0], [5, 0], [5, 5], [0, 5]], "   ", 0.9],
    ]
    assert lines_from_ocr(result) == [Line(box=(10, 20, 110, 50), text="hi", score=0.98)]
    assert lines_from_ocr(None) == []


@pytest.mark.parametrize("user_side", ["left", "right"])
def test_an_empty_screenshot_gives_no_bubbles_and_a_valid_layout(user_side: str) -> None:
    step = run(canvas(), [], user_side)
    assert step["bubbles"] == []
    assert step["layout"][user_side] == "user"


# ---------------------------------------------------------------------- fuzzing --


def quad(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


coords = st.floats(min_value=-60, max_value=460, allow_nan=False)
sizes = st.floats(min_value=0, max_value=80, allow_nan=False)
quads = st.builds(quad, coords, coords, sizes, sizes)
texts = st.text(min_size=0, max_size=12)
raw_lines = st.lists(st.tuples(quads, texts, st.floats(0, 1)), max_size=12)
rects = st.lists(
    st.tuples(
        st.integers(0, 399),
        st.integers(0, 399),
        st.integers(1, 200),
        st.integers(1, 200),
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    ),
    max_size=8,
)


@example(  # a degenerate box below the bars, no bubble backgrounds
    width=300, height=300, rects=[], raw=[[quad(100, 150, 0, 0), "x", 0.9]], user_side="right"
)
@example(  # a box past the image's corner
    width=300, height=300, rects=[], raw=[[quad(400, 350, 20, 30), "y", 0.9]], user_side="left"
)
@given(
    width=st.integers(8, 400),
    height=st.integers(8, 400),
    rects=rects,
    raw=raw_lines,
    user_side=st.sampled_from(["left", "right"]),
)
def test_any_lines_on_any_image_give_a_valid_step_or_none(
    width: int, height: int, rects: list[Any], raw: list[Any], user_side: str
) -> None:
    """Whatever the OCR engine returns (boxes outside the image, degenerate,
    overlapping, empty text) on whatever pixels, the layout never raises and
    its result passes the daemon's validation whenever it has a bubble."""
    image = np.zeros((height, width, 3), np.uint8)
    for x, y, w, h, colour in rects:
        image[y : y + h, x : x + w] = colour
    step = build_step(image, lines_from_ocr(raw), "left" if user_side == "left" else "right")
    if step["bubbles"]:
        parse_merge_step(json.dumps(step))
    for bubble in step["bubbles"]:
        x1, y1, x2, y2 = bubble["bbox"]
        assert 0 <= x1 < x2 <= width
        assert 0 <= y1 < y2 <= height


def test_a_bubble_whose_colour_fades_is_found_whole() -> None:
    image = canvas()
    top, bottom = np.array([40, 130, 255]), np.array([110, 80, 230])
    for row in range(300, 420):  # one row a shade darker than the last
        t = (row - 300) / 119
        image[row, 400:612] = (top + (bottom - top) * t).round().astype(np.uint8)
    lines = [line(420, 318, 590, 352, "first line"), line(420, 364, 540, 398, "second")]
    step = run(image, lines)
    assert step["bubbles"] == [
        {
            "speaker": "user",
            "side": "right",
            "bbox": [400, 300, 612, 420],
            "text": "first line second",
        }
    ]


def test_a_message_in_no_bubble_any_fill_finds_is_kept_and_small_print_is_not() -> None:
    image = canvas()
    rect(image, (108, 300, 400, 360), WHITE)  # a found bubble: its text sets the size
    noise = np.random.default_rng(7).integers(0, 256, (60, 212, 3), dtype=np.uint8)
    image[400:460, 400:612] = noise  # a bubble no fill can follow (a picture, say)
    lines = [
        line(128, 312, 380, 348, "found"),
        line(420, 412, 590, 448, "kept anyway"),
        line(420, 464, 470, 480, "Read"),  # small print under a bubble: chrome
    ]
    step = run(image, lines)
    assert [(b["side"], b["text"]) for b in step["bubbles"]] == [
        ("left", "found"),
        ("right", "kept anyway"),
    ]
