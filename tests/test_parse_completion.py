"""extract.parse_completion: boxes checked against the image sent, scaled back to the original."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.errors import StrategyError
from daemon.extract import parse_completion


def answer(*boxes: list[int]) -> str:
    bubbles: list[dict[str, Any]] = [
        {"speaker": "talker", "side": "left", "bbox": box, "text": f"b{i}"}
        for i, box in enumerate(boxes)
    ]
    return json.dumps(
        {
            "participants": {"user": None, "talker": None},
            "layout": {"left": "talker", "right": "user"},
            "bubbles": bubbles,
            "summary": None,
        }
    )


def test_a_box_outside_the_image_sent_is_invalid_output() -> None:
    with pytest.raises(StrategyError, match=r"bbox \[600, 10, 801, 50\] is outside the 800x600"):
        parse_completion(answer([10, 10, 100, 50], [600, 10, 801, 50]), (800, 600), (800, 600))
    with pytest.raises(StrategyError) as info:
        parse_completion(answer([10, 500, 100, 601]), (800, 600))
    assert info.value.kind == "invalid_output"
    # On the edge is inside.
    step = parse_completion(answer([0, 0, 800, 600]), (800, 600), (800, 600))
    assert step.bubbles[0].bbox == (0, 0, 800, 600)


def test_boxes_are_scaled_back_to_the_original_pixels() -> None:
    step = parse_completion(
        answer([100, 200, 300, 250], [705, 1500, 706, 1568]), (706, 1568), (1440, 3200)
    )
    assert step.bubbles[0].bbox == (204, 408, 612, 510)
    x1, y1, x2, y2 = step.bubbles[1].bbox
    assert (x2, y2) == (1440, 3200)  # the far corner stays inside the original
    assert x1 < x2
    assert y1 < y2
    assert [m.text for m in step.conversation] == ["b0", "b1"]


def test_without_sizes_nothing_is_checked_or_scaled() -> None:
    step = parse_completion(answer([5000, 5000, 6000, 6000]))
    assert step.bubbles[0].bbox == (5000, 5000, 6000, 6000)
